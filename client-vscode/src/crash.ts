/**
 * What to tell the user when the server stops: the last lines it wrote to stderr and what
 * happens next. vscode-languageclient owns the process and its restart policy; this only words
 * the message. No `vscode` import (unit-tested).
 */

/** Keeps the last lines a process wrote to stderr, to say why it stopped. */
export class LineTail {
  private lines: string[] = [];

  constructor(private readonly max = 20) {}

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) {
      this.lines.splice(0, this.lines.length - this.max);
    }
  }

  clear(): void {
    this.lines = [];
  }

  /** The last `count` non-empty lines. */
  last(count: number): string[] {
    return this.lines.filter((l) => l.trim() !== "").slice(-count);
  }
}

/** ": <the last line on stderr>", or nothing when the server wrote none. */
function lastWords(tail: readonly string[]): string {
  const line = tail[tail.length - 1]?.trim();
  return line ? `: ${line}` : "";
}

/** A server that had been running stopped; `restarting` is vscode-languageclient's decision. */
export function crashMessage(tail: readonly string[], restarting: boolean): string {
  return restarting
    ? `agentls: the server stopped unexpectedly${lastWords(tail)}. Restarting it.`
    : `agentls: the server stopped 5 times in 3 minutes and was not restarted${lastWords(tail)}.`;
}

/**
 * A server that never answered `initialize` (a broken install, a syntax error): not restarted,
 * since that would only repeat the error; the message names the interpreter and the fixes.
 */
export function notStartedMessage(interpreter: string, tail: readonly string[]): string {
  return (
    `agentls: ${interpreter} stopped before it started${lastWords(tail)}. ` +
    "Install agentls into this extension's own environment, or pip install agentls into that " +
    "Python, or set agent.pythonPath."
  );
}
