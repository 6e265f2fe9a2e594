/**
 * The private environment the extension can install agentls into, without `vscode`: whether an
 * interpreter has agentls (the probe), where the environment lives, which wheel is bundled and
 * the commands that install it. src/install.ts runs them with progress.
 */

import * as path from "node:path";

/** Python code that says whether agentls can be imported, without importing it. */
export const PROBE_SCRIPT = [
  "import importlib.util, sys",
  "if sys.version_info < (3, 11):",
  "    print('%d.%d' % sys.version_info[:2]); sys.exit(4)",
  "sys.exit(0 if importlib.util.find_spec('agentls') else 3)",
].join("\n");

export const MIN_PYTHON = "3.11";

export type Probe =
  | { kind: "ok" }
  | { kind: "missing" } // runs, has no agentls
  | { kind: "too-old"; version: string }
  | { kind: "unrunnable"; error: string } // cannot be started at all (ENOENT, EACCES)
  | { kind: "failed"; detail: string }; // started, but the probe itself failed

/** What running PROBE_SCRIPT told: its exit code and output, or the error starting it. */
export interface ProbeRun {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

export function probeOutcome(run: ProbeRun): Probe {
  if (run.error !== undefined) {
    return { kind: "unrunnable", error: run.error };
  }
  switch (run.code) {
    case 0:
      return { kind: "ok" };
    case 3:
      return { kind: "missing" };
    case 4:
      return { kind: "too-old", version: run.stdout.trim() || "unknown" };
    default: {
      const lines = `${run.stderr}\n${run.stdout}`.split("\n").filter((l) => l.trim());
      return { kind: "failed", detail: lines[lines.length - 1]?.trim() ?? `exit code ${String(run.code)}` };
    }
  }
}

/** Whether the private environment can be made with this interpreter. */
export function canInstallWith(probe: Probe): boolean {
  return probe.kind === "missing" || probe.kind === "failed";
}

/** One sentence on why `interpreter` (as described by describeInterpreter) cannot run the server. */
export function probeMessage(probe: Probe, interpreter: string): string {
  switch (probe.kind) {
    case "ok":
      return `agentls: ${interpreter} has agentls.`;
    case "missing":
      return (
        `agentls: ${interpreter} cannot start the server: No module named agentls. ` +
        "Install agentls into this extension's own environment (from the wheel it carries), " +
        "or pip install agentls into that Python, or set agent.pythonPath."
      );
    case "too-old":
      return (
        `agentls: ${interpreter} is Python ${probe.version}; agentls needs Python ${MIN_PYTHON} or newer. ` +
        "Set agent.pythonPath to a newer Python."
      );
    case "unrunnable":
      return `agentls: cannot run ${interpreter}: ${probe.error}. Set agent.pythonPath to a Python ${MIN_PYTHON} or newer.`;
    case "failed":
      return (
        `agentls: ${interpreter} could not be checked for agentls: ${probe.detail}. ` +
        "Install agentls into this extension's own environment, or set agent.pythonPath."
      );
  }
}

/** The interpreter of a virtual environment. */
export function venvPython(venvDir: string, platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? path.win32.join(venvDir, "Scripts", "python.exe") : path.posix.join(venvDir, "bin", "python");
}

/** The agentls wheel among a folder's file names (the newest version if there are several). */
export function findWheel(names: readonly string[]): string | undefined {
  const wheels = names.filter((n) => /^agentls-[^-]+-.*\.whl$/.test(n));
  return wheels.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }))[0];
}

export interface Step {
  /** What the progress notification says meanwhile. */
  title: string;
  command: string;
  args: string[];
}

/**
 * The commands that install `wheel` into `venvDir`: a new environment made with `basePython`,
 * then pip with the wheel (its dependencies come from the index pip is configured for). With
 * `update`, the environment exists and holds an older agentls: the wheel replaces it, then any
 * new dependencies are installed.
 */
export function installSteps(
  basePython: string,
  venvDir: string,
  wheel: string,
  options: { update?: boolean; platform?: NodeJS.Platform } = {},
): Step[] {
  const python = venvPython(venvDir, options.platform);
  const pip = [python, ["-m", "pip", "install", "--disable-pip-version-check", "--no-input"]] as const;
  if (options.update) {
    return [
      { title: "Replacing agentls", command: pip[0], args: [...pip[1], "--force-reinstall", "--no-deps", wheel] },
      { title: "Checking its dependencies", command: pip[0], args: [...pip[1], wheel] },
    ];
  }
  return [
    { title: "Creating a virtual environment", command: basePython, args: ["-m", "venv", venvDir] },
    { title: "Installing agentls and its dependencies (pip)", command: pip[0], args: [...pip[1], wheel] },
  ];
}

/** The last lines of a failed step's output, for the error message. */
export function failureSummary(step: Step, code: number | null, output: readonly string[]): string {
  const lines = output.filter((l) => l.trim());
  const error = [...lines].reverse().find((l) => /error/i.test(l)) ?? lines[lines.length - 1] ?? "";
  const how = code === null ? "was stopped" : `exited with code ${code}`;
  return `${step.title} failed: ${path.basename(step.command)} ${how}${error ? `: ${error.trim()}` : ""}`;
}
