/**
 * Live explanation documents: an `agentls-explanation:` virtual document per explain run that
 * grows as agent/textDelta notifications arrive, shown in the Markdown preview beside the
 * code from the first token. The preview follows the document's change events.
 */

import * as vscode from "vscode";
import { EXPLANATION_SCHEME, LiveText, explanationName, type TextDelta } from "./stream";

export class LiveExplanations implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly texts = new Map<string, LiveText>();
  private readonly subscriptions: vscode.Disposable[];
  private count = 0;

  constructor() {
    this.subscriptions = [
      vscode.workspace.registerTextDocumentContentProvider(EXPLANATION_SCHEME, this),
      // A preview the user closed needs no text kept for it.
      vscode.workspace.onDidCloseTextDocument((doc) => {
        if (doc.uri.scheme === EXPLANATION_SCHEME) {
          this.texts.delete(doc.uri.toString());
        }
      }),
      this.changed,
    ];
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString())?.text ?? "";
  }

  /**
   * A new live document for an explanation of `source` (a file URI), opened in the Markdown
   * preview beside the code. Its name is the saved explanation's, so the tab reads the same.
   */
  open(source: string | undefined, onError: (error: unknown) => void): vscode.Uri {
    const name = source ? explanationName(source) : "explanation.md";
    const uri = vscode.Uri.from({ scheme: EXPLANATION_SCHEME, path: `/${name}`, query: `run=${++this.count}` });
    // Known at once: deltas that arrive while the preview opens are kept, not lost.
    this.texts.set(uri.toString(), new LiveText());
    vscode.commands.executeCommand("markdown.showPreviewToSide", uri).then(undefined, onError);
    return uri;
  }

  /** Append a delta; the preview re-renders from the change event. */
  apply(uri: vscode.Uri, delta: TextDelta): void {
    if (this.texts.get(uri.toString())?.apply(delta)) {
      this.changed.fire(uri);
    }
  }

  /** The final explanation (the saved file's text) in place of the streamed one. */
  finish(uri: vscode.Uri, text: string): void {
    const live = this.texts.get(uri.toString()) ?? new LiveText();
    live.replace(text);
    this.texts.set(uri.toString(), live);
    this.changed.fire(uri);
  }

  dispose(): void {
    for (const subscription of this.subscriptions) {
      subscription.dispose();
    }
    this.texts.clear();
  }
}
