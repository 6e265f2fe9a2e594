/**
 * The status bar item (the model, the context window or the last run's fill, tokens/s and
 * cached share, and a mark for the model server) and Agent: Show Status.
 */

import * as vscode from "vscode";
import { State, type LanguageClient } from "vscode-languageclient/node";
import { isAgentStatus, statusBarText, statusDetails, statusHeadline, type AgentStatus } from "./status";

const STATUS_REQUEST = "agent/status";

export class StatusView implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("agentls.status", vscode.StatusBarAlignment.Right, 100);
  private status: AgentStatus | undefined;
  private seq = 0;

  constructor(private readonly output: vscode.LogOutputChannel) {
    this.item.name = "agentls";
    this.item.command = "agentls.showStatus";
    this.starting();
    this.item.show();
  }

  /** Ask the server for agent/status and show it; the answer, unless a newer ask overtook it. */
  async refresh(client: LanguageClient | undefined): Promise<AgentStatus | undefined> {
    const seq = ++this.seq;
    try {
      const status: unknown = client?.state === State.Running ? await client.sendRequest(STATUS_REQUEST, {}) : undefined;
      if (seq === this.seq && isAgentStatus(status)) {
        this.show(status);
        return status;
      }
    } catch (error) {
      this.output.warn(`agent/status failed: ${String(error)}`);
    }
    return undefined;
  }

  starting(): void {
    this.set("$(hubot) agentls $(sync~spin)", "agentls: starting the language server");
  }

  /** The server is not running; `why` (a message starting "agentls: ") goes in the tooltip. */
  down(why: string): void {
    this.status = undefined;
    this.set("$(hubot) agentls $(error)", `${why}\nClick for details.`);
  }

  show(status: AgentStatus): void {
    this.status = status;
    this.set(statusBarText(status), statusDetails(status).join("\n"), !status.reachable);
  }

  /** A run's stats, at once (agent/status, which asks the model server, follows). */
  afterRun(stats: Record<string, unknown> | undefined): void {
    if (this.status && stats) {
      this.show({ ...this.status, lastStats: stats });
    }
  }

  private set(text: string, tooltip: string, warn = false): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.backgroundColor = warn ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}

/** Agent: Show Status: a summary, the details in the output. */
export async function showStatusMessage(status: AgentStatus, output: vscode.LogOutputChannel): Promise<void> {
  const details = statusDetails(status);
  output.info(`status:\n  ${details.join("\n  ")}`);
  const show = status.reachable && !status.error ? vscode.window.showInformationMessage : vscode.window.showWarningMessage;
  const choice = await show(statusHeadline(status), { modal: false, detail: details.join("\n") }, "Details", "Settings");
  if (choice === "Details") {
    output.show(true);
  } else if (choice === "Settings") {
    await vscode.commands.executeCommand("workbench.action.openSettings", "@ext:agentls.agentls");
  }
}
