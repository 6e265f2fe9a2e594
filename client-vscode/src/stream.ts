/**
 * The streamed explanation, without VS Code: the agent/textDelta notification's shape, the
 * text it builds, and which run a finished explanation file belongs to. The server decides
 * what the text is (thinking and markup already split off); this only appends.
 */

export const TEXT_DELTA = "agent/textDelta";
/** The scheme of the live explanation documents the Markdown preview shows. */
export const EXPLANATION_SCHEME = "agentls-explanation";

/** agent/textDelta params (docs/architecture.md, server/agentls/lsp/progress.py). */
export interface TextDelta {
  /** The run's work-done progress token. */
  token: string | number;
  /** The model call the text belongs to; a new turn starts a new text. */
  turn: number;
  kind: "answer" | "thinking";
  delta: string;
}

export function isTextDelta(value: unknown): value is TextDelta {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return (
    (typeof v.token === "string" || typeof v.token === "number") &&
    typeof v.turn === "number" &&
    (v.kind === "answer" || v.kind === "thinking") &&
    typeof v.delta === "string"
  );
}

/**
 * The answer as it streams: deltas appended, and a new turn starting over (what the model
 * wrote before a tool call was commentary, not the answer). `replace` puts the final text in.
 */
export class LiveText {
  private turn: number | undefined;
  text = "";
  /** True once the final text replaced the streamed one: later deltas are stale. */
  final = false;

  /** Apply one delta; true when the text changed. Thinking is not shown. */
  apply(delta: TextDelta): boolean {
    if (delta.kind !== "answer" || this.final || !delta.delta) {
      return false;
    }
    if (delta.turn !== this.turn) {
      this.turn = delta.turn;
      this.text = "";
    }
    this.text += delta.delta;
    return true;
  }

  replace(text: string): void {
    this.text = text;
    this.final = true;
  }
}

/** The file name the server saves an explanation of `sourceUri` under (lsp/explanation.py). */
export function explanationName(sourceUri: string): string {
  const path = decodeURIComponent(sourceUri.replace(/[?#].*$/, ""));
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  const stem = dot > 0 ? base.slice(0, dot) : base;
  return `${stem}-explanation.md`;
}

/** The base name of a URI's path. */
export function baseName(uri: string): string {
  const path = decodeURIComponent(uri.replace(/[?#].*$/, ""));
  return path.slice(path.lastIndexOf("/") + 1);
}

/** What `liveRunFor` needs of a run. */
export interface StreamingRun {
  source?: string;
  live?: unknown;
}

/**
 * The run whose live explanation the server's window/showDocument of `uri` (the saved
 * explanation) completes: a streaming run of the file it is named after, else the oldest
 * streaming run. Undefined when no run streamed (then the file is previewed as before).
 */
export function liveRunFor<R extends StreamingRun>(runs: readonly R[], uri: string): R | undefined {
  const streaming = runs.filter((run) => run.live !== undefined);
  const name = baseName(uri);
  return streaming.find((run) => run.source !== undefined && explanationName(run.source) === name) ?? streaming[0];
}
