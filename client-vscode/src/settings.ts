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

/** The server-side keys (without the `agent.` prefix) among contributed properties. */
export function serverKeys(properties: Record<string, unknown>, section = SECTION): string[] {
  const prefix = `${section}.`;
  return Object.keys(properties)
    .filter((name) => name.startsWith(prefix))
    .map((name) => name.slice(prefix.length))
    .filter((key) => !CLIENT_ONLY.has(key))
    .sort();
}

/**
 * The object sent to the server (flat, camelCase keys as the server names them).
 *
 * "Not set" is left out rather than sent: `null`/`undefined`, and empty or blank strings,
 * which is how the settings UI clears a text field (an empty `model` would otherwise be taken
 * as a model name). Strings are trimmed; numbers and booleans go as they are.
 */
export function toServerSettings(keys: readonly string[], get: Getter): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    let value = get(key);
    if (value === undefined || value === null) {
      continue;
    }
    if (typeof value === "string") {
      value = value.trim();
      if (value === "") {
        continue;
      }
    }
    out[key] = value;
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
