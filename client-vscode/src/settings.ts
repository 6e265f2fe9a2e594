/**
 * Which `agent.*` settings go to the server, and in what shape. No `vscode` import: the
 * extension hands in the contributed properties (package.json) and a getter, so this stays
 * testable with node's test runner.
 *
 * package.json's `contributes.configuration` is the one list of settings: every `agent.X`
 * property is a server setting unless listed in CLIENT_ONLY, so a new server setting only
 * needs its entry there (tests/test_vscode_settings.py checks the list against the server's).
 */

export const SECTION = "agent";

/** Settings the extension itself uses; the server would warn "unknown setting" for them. */
export const CLIENT_ONLY: ReadonlySet<string> = new Set(["pythonPath", "trace.server"]);

/** Settings whose change needs a new server process rather than a configuration push. */
export const RESTART_KEYS: readonly string[] = ["pythonPath"];

export type Getter = (key: string) => unknown;

/** A server setting as contributed: its key (without `agent.`) and its contributed default. */
export interface SettingSpec {
  key: string;
  default: unknown;
  /** package.json `restricted`: an untrusted workspace cannot set it. */
  restricted?: boolean;
}

/** The server-side settings among contributed properties, sorted by key. */
export function serverSettingSpecs(properties: Record<string, unknown>, section = SECTION): SettingSpec[] {
  const prefix = `${section}.`;
  return Object.entries(properties)
    .filter(([name]) => name.startsWith(prefix) && !CLIENT_ONLY.has(name.slice(prefix.length)))
    .map(([name, raw]) => {
      const spec = (typeof raw === "object" && raw !== null ? raw : {}) as { default?: unknown; restricted?: unknown };
      return { key: name.slice(prefix.length), default: spec.default, restricted: spec.restricted === true };
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}

/** The value the user set, from VS Code's `inspect()` layers; undefined when not set. */
export interface Layers {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * Folder over workspace over user settings; in an untrusted workspace a restricted setting
 * takes the user's value only (a cloned repository must not choose the interpreter or the
 * commands the agent runs).
 */
export function userValue(spec: SettingSpec, layers: Layers | undefined, workspaceTrusted: boolean): unknown {
  if (!layers) {
    return undefined;
  }
  if (spec.restricted && !workspaceTrusted) {
    return layers.globalValue;
  }
  return layers.workspaceFolderValue ?? layers.workspaceValue ?? layers.globalValue;
}

/** Just the keys of serverSettingSpecs. */
export function serverKeys(properties: Record<string, unknown>, section = SECTION): string[] {
  return serverSettingSpecs(properties, section).map((spec) => spec.key);
}

export interface SendOptions {
  /**
   * VS Code's workspace trust: untrusted always sends trustedWorkspace: false; trusted sends
   * the user's value, else true.
   */
  workspaceTrusted?: boolean;
}

/**
 * The object sent to the server (flat, camelCase keys as the server names them).
 *
 * `get` returns what the user set (undefined when they did not): "not set" is left out so
 * the server's own defaults apply. A blank string is "not set" too when the contributed
 * default is blank, which is how the settings UI clears a text field (an empty `model` would
 * otherwise be taken as a model name); where the default is not blank (`testCommand: auto`),
 * an empty value means something and is sent. Strings are trimmed; other values go as they are.
 */
export function toServerSettings(
  specs: readonly SettingSpec[],
  get: Getter,
  options: SendOptions = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of specs) {
    let value = get(spec.key);
    if (value === undefined || value === null) {
      continue;
    }
    if (typeof value === "string") {
      value = value.trim();
      if (value === "" && (spec.default === undefined || spec.default === "")) {
        continue;
      }
    }
    out[spec.key] = value;
  }
  if (specs.some((s) => s.key === "trustedWorkspace")) {
    if (options.workspaceTrusted === false) {
      out["trustedWorkspace"] = false;
    } else if (options.workspaceTrusted === true && out["trustedWorkspace"] === undefined) {
      // Restate trust: the server keeps a start-time "untrusted" until the client says
      // otherwise, which is what granting trust later must undo (docs/security.md).
      out["trustedWorkspace"] = true;
    }
  }
  return out;
}

/** Whether a configuration change (tested with `affects("agent.x")`) concerns the server. */
export function affectsServer(keys: readonly string[], affects: (name: string) => boolean): boolean {
  return keys.some((key) => affects(`${SECTION}.${key}`));
}

/** Whether the change needs the server restarted (a different interpreter). */
export function needsRestart(affects: (name: string) => boolean): boolean {
  return RESTART_KEYS.some((key) => affects(`${SECTION}.${key}`));
}
