/**
 * Which Python starts the server: `agent.pythonPath`, else the Python extension's active
 * interpreter, else `python3`; when that one has no agentls, the extension's own environment
 * (installed from the bundled wheel). No `vscode` import, so it is unit-testable.
 */

export type InterpreterSource = "setting" | "python-extension" | "default" | "private";

export interface Interpreter {
  command: string;
  args: string[];
  source: InterpreterSource;
}

export interface InterpreterInputs {
  /** `agent.pythonPath` as configured (may be empty or use `${workspaceFolder}` / `~`). */
  configured?: string | undefined;
  /** The Python extension's active interpreter, when that extension is installed. */
  fromPythonExtension?: string | undefined;
  workspaceFolder?: string | undefined;
  home?: string | undefined;
  env?: Readonly<Record<string, string | undefined>>;
}

export const DEFAULT_PYTHON = "python3";
export const SERVER_ARGS: readonly string[] = ["-m", "agentls"];

/** Expand `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. */
export function expandPath(raw: string, inputs: InterpreterInputs): string {
  let value = raw.trim();
  const home = inputs.home;
  if (home && (value === "~" || value.startsWith("~/"))) {
    value = home + value.slice(1);
  }
  value = value.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (whole, name: string, envName?: string) => {
    if (name === "workspaceFolder") {
      return inputs.workspaceFolder ?? whole;
    }
    if (name === "userHome") {
      return home ?? whole;
    }
    return (envName && inputs.env?.[envName]) ?? "";
  });
  return value;
}

/** The interpreter to run `-m agentls` with, and where the choice came from. */
export function chooseInterpreter(inputs: InterpreterInputs): Interpreter {
  const configured = inputs.configured ? expandPath(inputs.configured, inputs) : "";
  if (configured) {
    return { command: configured, args: [...SERVER_ARGS], source: "setting" };
  }
  const fromExtension = inputs.fromPythonExtension?.trim();
  if (fromExtension) {
    return { command: fromExtension, args: [...SERVER_ARGS], source: "python-extension" };
  }
  return { command: DEFAULT_PYTHON, args: [...SERVER_ARGS], source: "default" };
}

/** How the choice reads in the log and in error messages. */
export function describeInterpreter(interpreter: Interpreter): string {
  const where = {
    setting: "from agent.pythonPath",
    "python-extension": "the Python extension's active interpreter",
    default: "the default; set agent.pythonPath to choose another",
    private: "this extension's own environment",
  }[interpreter.source];
  return `${interpreter.command} ${interpreter.args.join(" ")} (${where})`;
}

/** The extension's own environment's interpreter, installed from the bundled wheel. */
export function privateInterpreter(python: string): Interpreter {
  return { command: python, args: [...SERVER_ARGS], source: "private" };
}
