/**
 * Help for a model server that does not answer: `agentls doctor` with the server's settings,
 * its findings in the Output channel, and a notification saying how to start Ollama and which
 * Gemma 4 to pull for this machine (once a session; "Don't Show Again" for good).
 */

import { execFile } from "node:child_process";
import * as os from "node:os";
import * as vscode from "vscode";
import { doctorCommand, modelHelpMessage } from "./modelHelp";
import { pythonEnv, serverCwd } from "./python";
import type { AgentStatus } from "./status";

const HELP_OFF = "agentls.modelHelp.off";

/** Run `python -m agentls doctor` and write its report into the output. */
export function runDoctor(python: string, settings: Record<string, unknown>, output: vscode.LogOutputChannel): Promise<void> {
  const { args, env } = doctorCommand(settings);
  output.info(`$ ${python} ${args.join(" ")}`);
  return new Promise((resolve) => {
    execFile(python, args, { cwd: serverCwd(), env: pythonEnv(env), timeout: 60_000 }, (error, stdout, stderr) => {
      const report = `${stdout}${stderr}`.trimEnd();
      output.info(`agentls doctor:\n${report || (error ? error.message : "(no output)")}`);
      resolve();
    });
  });
}

export class ModelHelp {
  private shown = false;

  constructor(
    private readonly state: vscode.Memento,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  /** On the first unreachable status of a session: the doctor's findings and how to fix it. */
  async offer(status: AgentStatus, python: string, settings: Record<string, unknown>): Promise<void> {
    if (status.reachable || this.shown || this.state.get<boolean>(HELP_OFF)) {
      return;
    }
    this.shown = true;
    await runDoctor(python, settings, this.output);
    const model = typeof settings["model"] === "string" ? settings["model"] : undefined;
    const message = modelHelpMessage(status, model, os.totalmem());
    this.output.warn(message);
    const choice = await vscode.window.showWarningMessage(message, "Show Doctor Findings", "Don't Show Again");
    if (choice === "Show Doctor Findings") {
      this.output.show(true);
    } else if (choice === "Don't Show Again") {
      await this.state.update(HELP_OFF, true);
    }
  }
}
