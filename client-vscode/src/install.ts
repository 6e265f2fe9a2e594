/**
 * The extension's own environment: a virtual environment in its global storage with agentls
 * installed from the wheel the .vsix carries (dependencies from the index pip is configured
 * for), made with progress when the user presses "Install agentls". pip's output goes to the
 * Output channel; a failure is an error naming the failed step.
 */

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import * as vscode from "vscode";
import { failureSummary, findWheel, installSteps, venvPython, type Probe } from "./installer";
import { describeInterpreter, privateInterpreter, type Interpreter } from "./interpreter";
import { probe, pythonEnv } from "./python";

/** Written into the environment after a successful install: which wheel it holds. */
const STAMP = "agentls-wheel.txt";

export type PrivateState = "ready" | "stale" | "absent";

export class PrivateEnvironment {
  readonly venvDir: string;
  readonly python: string;

  constructor(
    storageDir: string,
    private readonly extensionDir: string,
    private readonly output: vscode.LogOutputChannel,
  ) {
    this.venvDir = path.join(storageDir, "venv");
    this.python = venvPython(this.venvDir);
  }

  /** The bundled wheel's path and a fingerprint of its bytes, if the .vsix carries one. */
  async wheel(): Promise<{ path: string; stamp: string } | undefined> {
    const dir = path.join(this.extensionDir, "bundled");
    const name = findWheel(await fs.readdir(dir).catch(() => []));
    if (!name) {
      return undefined;
    }
    const file = path.join(dir, name);
    const digest = createHash("sha256").update(await fs.readFile(file)).digest("hex");
    return { path: file, stamp: `${name} ${digest}` };
  }

  /** ready: agentls importable and from the bundled wheel; stale: an older wheel's. */
  async state(): Promise<PrivateState> {
    if ((await probe(this.python)).kind !== "ok") {
      return "absent";
    }
    const [installed, wheel] = await Promise.all([fs.readFile(path.join(this.venvDir, STAMP), "utf8").catch(() => ""), this.wheel()]);
    return wheel && installed.trim() !== wheel.stamp ? "stale" : "ready";
  }

  /** Make the environment with `basePython` (or update it) and install the wheel; throws on failure. */
  async install(basePython: string, update = false): Promise<void> {
    const wheel = await this.wheel();
    if (!wheel) {
      throw new Error("this build of the extension carries no agentls wheel; pip install agentls into your Python instead");
    }
    const steps = installSteps(basePython, this.venvDir, wheel.path, { update });
    this.output.info(`${update ? "updating" : "installing"} agentls in ${this.venvDir} from ${wheel.path}`);
    const title = update ? "agentls: updating its environment" : "agentls: installing agentls";
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
      if (!update) {
        await fs.rm(this.venvDir, { recursive: true, force: true }); // a half-made one from before
      }
      for (const [index, step] of steps.entries()) {
        progress.report({ message: `${step.title} (${index + 1}/${steps.length})`, increment: 100 / (steps.length + 1) });
        const { code, lines } = await this.run(step.command, step.args, token);
        if (token.isCancellationRequested) {
          throw new Error("the installation was cancelled");
        }
        if (code !== 0) {
          throw new Error(failureSummary(step, code, lines));
        }
      }
    });
    await fs.writeFile(path.join(this.venvDir, STAMP), `${wheel.stamp}\n`);
    this.output.info(`agentls is installed in ${this.venvDir}`);
  }

  /** Run one step, its output into the Output channel; the exit code and the last lines. */
  private run(command: string, args: string[], token: vscode.CancellationToken): Promise<{ code: number | null; lines: string[] }> {
    this.output.info(`$ ${command} ${args.join(" ")}`);
    return new Promise((resolve) => {
      const lines: string[] = [];
      const child = spawn(command, args, { env: pythonEnv(), stdio: ["ignore", "pipe", "pipe"] });
      const cancel = token.onCancellationRequested(() => child.kill());
      for (const stream of [child.stdout, child.stderr]) {
        readline.createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
          if (line.trim()) {
            lines.push(line);
            lines.splice(0, Math.max(0, lines.length - 40));
            this.output.info(`  ${line}`);
          }
        });
      }
      child.once("error", (error) => {
        lines.push(error.message);
        this.output.error(`  ${error.message}`);
      });
      child.once("close", (code) => {
        cancel.dispose();
        resolve({ code, lines });
      });
    });
  }
}

/**
 * The Python to serve with: `chosen` if it has agentls (and its server did not fail to start
 * before, `failedBefore`), else the extension's own environment when it was made (brought up to
 * the bundled wheel first); else `chosen` again, or what is wrong with it.
 */
export async function serverPython(
  chosen: Interpreter,
  own: PrivateEnvironment,
  output: vscode.LogOutputChannel,
  failedBefore = false,
): Promise<Interpreter | Probe> {
  const found = await probe(chosen.command);
  if (found.kind === "ok" && !failedBefore) {
    return chosen;
  }
  const state = await own.state();
  if (state === "absent") {
    return found.kind === "ok" ? chosen : found;
  }
  const why = found.kind === "ok" ? "its server stopped before it started" : `agentls ${found.kind}`;
  output.info(`${describeInterpreter(chosen)}: ${why}; using this extension's own environment`);
  if (state === "stale") {
    await own.install(own.python, true).catch((error) => output.error(`updating its environment failed: ${String(error)}`));
  }
  return privateInterpreter(own.python);
}
