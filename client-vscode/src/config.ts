/**
 * The `agent.*` settings as VS Code holds them, shaped for the server by src/settings.ts: only
 * what the user set, restricted ones from user settings alone in an untrusted workspace.
 */

import * as vscode from "vscode";
import { SECTION, affectsServer, needsRestart, serverSettingSpecs, toServerSettings, userValue, type SettingSpec } from "./settings";

export class AgentSettings {
  private readonly specs: Map<string, SettingSpec>;

  /** `packageJSON`: the extension's manifest, whose contributed properties list the settings. */
  constructor(packageJSON: { contributes?: { configuration?: { properties?: Record<string, unknown> } } } | undefined) {
    const specs = serverSettingSpecs(packageJSON?.contributes?.configuration?.properties ?? {});
    this.specs = new Map(specs.map((spec) => [spec.key, spec]));
  }

  /** The `agent` section for the server (flat): server keys only, unset values left out. */
  forServer(scopeUri?: string): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration(SECTION, scopeUri ? vscode.Uri.parse(scopeUri) : undefined);
    const trusted = vscode.workspace.isTrusted;
    const get = (key: string): unknown => {
      const spec = this.specs.get(key);
      return spec ? userValue(spec, config.inspect(key), trusted) : undefined;
    };
    return toServerSettings([...this.specs.values()], get, { workspaceTrusted: trusted });
  }

  /** What a configuration change asks for: a new server process, a push, or nothing. */
  change(event: vscode.ConfigurationChangeEvent): "restart" | "push" | undefined {
    const affects = (name: string): boolean => event.affectsConfiguration(name);
    if (needsRestart(affects)) {
      return "restart";
    }
    return affectsServer([...this.specs.keys()], affects) ? "push" : undefined;
  }
}
