/** agent/status as people read it: the status bar text and a summary. No `vscode` import. */

export interface AgentStatus {
  backend: string;
  baseUrl: string;
  model: string | null;
  reachable: boolean;
  contextLength: number;
  toolMode: string;
  lastStats: Record<string, unknown> | null;
  modelContextLength?: number | null;
  supportsTools?: boolean | null;
  error?: string;
}

export type Health = "ok" | "warning" | "down";

export function health(status: AgentStatus): Health {
  if (!status.reachable) {
    return "down";
  }
  return status.error ? "warning" : "ok";
}

function finite(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** 16384 -> "16k". */
export function tokensShort(count: number): string {
  return count >= 1024 ? `${Math.round(count / 1024)}k` : String(count);
}

/**
 * A run's numbers for the status bar: how full the context was, tokens/s and the share of the
 * prompt the server had cached (backends that report it: llama.cpp, LM Studio, vLLM).
 */
export function runSummary(stats: Record<string, unknown> | null | undefined): string[] {
  if (!stats) {
    return [];
  }
  const parts: string[] = [];
  const fill = finite(stats["contextFill"]);
  if (fill !== undefined) {
    parts.push(`ctx ${Math.round(fill * 100)}%`);
  }
  const speed = finite(stats["tokensPerSecond"]);
  if (speed !== undefined && speed > 0) {
    parts.push(`${speed >= 10 ? Math.round(speed) : Math.round(speed * 10) / 10} tok/s`);
  }
  const prompt = finite(stats["promptTokens"]);
  const cached = finite(stats["cachedPromptTokens"]);
  if (prompt && cached !== undefined) {
    parts.push(`${Math.round((100 * cached) / prompt)}% cached`);
  }
  return parts;
}

/**
 * Short status bar text: the model, then the last run's numbers (before any run, the context
 * window), and a codicon for the state.
 */
export function statusBarText(status: AgentStatus, stats: Record<string, unknown> | null = status.lastStats): string {
  const icon = { ok: "$(check)", warning: "$(warning)", down: "$(error)" }[health(status)];
  const run = runSummary(stats);
  const parts = run.length ? run : [`${tokensShort(status.contextLength)} ctx`];
  return `$(hubot) ${status.model ?? "no model"} · ${parts.join(" · ")} ${icon}`;
}

/** One line for a notification. */
export function statusHeadline(status: AgentStatus): string {
  const model = status.model ?? "no model";
  switch (health(status)) {
    case "ok":
      return `agentls: ${model} on ${status.backend} at ${status.baseUrl} is ready.`;
    case "warning":
      return `agentls: ${status.backend} at ${status.baseUrl} answers, but: ${status.error ?? ""}`;
    default:
      return `agentls: ${status.backend} at ${status.baseUrl} does not answer${status.error ? `: ${status.error}` : "."}`;
  }
}

function num(value: unknown): string | undefined {
  return typeof value === "number" && Number.isFinite(value) ? String(Math.round(value * 10) / 10) : undefined;
}

/** The full summary: configuration, model facts, the last run. */
export function statusDetails(status: AgentStatus): string[] {
  const lines = [
    statusHeadline(status),
    `Backend: ${status.backend} (${status.baseUrl})`,
    `Model: ${status.model ?? "none found"}`,
    `Reachable: ${status.reachable ? "yes" : "no"}`,
    `Context length: ${status.contextLength}` +
      (status.modelContextLength ? ` (model supports ${status.modelContextLength})` : ""),
    `Tool mode: ${status.toolMode}` +
      (status.supportsTools === true ? " (model supports tools)" : status.supportsTools === false ? " (model has no native tool support)" : ""),
  ];
  const stats = status.lastStats;
  if (stats) {
    const parts: [string, string | undefined][] = [
      ["turns", num(stats["turns"])],
      ["tool calls", num(stats["toolCalls"])],
      ["prompt tokens", num(stats["promptTokens"])],
      ["cached", num(stats["cachedPromptTokens"])],
      ["completion tokens", num(stats["completionTokens"])],
      ["tokens/s", num(stats["tokensPerSecond"])],
      ["s", num(stats["wallTime"])],
    ].filter((p): p is [string, string] => p[1] !== undefined);
    lines.push(`Last run: ${parts.length ? parts.map(([k, v]) => `${v} ${k}`).join(", ") : "done"}`);
    const fill = finite(stats["contextFill"]);
    if (fill !== undefined) {
      lines.push(`Context fill: ${Math.round(fill * 100)}% of ${num(stats["contextLength"]) ?? status.contextLength} tokens`);
    }
  } else {
    lines.push("Last run: none yet");
  }
  return lines;
}

export function isAgentStatus(value: unknown): value is AgentStatus {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return typeof v["backend"] === "string" && typeof v["reachable"] === "boolean";
}
