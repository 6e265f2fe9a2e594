/**
 * Restart-on-crash policy with exponential back-off. No `vscode` import (unit-tested).
 *
 * A server that dies before it ever answered `initialize` is not restarted: that is a set-up
 * problem (no agentls in that Python, a syntax error) and retrying only repeats the error.
 */

export interface RestartOptions {
  maxCrashes: number; // crashes allowed within windowMs before giving up
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESTART: RestartOptions = {
  maxCrashes: 5,
  windowMs: 3 * 60_000,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
};

export type CrashDecision =
  | { restart: true; delayMs: number; attempt: number }
  | { restart: false; reason: "never-started" | "too-many-crashes" };

export class RestartPolicy {
  private crashes: number[] = [];

  constructor(private readonly options: RestartOptions = DEFAULT_RESTART) {}

  /** Decide what to do about a server exit at `now` (ms); `initialized` if it had started. */
  onCrash(now: number, initialized: boolean): CrashDecision {
    if (!initialized) {
      return { restart: false, reason: "never-started" };
    }
    this.crashes = this.crashes.filter((t) => now - t < this.options.windowMs);
    this.crashes.push(now);
    const attempt = this.crashes.length;
    if (attempt > this.options.maxCrashes) {
      return { restart: false, reason: "too-many-crashes" };
    }
    const delayMs = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (attempt - 1));
    return { restart: true, delayMs, attempt };
  }

  /** Forget past crashes (the user restarted the server by hand). */
  reset(): void {
    this.crashes = [];
  }
}

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

/** One sentence on how a process ended. */
export function describeExit(code: number | null, signal: string | null): string {
  if (signal) {
    return `was killed by ${signal}`;
  }
  if (code === null) {
    return "stopped";
  }
  return `exited with code ${code}`;
}
