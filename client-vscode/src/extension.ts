/**
 * The agentls VS Code extension: starts the agentls language server, forwards the palette
 * commands to it and shows what comes back. All agent logic lives in the server.
 */

import { spawn, type ChildProcess } from "node:child_process";
import * as os from "node:os";
import * as readline from "node:readline";
import * as vscode from "vscode";
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  type CloseHandlerResult,
  type ErrorHandlerResult,
  type LanguageClientOptions,
} from "vscode-languageclient/node";
import { chooseInterpreter, describeInterpreter, type Interpreter } from "./interpreter";
import { LineTail, RestartPolicy, describeExit } from "./restart";
import {
  SECTION,
  affectsServer,
  needsRestart,
  serverSettingSpecs,
  toServerSettings,
  userValue,
  type SettingSpec,
} from "./settings";
import { isAgentStatus, statusBarText, statusDetails, statusHeadline, type AgentStatus } from "./status";
import { LiveExplanations } from "./explanations";
import { TEXT_DELTA, isTextDelta, liveRunFor, type TextDelta } from "./stream";

const STATUS_REQUEST = "agent/status";
const CMD = { explain: "agent.explain", refactor: "agent.refactor", generateTests: "agent.generateTests" } as const;
type ServerCommand = (typeof CMD)[keyof typeof CMD];
/** The server's progress titles (protocol.KIND_TITLES): they tie its progress to our run. */
const TITLES: Record<string, string> = {
  [CMD.explain]: "Agent: Explain",
  [CMD.refactor]: "Agent: Refactor",
  [CMD.generateTests]: "Agent: Generate tests",
};

/** A command run shown as a cancellable notification, fed by the server's progress. */
interface Run {
  command: string;
  title: string;
  progress: vscode.Progress<{ message?: string; increment?: number }>;
  token?: string | number;
  reported: number;
  /** The document the command is about (its first argument). */
  source?: string;
  /** The live explanation this run streams into, once its first token arrived. */
  live?: vscode.Uri;
}
/** JSON-RPC RequestCancelled: the user pressed Cancel on the progress notification. */
const REQUEST_CANCELLED = -32800;

/** What agent.* commands answer (server/agentls/protocol.py CommandResultJson). */
interface CommandResult {
  ok: boolean;
  summary?: string;
  applied?: boolean;
  failureReason?: string;
  document?: string;
  stats?: Record<string, unknown>;
  error?: string;
  hint?: string;
}

/** The part of the Python extension's API used here (ms-python.python, optional). */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id: string; path: string };
    resolveEnvironment?(
      environment: { id: string; path: string } | string,
    ): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
}

let agent: AgentExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  agent = new AgentExtension(context);
  await agent.start();
}

export async function deactivate(): Promise<void> {
  await agent?.dispose();
  agent = undefined;
}

class AgentExtension {
  private readonly output: vscode.LogOutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly specs: SettingSpec[];
  private readonly keys: string[];
  private readonly restarts = new RestartPolicy();
  private readonly stderrTail = new LineTail(40);
  private client: LanguageClient | undefined;
  private process: ChildProcess | undefined;
  private exited: Promise<{ code: number | null; signal: string | null }> | undefined;
  private interpreter: Interpreter | undefined;
  private initialized = false;
  private stopping = false;
  private statusSeq = 0;
  private readonly runs: Run[] = [];
  private readonly explanations = new LiveExplanations();
  /** Bumped for every new LanguageClient. */
  private generation = 0;
  /** A crashed server is waiting out its back-off or starting again. */
  private restarting = false;
  /** The client generation whose failure the user was last told about. */
  private toldGeneration = -1;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel("agentls", { log: true });
    this.statusItem = vscode.window.createStatusBarItem("agentls.status", vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = "agentls";
    this.statusItem.command = "agentls.showStatus";
    this.statusItem.text = "$(hubot) agentls $(sync~spin)";
    this.statusItem.tooltip = "agentls: starting the language server";
    this.statusItem.show();
    const properties = (context.extension.packageJSON?.contributes?.configuration?.properties ?? {}) as Record<
      string,
      unknown
    >;
    this.specs = serverSettingSpecs(properties);
    this.keys = this.specs.map((spec) => spec.key);

    const register = (id: string, run: () => Promise<unknown>): void => {
      context.subscriptions.push(
        vscode.commands.registerCommand(id, async () => {
          try {
            await run();
          } catch (error) {
            this.reportError(id, error);
          }
        }),
      );
    };
    register("agentls.explainSelection", () => this.runOnEditor(CMD.explain, "selection"));
    register("agentls.refactorModule", () => this.runOnEditor(CMD.refactor, "file"));
    register("agentls.refactorSelection", () => this.runOnEditor(CMD.refactor, "selection", true));
    register("agentls.generateTests", () => this.runOnEditor(CMD.generateTests, "selection"));
    register("agentls.showStatus", () => this.showStatus());
    register("agentls.restartServer", () => this.restart());
    register("agentls.showOutput", async () => this.output.show(true));

    context.subscriptions.push(
      this.output,
      this.statusItem,
      this.explanations,
      // Trusting the workspace later lifts trustedWorkspace: false (the server pulls again).
      vscode.workspace.onDidGrantWorkspaceTrust(() => void this.pushSettings()),
      vscode.workspace.onDidChangeConfiguration(async (event) => {
        if (needsRestart((name) => event.affectsConfiguration(name))) {
          this.output.info("agent.pythonPath changed: restarting the server");
          await this.restart();
        } else if (affectsServer(this.keys, (name) => event.affectsConfiguration(name))) {
          this.output.info("agent settings changed: sending them to the server");
          // The languageclient sends didChangeConfiguration (see middleware); then re-check.
          setTimeout(() => void this.refreshStatus(), 300);
        }
      }),
    );
  }

  /** Tell the server its settings changed; it pulls the `agent` section (middleware). */
  private async pushSettings(): Promise<void> {
    if (this.client?.state === State.Running) {
      await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: null });
    }
  }

  // ---- server lifecycle -------------------------------------------------------------------

  async start(): Promise<void> {
    this.stopping = false;
    this.client = this.createClient();
    try {
      await this.client.start();
    } catch (error) {
      const generation = this.generation;
      this.statusItem.text = "$(hubot) agentls $(error)";
      this.statusItem.tooltip = "agentls: the language server did not start; click for details";
      this.output.error(`starting the server failed: ${String(error)}`);
      // The close handler may be explaining this very failure (it waits for the exit status).
      await new Promise((resolve) => setTimeout(resolve, 2500));
      if (this.toldGeneration !== generation && generation === this.generation) {
        const tail = this.stderrTail.last(1)[0] ?? (error instanceof Error ? error.message : String(error));
        const interpreter = this.interpreter ? describeInterpreter(this.interpreter) : "the server";
        void this.tellUser(
          `agentls: could not start ${interpreter}: ${tail}. ` +
            "Install agentls into that Python (pip install agentls) or set agent.pythonPath.",
        );
      }
      return;
    }
    void this.refreshStatus();
  }

  async restart(): Promise<void> {
    this.restarts.reset();
    this.restarting = false;
    await this.stopClient();
    this.statusItem.text = "$(hubot) agentls $(sync~spin)";
    await this.start();
  }

  async dispose(): Promise<void> {
    await this.stopClient();
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.stopping = true;
    if (client) {
      try {
        await client.stop(5000);
      } catch (error) {
        this.output.warn(`stopping the server: ${String(error)}`);
      }
      await client.dispose().catch(() => undefined);
    }
    this.process?.kill();
    this.process = undefined;
  }

  private async resolveInterpreter(folder: vscode.WorkspaceFolder | undefined): Promise<Interpreter> {
    const config = vscode.workspace.getConfiguration(SECTION, folder?.uri);
    const configured = userValue({ key: "pythonPath", default: "", restricted: true }, config.inspect("pythonPath"), vscode.workspace.isTrusted);
    return chooseInterpreter({
      configured: typeof configured === "string" ? configured : undefined,
      fromPythonExtension: await pythonExtensionInterpreter(folder?.uri, this.output),
      workspaceFolder: folder?.uri.fsPath,
      home: os.homedir(),
      env: process.env,
    });
  }

  /** Spawns the server; keeps its stderr tail and exit status to explain a crash. */
  private async spawnServer(): Promise<ChildProcess> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const interpreter = await this.resolveInterpreter(folder);
    this.interpreter = interpreter;
    this.initialized = false;
    this.stderrTail.clear();
    this.output.info(`starting ${describeInterpreter(interpreter)}`);
    const child = spawn(interpreter.command, interpreter.args, {
      cwd: folder?.uri.fsPath ?? os.homedir(),
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
      stdio: "pipe",
    });
    this.process = child;
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    return await new Promise<ChildProcess>((resolve, reject) => {
      child.once("spawn", () => resolve(child));
      child.once("error", (error) => {
        const message = `cannot run ${interpreter.command}: ${error.message}`;
        this.stderrTail.push(message);
        reject(new Error(message));
      });
    });
  }

  private createClient(): LanguageClient {
    // Events of a client replaced meanwhile (Restart Server) must not restart anything.
    const generation = ++this.generation;
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }],
      outputChannel: this.output,
      synchronize: { configurationSection: SECTION },
      initializationOptions: () => this.serverSettings(undefined),
      stdioOptions: {
        stdout: (input, channel) => {
          readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (l) => channel.info(l));
        },
        stderr: (input, channel) => {
          readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (line) => {
            this.stderrTail.push(line);
            channel.appendLine(line);
          });
        },
      },
      // No retry and no generic "initialization failed" popup: the close handler says why.
      initializationFailedHandler: (error) => {
        this.output.error(`initialize failed: ${error instanceof Error ? error.message : String(error)}`);
        return false;
      },
      errorHandler: {
        error: (error, _message, count): ErrorHandlerResult => {
          this.output.error(`connection error: ${error.message}`);
          return { action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true };
        },
        closed: () =>
          generation === this.generation
            ? this.onServerClosed()
            : { action: CloseAction.DoNotRestart, handled: true },
      },
      middleware: {
        workspace: {
          // Send "settings changed" without a payload: the server then pulls the section
          // through workspace/configuration, which the middleware below shapes for it.
          didChangeConfiguration: async (_sections, next) => next(undefined),
          configuration: async (params, token, next) => {
            const values = (await next(params, token)) as unknown[];
            if (!Array.isArray(values)) {
              return values;
            }
            return params.items.map((item, i) => {
              if (item.section !== SECTION) {
                return values[i];
              }
              const scope = item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined;
              return this.serverSettings(scope);
            });
          },
        },
        window: {
          // Explanations arrive as window/showDocument of a .md file: show the preview (the
          // live one, which streamed, gets the saved text instead).
          showDocument: async (params, token, next) => {
            if (!params.external && /\.(md|markdown)$/i.test(params.uri)) {
              const run = liveRunFor(this.runs, params.uri);
              if (run?.live) {
                try {
                  const saved = await vscode.workspace.fs.readFile(vscode.Uri.parse(params.uri));
                  this.explanations.finish(run.live, new TextDecoder().decode(saved));
                  return { success: true };
                } catch (error) {
                  this.output.warn(`reading the saved explanation: ${String(error)}`);
                }
              }
              await vscode.commands.executeCommand("markdown.showPreviewToSide", vscode.Uri.parse(params.uri));
              return { success: true };
            }
            return next(params, token);
          },
        },
        // Code actions run agent.* commands through here: give them the same notification.
        executeCommand: async (command, args, next) => {
          if (command in TITLES) {
            return this.runServerCommand(command, args);
          }
          return next(command, args);
        },
        // The server reports progress on a token it created; the languageclient would show it
        // in the status bar, where there is no Cancel. Route it into the run's notification.
        handleWorkDoneProgress: (token, params, next) => {
          if (params.kind === "begin") {
            const run = this.runs.find((r) => r.token === undefined && r.title === params.title);
            if (run) {
              run.token = token;
              this.report(run, params.message, params.percentage);
              return;
            }
          } else if (params.kind === "report") {
            const run = this.runs.find((r) => r.token === token);
            if (run) {
              this.report(run, params.message, params.percentage);
              return;
            }
          }
          next(token, params);
        },      },
    };
    const client = new LanguageClient("agent", "agentls", () => this.spawnServer(), clientOptions);
    client.onNotification(TEXT_DELTA, (params: unknown) => {
      if (isTextDelta(params)) {
        this.onTextDelta(params);
      }
    });
    client.onDidChangeState((event) => {
      if (generation !== this.generation) {
        return;
      }
      if (event.newState === State.Running) {
        this.initialized = true;
        this.restarting = false;
        void this.refreshStatus();
      } else if (event.newState === State.Stopped) {
        this.restarting = false;
      }
    });
    return client;
  }

  /** The `agent` section as the server wants it: server keys only, unset values left out. */
  private serverSettings(scope: vscode.Uri | undefined): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration(SECTION, scope);
    const trusted = vscode.workspace.isTrusted;
    const specs = new Map(this.specs.map((spec) => [spec.key, spec]));
    // Only values the user set: defaults are the server's business (one source of truth).
    return toServerSettings(
      this.specs,
      (key) => {
        const spec = specs.get(key);
        return spec ? userValue(spec, config.inspect(key), trusted) : undefined;
      },
      { workspaceTrusted: trusted },
    );
  }

  private async onServerClosed(): Promise<CloseHandlerResult> {
    if (this.stopping) {
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    // The pipes close before the process is reaped: wait (briefly) for its exit status.
    const status = await Promise.race([
      this.exited ?? Promise.resolve(undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2000)),
    ]);
    const exit = status ? describeExit(status.code, status.signal) : "stopped";
    const tail = this.stderrTail.last(6);
    const why = tail.join("\n") || "(nothing on stderr)";
    const last = tail.length ? `: ${lastLine(why)}` : "";
    const interpreter = this.interpreter ? describeInterpreter(this.interpreter) : "the server";
    const decision = this.restarts.onCrash(Date.now(), this.initialized);
    this.statusItem.text = "$(hubot) agentls $(error)";
    this.statusItem.tooltip = `agentls: the server ${exit}\n${why}`;
    this.output.error(`the server ${exit}. Last lines on stderr:\n${why}`);
    if (decision.restart) {
      this.restarting = true;
      const seconds = Math.round(decision.delayMs / 100) / 10;
      void this.tellUser(`agentls: the server ${exit}${last}. Restarting in ${seconds}s.`);
      await new Promise((resolve) => setTimeout(resolve, decision.delayMs));
      if (this.stopping) {
        this.restarting = false;
        return { action: CloseAction.DoNotRestart, handled: true };
      }
      return { action: CloseAction.Restart, handled: true }; // restarting ends at Running
    }
    const reason =
      decision.reason === "never-started"
        ? `agentls: ${interpreter} ${exit} before it started${last}. ` +
          "Install agentls into that Python (pip install agentls) or set agent.pythonPath."
        : `agentls: the server ${exit} 5 times in 3 minutes and was not restarted${last}.`;
    void this.tellUser(reason);
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private async tellUser(message: string): Promise<void> {
    this.toldGeneration = this.generation;
    this.output.error(message);
    const choice = await vscode.window.showErrorMessage(message, "Show Output", "Restart Server");
    if (choice === "Show Output") {
      this.output.show(true);
    } else if (choice === "Restart Server") {
      await this.restart();
    }
  }

  // ---- commands ---------------------------------------------------------------------------

  private async readyClient(): Promise<LanguageClient> {
    // A crash restart under way: wait for it rather than start a second server beside it.
    const deadline = Date.now() + 30_000;
    while ((this.restarting || this.client?.state === State.Starting) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!this.client || this.client.state !== State.Running) {
      await this.restart();
    }
    if (!this.client || this.client.state !== State.Running) {
      throw new Error("the agentls server is not running; see the agentls output");
    }
    return this.client;
  }

  /** Run an agent.* command on the active editor; the server applies or shows the result. */
  private async runOnEditor(command: ServerCommand, scope: "file" | "selection", ask = false): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showWarningMessage("agentls: open a file first.");
      return;
    }
    const document = editor.document;
    if (document.uri.scheme !== "file") {
      void vscode.window.showWarningMessage("agentls: the agent works on files saved on disk; save this one first.");
      return;
    }
    let instruction: string | undefined;
    if (ask) {
      instruction = await vscode.window.showInputBox({
        title: "Agent: Refactor Selection",
        prompt: "How should the selected code change?",
        placeHolder: "e.g. extract the parsing into a function; use pathlib",
        ignoreFocusOut: true,
      });
      if (instruction === undefined) {
        return; // Escape: the user changed their mind
      }
    }
    const client = await this.readyClient();
    const selection = editor.selection;
    const range = scope === "selection" && !selection.isEmpty ? client.code2ProtocolConverter.asRange(selection) : null;
    const args: unknown[] = [document.uri.toString(), range];
    if (instruction?.trim()) {
      args.push(instruction.trim());
    }
    const result = await this.runServerCommand(command, args);
    // Failures and refused edits were already shown by the server; add the summary.
    if (result?.ok && result.applied && result.summary) {
      vscode.window.setStatusBarMessage(`agentls: ${result.summary}`, 10000);
    }
  }

  /**
   * workspace/executeCommand with a progress notification whose Cancel cancels the request
   * ($/cancelRequest: the server stops the model and applies nothing).
   */
  private async runServerCommand(command: string, args: unknown[]): Promise<CommandResult | undefined> {
    const client = await this.readyClient();
    const title = TITLES[command] ?? command;
    try {
      return await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title, cancellable: true },
        async (progress, token) => {
          const source = typeof args[0] === "string" ? args[0] : undefined;
          const run: Run = { command, title, progress, reported: 0, source };
          this.runs.push(run);
          try {
            return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }, token)) as
              | CommandResult
              | undefined;
          } finally {
            this.runs.splice(this.runs.indexOf(run), 1);
          }
        },
      );
    } catch (error) {
      if (isCancelled(error)) {
        this.output.info(`${title}: cancelled`);
        vscode.window.setStatusBarMessage(`${title}: cancelled`, 5000);
        return undefined;
      }
      throw error;
    } finally {
      void this.refreshStatus();
    }
  }

  /**
   * An explanation's text as the model writes it: the first token opens the live preview
   * beside the code, later ones grow it. Other runs' text (a refactor's commentary) is
   * already in their progress.
   */
  private onTextDelta(delta: TextDelta): void {
    const run = this.runs.find((r) => r.token === delta.token);
    if (!run || run.command !== CMD.explain || delta.kind !== "answer") {
      return;
    }
    if (!run.live) {
      run.live = this.explanations.open(run.source, (error) =>
        this.output.warn(`opening the explanation preview: ${String(error)}`),
      );
    }
    this.explanations.apply(run.live, delta);
  }

  private report(run: Run, message: string | undefined, percentage: number | undefined): void {
    let increment: number | undefined;
    if (typeof percentage === "number") {
      const target = Math.max(0, Math.min(100, percentage));
      increment = Math.max(0, target - run.reported);
      run.reported += increment;
    }
    run.progress.report({ message, increment });
  }

  private async fetchStatus(): Promise<AgentStatus | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      return undefined;
    }
    const status: unknown = await client.sendRequest(STATUS_REQUEST, {});
    return isAgentStatus(status) ? status : undefined;
  }

  private async refreshStatus(): Promise<void> {
    const seq = ++this.statusSeq;
    try {
      const status = await this.fetchStatus();
      if (seq !== this.statusSeq || !status) {
        return;
      }
      this.statusItem.text = statusBarText(status);
      this.statusItem.tooltip = statusDetails(status).join("\n");
      this.statusItem.backgroundColor = status.reachable
        ? undefined
        : new vscode.ThemeColor("statusBarItem.warningBackground");
    } catch (error) {
      this.output.warn(`agent/status failed: ${String(error)}`);
    }
  }

  private async showStatus(): Promise<void> {
    const status = await (await this.readyClient()).sendRequest(STATUS_REQUEST, {});
    if (!isAgentStatus(status)) {
      throw new Error("agent/status answered something unexpected");
    }
    void this.refreshStatus();
    const details = statusDetails(status);
    this.output.info(`status:\n  ${details.join("\n  ")}`);
    const show = status.reachable && !status.error ? vscode.window.showInformationMessage : vscode.window.showWarningMessage;
    const choice = await show(statusHeadline(status), { modal: false, detail: details.join("\n") }, "Details", "Settings");
    if (choice === "Details") {
      this.output.show(true);
    } else if (choice === "Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "@ext:agentls.agentls");
    }
  }

  private reportError(command: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.output.error(`${command}: ${message}`);
    void vscode.window.showErrorMessage(`agentls: ${message}`, "Show Output").then((choice) => {
      if (choice) {
        this.output.show(true);
      }
    });
  }
}

function isCancelled(error: unknown): boolean {
  if (error instanceof vscode.CancellationError) {
    return true; // how the languageclient reports a request cancelled by its token
  }
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === REQUEST_CANCELLED;
}

function lastLine(text: string): string {
  const lines = text.split("\n").filter((l) => l.trim());
  return lines[lines.length - 1]?.trim() ?? "no output";
}

/** The Python extension's active interpreter for a resource, if that extension is installed. */
async function pythonExtensionInterpreter(
  resource: vscode.Uri | undefined,
  output: vscode.LogOutputChannel,
): Promise<string | undefined> {
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
