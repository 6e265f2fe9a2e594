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

/** Short status bar text, with a codicon for the state. */
export function statusBarText(status: AgentStatus): string {
  const icon = { ok: "$(check)", warning: "$(warning)", down: "$(error)" }[health(status)];
  return `$(hubot) ${status.model ?? "no model"} ${icon}`;
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
      ["completion tokens", num(stats["completionTokens"])],
      ["tokens/s", num(stats["tokensPerSecond"])],
      ["s", num(stats["wallTime"])],
    ].filter((p): p is [string, string] => p[1] !== undefined);
    lines.push(`Last run: ${parts.length ? parts.map(([k, v]) => `${v} ${k}`).join(", ") : "done"}`);
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
