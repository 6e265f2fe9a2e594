/**
 * What to tell someone whose model server does not answer: how to start Ollama and which
 * Gemma 4 to pull for this machine (the server's own rule, server/agentls/llm/defaults.py), and
 * how `agentls doctor` is run with the same settings. No `vscode` import (unit-tested).
 */

export const GEMMA4_MOE = "gemma4:26b-a4b-it-qat";
export const GEMMA4_DENSE_12B = "gemma4:12b-it-qat";
const GIB = 1024 ** 3;
/** A "32 GB" laptop reports 31-31.5 GiB; 30 GiB still tells it from a 16 or 24 GB one. */
export const LARGE_MACHINE_BYTES = 30 * GIB;

/** The Gemma 4 for a machine with `totalBytes` of RAM: the 26B MoE on 32 GB, else the 12B. */
export function recommendedModel(totalBytes: number): string {
  return totalBytes >= LARGE_MACHINE_BYTES ? GEMMA4_MOE : GEMMA4_DENSE_12B;
}

function gigabytes(bytes: number): string {
  return `${Math.round(bytes / GIB)} GB`;
}

export interface ModelServer {
  backend: string;
  baseUrl: string;
}

/**
 * The notification for a model server that does not answer. `model` is agent.model when the
 * user set one (then that is what to pull).
 */
export function modelHelpMessage(server: ModelServer, model: string | undefined, totalBytes: number): string {
  const down = `agentls: no model server answers at ${server.baseUrl}.`;
  if (server.backend !== "ollama") {
    return (
      `${down} Start your OpenAI-compatible server (LM Studio, llama.cpp's llama-server) there with a ` +
      `model loaded, e.g. ${model || recommendedModel(totalBytes)}, or set agent.baseUrl.`
    );
  }
  const pull = model || recommendedModel(totalBytes);
  const why = model ? "the model agent.model names" : `the Gemma 4 for this machine's ${gigabytes(totalBytes)} of RAM`;
  return `${down} Start Ollama (ollama serve), then pull ${why}: ollama pull ${pull}`;
}

/** `agentls doctor` with the server's settings: flags for what the CLI has, the key by env. */
export function doctorCommand(settings: Readonly<Record<string, unknown>>): { args: string[]; env: Record<string, string> } {
  const args = ["-m", "agentls", "doctor"];
  const flags: [string, string][] = [
    ["backend", "--backend"],
    ["baseUrl", "--base-url"],
    ["model", "--model"],
    ["contextLength", "--context-length"],
  ];
  for (const [key, flag] of flags) {
    const value = settings[key];
    if ((typeof value === "string" && value !== "") || typeof value === "number") {
      args.push(flag, String(value));
    }
  }
  const env: Record<string, string> = {};
  if (typeof settings["apiKey"] === "string" && settings["apiKey"]) {
    env["AGENTLS_API_KEY"] = settings["apiKey"]; // not on the command line, where ps shows it
  }
  return { args, env };
}
