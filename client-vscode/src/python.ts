/**
 * The Python side of starting the server: which interpreter (agent.pythonPath, the Python
 * extension's, python3) and whether it has agentls, asked with a short probe before
 * vscode-languageclient starts `<python> -m agentls`.
 */

import { execFile } from "node:child_process";
import * as os from "node:os";
import * as vscode from "vscode";
import { PROBE_SCRIPT, probeOutcome, type Probe } from "./installer";
import { chooseInterpreter, type Interpreter } from "./interpreter";
import { SECTION, userValue } from "./settings";

/** The part of the Python extension's API used here (ms-python.python, optional). */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id: string; path: string };
    resolveEnvironment?(environment: { id: string; path: string } | string): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
}

/** The environment the server and the other Python processes run with. */
export function pythonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PYTHONUNBUFFERED: "1", ...extra };
}

/** The folder the server runs in: the first workspace folder, else the home folder. */
export function serverCwd(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder?.uri.scheme === "file" ? folder.uri.fsPath : os.homedir();
}

/** agent.pythonPath (user value only in an untrusted workspace), else the Python extension's, else python3. */
export async function resolveInterpreter(output: vscode.LogOutputChannel): Promise<Interpreter> {
  const folder = vscode.workspace.workspaceFolders?.[0];
  const config = vscode.workspace.getConfiguration(SECTION, folder?.uri);
  const spec = { key: "pythonPath", default: "", restricted: true };
  const configured = userValue(spec, config.inspect("pythonPath"), vscode.workspace.isTrusted);
  return chooseInterpreter({
    configured: typeof configured === "string" ? configured : undefined,
    fromPythonExtension: await pythonExtensionInterpreter(folder?.uri, output),
    workspaceFolder: folder?.uri.fsPath,
    home: os.homedir(),
    env: process.env,
  });
}

/** Whether `python` runs, is new enough and can import agentls (without importing it). */
export function probe(python: string): Promise<Probe> {
  return new Promise((resolve) => {
    execFile(python, ["-c", PROBE_SCRIPT], { cwd: serverCwd(), env: pythonEnv(), timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      // A string code (ENOENT, EACCES) means the interpreter never ran.
      const failedToRun = error && typeof error.code === "string" ? error.message : undefined;
      resolve(probeOutcome({ code, stdout, stderr, ...(failedToRun ? { error: failedToRun } : {}) }));
    });
  });
}

async function pythonExtensionInterpreter(resource: vscode.Uri | undefined, output: vscode.LogOutputChannel): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension<PythonExtensionApi>("ms-python.python");
  if (!extension) {
    return undefined;
  }
  try {
    const api = extension.isActive ? extension.exports : await extension.activate();
    const environments = api?.environments;
    if (!environments?.getActiveEnvironmentPath) {
      return undefined;
    }
    const active = environments.getActiveEnvironmentPath(resource);
    const resolved = environments.resolveEnvironment ? await environments.resolveEnvironment(active) : undefined;
    return resolved?.executable.uri?.fsPath ?? active.path;
  } catch (error) {
    output.warn(`could not ask the Python extension for its interpreter: ${String(error)}`);
    return undefined;
  }
}
