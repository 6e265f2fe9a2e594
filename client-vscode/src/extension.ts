/**
 * The agentls VS Code extension: vscode-languageclient starts (and restarts) `<python> -m
 * agentls`; this file picks the Python, forwards the palette commands and shows what comes
 * back. All agent logic lives in the server; the jobs around it have their own modules.
 */

import * as vscode from "vscode";
import {
  CloseAction,
  DidChangeConfigurationNotification,
  State,
  type CloseHandlerResult,
  type ErrorHandler,
  type LanguageClient,
} from "vscode-languageclient/node";
import { createClient } from "./client";
import { AgentSettings } from "./config";
import { LineTail, crashMessage, notStartedMessage } from "./crash";
import { ModelHelp, runDoctor } from "./doctor";
import { LiveExplanations } from "./explanations";
import { PrivateEnvironment, serverPython } from "./install";
import { canInstallWith, probeMessage } from "./installer";
import { describeInterpreter, type Interpreter } from "./interpreter";
import { resolveInterpreter } from "./python";
import { Runs, editorArgs, type CommandResult } from "./runs";
import { SECTION } from "./settings";
import { StatusView, showStatusMessage } from "./statusView";

const CMD = { explain: "agent.explain", refactor: "agent.refactor", generateTests: "agent.generateTests" } as const;
type ServerCommand = (typeof CMD)[keyof typeof CMD];
/** Notification titles: the server's progress titles (protocol.KIND_TITLES). */
const TITLES: Record<string, string> = {
  [CMD.explain]: "Agent: Explain",
  [CMD.refactor]: "Agent: Refactor",
  [CMD.generateTests]: "Agent: Generate tests",
};
const INSTALL = "Install agentls";
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

let agent: AgentExtension | undefined;

export function activate(context: vscode.ExtensionContext): void {
  agent = new AgentExtension(context);
  void agent.start(); // commands wait for it
}

export async function deactivate(): Promise<void> {
  await agent?.stop();
  agent = undefined;
}

class AgentExtension {
  private readonly output = vscode.window.createOutputChannel("agentls", { log: true });
  private readonly view = new StatusView(this.output);
  private readonly explanations = new LiveExplanations();
  private readonly runs = new Runs(this.explanations, this.output);
  private readonly help: ModelHelp;
  private readonly privateEnv: PrivateEnvironment;
  private readonly settings: AgentSettings;
  private readonly tail = new LineTail(40);
  private client: LanguageClient | undefined;
  /** The Python asked first (setting, Python extension, python3), and the one serving. */
  private chosen: Interpreter | undefined;
  private serving: Interpreter | undefined;
  private starting: Promise<LanguageClient | undefined> | undefined;
  /** Whether the current server process answered `initialize`; Pythons whose server did not. */
  private initialized = false;
  private readonly failed = new Set<string>();

  constructor(private readonly context: vscode.ExtensionContext) {
    this.settings = new AgentSettings(context.extension.packageJSON);
    this.help = new ModelHelp(context.globalState, this.output);
    this.privateEnv = new PrivateEnvironment(context.globalStorageUri.fsPath, context.extensionPath, this.output);
    const register = (id: string, run: () => Promise<unknown>): void => {
      context.subscriptions.push(vscode.commands.registerCommand(id, () => run().catch((error) => this.reportError(id, error))));
    };
    register("agentls.explainSelection", () => this.runOnEditor(CMD.explain, "selection"));
    register("agentls.refactorModule", () => this.runOnEditor(CMD.refactor, "file"));
    register("agentls.refactorSelection", () => this.runOnEditor(CMD.refactor, "selection", true));
    register("agentls.generateTests", () => this.runOnEditor(CMD.generateTests, "selection"));
    register("agentls.showStatus", () => this.showStatus());
    register("agentls.restartServer", () => this.restart(true));
    register("agentls.showOutput", async () => this.output.show(true));
    register("agentls.installServer", () => this.install());
    register("agentls.runDoctor", () => this.doctor());
    context.subscriptions.push(
      this.output,
      this.view,
      this.explanations,
      // Trusting the workspace later lifts trustedWorkspace: false.
      vscode.workspace.onDidGrantWorkspaceTrust(() => void this.pushSettings()),
      vscode.workspace.onDidChangeConfiguration(async (event) => {
        const change = this.settings.change(event);
        if (change === "restart") {
          this.output.info("agent.pythonPath changed: restarting the server");
          await this.restart(true);
        } else if (change === "push") {
          await this.pushSettings();
        }
      }),
    );
  }

  /** Start the server unless a start is under way; undefined when the user was told why not. */
  start(): Promise<LanguageClient | undefined> {
    this.starting ??= this.startOnce().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async startOnce(): Promise<LanguageClient | undefined> {
    this.view.starting();
    const python = await this.pickPython();
    if (!python) {
      return undefined;
    }
    this.serving = python;
    this.output.info(`starting ${describeInterpreter(python)}`);
    const client = this.createClient(python);
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.output.error(`starting the server failed: ${String(error)}`); // the close handler said why
      return undefined;
    }
    return client;
  }

  /** The Python to serve with (see serverPython); undefined when the user was told why none. */
  private async pickPython(): Promise<Interpreter | undefined> {
    const chosen = (this.chosen = await resolveInterpreter(this.output));
    const python = await serverPython(chosen, this.privateEnv, this.output, this.failed.has(chosen.command));
    if ("command" in python) {
      return python;
    }
    const message = probeMessage(python, describeInterpreter(chosen));
    this.view.down(message);
    void this.tellUser(message, canInstallWith(python) ? [INSTALL, "Show Output"] : ["Show Output", "Settings"]);
    return undefined;
  }

  /** A new server; `retry`: also with a Python whose server stopped before it started. */
  async restart(retry = false): Promise<LanguageClient | undefined> {
    if (retry) {
      this.failed.clear();
    }
    await this.starting?.catch(() => undefined);
    await this.stop();
    return this.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      await client.stop(5000).catch((error) => this.output.warn(`stopping the server: ${String(error)}`));
      await client.dispose().catch(() => undefined);
    }
  }

  private createClient(python: Interpreter): LanguageClient {
    const client: LanguageClient = createClient(python, {
      output: this.output,
      settings: (scopeUri) => this.settings.forServer(scopeUri),
      onSpawn: () => {
        this.tail.clear();
        this.initialized = false;
      },
      onStderr: (line) => this.tail.push(line),
      onClosed: (fallback) => this.onClosed(client, fallback),
      onRunning: () => {
        if (client === this.client) {
          this.initialized = true;
          void this.refreshStatus();
        }
      },
      onTextDelta: (delta) => this.runs.onTextDelta(delta),
      showDocument: (params) => this.runs.showDocument(params),
      ownsCommand: (command) => command in TITLES,
      runCommand: (command, args) => this.runCommand(command, args),
    });
    return client;
  }

  private async onClosed(client: LanguageClient, fallback: ErrorHandler): Promise<CloseHandlerResult> {
    if (client !== this.client) {
      return { action: CloseAction.DoNotRestart, handled: true }; // replaced (Restart Server)
    }
    const tail = this.tail.last(6);
    this.output.error(`the server stopped. Last lines on stderr:\n${tail.join("\n") || "(none)"}`);
    if (!this.initialized) {
      this.failed.add(this.serving!.command); // Install agentls then starts the private one
      const message = notStartedMessage(describeInterpreter(this.serving!), tail);
      this.view.down(message);
      void this.tellUser(message, [INSTALL, "Show Output", "Restart Server"]);
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const decision = await fallback.closed();
    const message = crashMessage(tail, decision.action === CloseAction.Restart);
    this.view.down(message);
    void this.tellUser(message, ["Show Output", "Restart Server"]);
    return { ...decision, handled: true };
  }

  private async install(): Promise<void> {
    const base = this.chosen ?? (await resolveInterpreter(this.output));
    try {
      await this.privateEnv.install(base.command);
    } catch (error) {
      return this.tellUser(`agentls: installing agentls failed: ${messageOf(error)}. The output has pip's log.`, ["Show Output"]);
    }
    await this.restart();
  }

  /** Send the `agent` section (applied before the server's next message), then ask the status. */
  private async pushSettings(): Promise<void> {
    if (this.client?.state === State.Running) {
      this.output.info("agent settings changed: sending them to the server");
      const settings = { [SECTION]: this.settings.forServer() };
      await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings });
      await this.refreshStatus();
    }
  }

  private async refreshStatus(): Promise<void> {
    const status = await this.view.refresh(this.client);
    if (status && this.serving) {
      void this.help.offer(status, this.serving.command, this.settings.forServer());
    }
  }

  private async showStatus(): Promise<void> {
    const status = await this.view.refresh(await this.readyClient());
    if (status) {
      await showStatusMessage(status, this.output);
    }
  }

  private async doctor(): Promise<void> {
    if (this.serving || (await this.readyClient())) {
      this.output.show(true);
      await runDoctor(this.serving!.command, this.settings.forServer(), this.output);
    }
  }

  /** The running client: waits for a start under way, starts again if stopped. */
  private async readyClient(): Promise<LanguageClient | undefined> {
    let client = this.client ?? (await this.start());
    if (client?.state === State.Starting) {
      await client.start().catch(() => undefined); // a (re)start under way
    }
    if (client && client.state !== State.Running) {
      client = await this.restart();
    }
    return client?.state === State.Running ? client : undefined;
  }

  /** Run an agent.* command on the active editor; the server applies or shows the result. */
  private async runOnEditor(command: ServerCommand, scope: "file" | "selection", ask = false): Promise<void> {
    const args = await editorArgs(scope, ask);
    const result = args && (await this.runCommand(command, args));
    if (result?.ok && result.applied && result.summary) {
      vscode.window.setStatusBarMessage(`agentls: ${result.summary}`, 10000);
    }
  }

  private async runCommand(command: string, args: unknown[]): Promise<CommandResult | undefined> {
    const client = await this.readyClient();
    if (!client) {
      return undefined; // the user was told why
    }
    try {
      const result = await this.runs.run(client, command, TITLES[command] ?? command, args, command === CMD.explain);
      this.view.afterRun(result?.stats);
      return result;
    } finally {
      void this.refreshStatus();
    }
  }

  private async tellUser(message: string, buttons: string[]): Promise<void> {
    this.output.error(message);
    const choice = await vscode.window.showErrorMessage(message, ...buttons);
    if (choice === "Show Output") {
      this.output.show(true);
    } else if (choice === "Restart Server") {
      await this.restart(true);
    } else if (choice === INSTALL) {
      await this.install();
    } else if (choice === "Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "agent.pythonPath");
    }
  }

  private reportError(command: string, error: unknown): void {
    void this.tellUser(`agentls: ${command}: ${messageOf(error)}`, ["Show Output"]);
  }
}
