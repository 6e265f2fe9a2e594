/**
 * The LanguageClient: vscode-languageclient starts `<python> -m agentls` (ServerOptions with
 * command, args and options) and restarts it; the extension hooks in where it has something to
 * add (the stderr tail, the settings it answers with, the commands it runs itself).
 */

import * as readline from "node:readline";
import type { LogOutputChannel } from "vscode";
import {
  LanguageClient,
  State,
  type CloseHandlerResult,
  type ErrorHandler,
  type LanguageClientOptions,
  type ShowDocumentParams,
  type ShowDocumentResult,
} from "vscode-languageclient/node";
import type { Interpreter } from "./interpreter";
import { pythonEnv, serverCwd } from "./python";
import { SECTION } from "./settings";
import { TEXT_DELTA, isTextDelta, type TextDelta } from "./stream";

export interface ClientHooks {
  output: LogOutputChannel;
  /** The `agent` section for the server (workspace/configuration, initializationOptions). */
  settings(scopeUri?: string): Record<string, unknown>;
  /** A new server process: its stderr starts here. */
  onSpawn(): void;
  onStderr(line: string): void;
  /** The connection closed; `fallback` is vscode-languageclient's default policy. */
  onClosed(fallback: ErrorHandler): Promise<CloseHandlerResult>;
  onRunning(): void;
  onTextDelta(delta: TextDelta): void;
  /** Undefined: not handled here, vscode-languageclient shows the document. */
  showDocument(params: ShowDocumentParams): Promise<ShowDocumentResult | undefined>;
  /** Whether `command` is one the extension runs itself (with its own progress). */
  ownsCommand(command: string): boolean;
  runCommand(command: string, args: unknown[]): Promise<unknown>;
}

/**
 * vscode-languageclient with its error popups off: the extension says what went wrong and the
 * fix (onClosed, the probe); the Output channel still has every error it logs.
 */
class QuietClient extends LanguageClient {
  override error(message: string, data?: unknown): void {
    super.error(message, data, false);
  }
}

export function createClient(python: Interpreter, hooks: ClientHooks): LanguageClient {
  let fallback: ErrorHandler | undefined;
  const options: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }],
    outputChannel: hooks.output,
    initializationOptions: () => hooks.settings(),
    stdioOptions: {
      stdout: () => undefined, // stdout is the LSP stream
      stderr: (input, channel) => {
        hooks.onSpawn(); // called for every process the client starts
        readline.createInterface({ input, crlfDelay: Infinity }).on("line", (line) => {
          hooks.onStderr(line);
          channel.appendLine(line);
        });
      },
    },
    initializationFailedHandler: () => false, // no retry: the close handler says why
    errorHandler: {
      error: (error, message, count) => fallback!.error(error, message, count),
      closed: () => hooks.onClosed(fallback!),
    },
    middleware: {
      workspace: {
        // The server pulls the `agent` section: answer with what the user set.
        configuration: async (params, token, next) => {
          const values = (await next(params, token)) as unknown[];
          return Array.isArray(values)
            ? params.items.map((item, i) => (item.section === SECTION ? hooks.settings(item.scopeUri) : values[i]))
            : values;
        },
      },
      window: { showDocument: async (params, token, next) => (await hooks.showDocument(params)) ?? next(params, token) },
      // Code actions run agent.* commands through here: the same notification as the palette.
      executeCommand: async (command, args, next) => (hooks.ownsCommand(command) ? hooks.runCommand(command, args) : next(command, args)),
    },
  };
  const server = { command: python.command, args: python.args, options: { cwd: serverCwd(), env: pythonEnv() } };
  const client = new QuietClient("agent", "agentls", server, options);
  fallback = client.createDefaultErrorHandler(); // restart at once, up to 4 times in 3 minutes
  client.onNotification(TEXT_DELTA, (params: unknown) => {
    if (isTextDelta(params)) {
      hooks.onTextDelta(params);
    }
  });
  client.onDidChangeState((event) => event.newState === State.Running && hooks.onRunning());
  return client;
}
