/**
 * Agent runs: an agent.* command sent with a work-done token this client made, shown as a
 * cancellable notification fed by that token's progress, and its streamed explanation
 * (agent/textDelta on the same token) growing in a live preview. Cancel cancels the request
 * ($/cancelRequest): the server stops the model's stream and applies nothing.
 */

import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import { ExecuteCommandRequest, WorkDoneProgress, type LanguageClient, type ShowDocumentParams, type ShowDocumentResult } from "vscode-languageclient/node";
import type { LiveExplanations } from "./explanations";
import { liveRunFor, type TextDelta } from "./stream";

/** What agent.* commands answer (server/agentls/lsp/protocol.py CommandResultJson). */
export interface CommandResult {
  ok: boolean;
  summary?: string;
  applied?: boolean;
  document?: string;
  stats?: Record<string, unknown>;
  error?: string;
}

interface Run {
  /** Whether its answer streams into a live preview (explanations). */
  streams: boolean;
  /** The document the command is about (its first argument). */
  source?: string;
  /** The live explanation, once the first token arrived. */
  live?: vscode.Uri;
}

/** JSON-RPC RequestCancelled. */
const REQUEST_CANCELLED = -32800;

export class Runs {
  private readonly runs = new Map<string, Run>();

  constructor(
    private readonly explanations: LiveExplanations,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  /** workspace/executeCommand on our own token; undefined when the user cancelled. */
  async run(client: LanguageClient, command: string, title: string, args: unknown[], streams: boolean): Promise<CommandResult | undefined> {
    const token = `vscode-${randomUUID()}`;
    const run: Run = { streams, ...(typeof args[0] === "string" ? { source: args[0] } : {}) };
    try {
      return await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title, cancellable: true },
        async (progress, cancel) => {
          let reported = 0;
          const subscription = client.onProgress(WorkDoneProgress.type, token, (value) => {
            if (value.kind === "end") {
              return;
            }
            let increment: number | undefined;
            if (typeof value.percentage === "number") {
              increment = Math.max(0, Math.min(100, value.percentage) - reported); // reports add up
              reported += increment;
            }
            progress.report({ message: value.message, increment });
          });
          this.runs.set(token, run);
          try {
            const params = { command, arguments: args, workDoneToken: token };
            return (await client.sendRequest(ExecuteCommandRequest.type, params, cancel)) as CommandResult | undefined;
          } finally {
            subscription.dispose();
            this.runs.delete(token);
          }
        },
      );
    } catch (error) {
      if (error instanceof vscode.CancellationError || (error as { code?: unknown } | null)?.code === REQUEST_CANCELLED) {
        this.output.info(`${title}: cancelled`);
        vscode.window.setStatusBarMessage(`${title}: cancelled`, 5000);
        return undefined;
      }
      throw error;
    }
  }

  /** A run's streamed text: the first token of an explanation opens the live preview. */
  onTextDelta(delta: TextDelta): void {
    const run = this.runs.get(String(delta.token));
    if (!run?.streams || delta.kind !== "answer") {
      return; // a refactor's commentary is in its progress already
    }
    run.live ??= this.explanations.open(run.source, (error) => this.output.warn(`opening the explanation preview: ${String(error)}`));
    this.explanations.apply(run.live, delta);
  }

  /**
   * window/showDocument of a saved explanation: it replaces the streamed text of its run's live
   * preview, or opens in the Markdown preview when nothing streamed. Undefined: not ours.
   */
  async showDocument(params: ShowDocumentParams): Promise<ShowDocumentResult | undefined> {
    if (params.external || !/\.(md|markdown)$/i.test(params.uri)) {
      return undefined;
    }
    const run = liveRunFor([...this.runs.values()], params.uri);
    if (run?.live) {
      try {
        const saved = await vscode.workspace.fs.readFile(vscode.Uri.parse(params.uri));
        this.explanations.finish(run.live, new TextDecoder().decode(saved));
        return { success: true };
      } catch (error) {
        this.output.warn(`reading the saved explanation: ${String(error)}`);
      }
    }
    await vscode.commands.executeCommand("markdown.showPreviewToSide", vscode.Uri.parse(params.uri));
    return { success: true };
  }
}

/**
 * `[uri, range?, instruction?]` for an agent.* command on the active editor: the selection (or,
 * when empty or `scope` is "file", the whole file) and, with `ask`, the user's instruction.
 * Undefined when there is nothing to run on or the user pressed Escape.
 */
export async function editorArgs(scope: "file" | "selection", ask: boolean): Promise<unknown[] | undefined> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.uri.scheme !== "file") {
    void vscode.window.showWarningMessage("agentls: open a file saved on disk first.");
    return undefined;
  }
  const instruction = ask
    ? await vscode.window.showInputBox({
        title: "Agent: Refactor Selection",
        prompt: "How should the selected code change?",
        placeHolder: "e.g. extract the parsing into a function; use pathlib",
        ignoreFocusOut: true,
      })
    : "";
  if (instruction === undefined) {
    return undefined; // Escape: the user changed their mind
  }
  const { start, end, isEmpty } = editor.selection;
  const range =
    scope === "selection" && !isEmpty
      ? { start: { line: start.line, character: start.character }, end: { line: end.line, character: end.character } }
      : null;
  return instruction.trim() ? [editor.document.uri.toString(), range, instruction.trim()] : [editor.document.uri.toString(), range];
}
