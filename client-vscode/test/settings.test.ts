import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { CLIENT_ONLY, affectsServer, needsRestart, serverKeys, serverSettingSpecs, toServerSettings, userValue } from "../src/settings";

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
  contributes: { configuration: { properties: Record<string, { default?: unknown; markdownDescription?: string; description?: string }> } };
};
const properties = pkg.contributes.configuration.properties;

test("server keys are the contributed agent.* settings less the client's own", () => {
  const keys = serverKeys(properties);
  assert.ok(keys.includes("baseUrl") && keys.includes("model") && keys.includes("toolMode"));
  assert.ok(!keys.includes("pythonPath"), "pythonPath is the client's");
  assert.ok(!keys.includes("trace.server"), "trace.server is the client's");
  assert.deepEqual(serverKeys({ "agent.model": {}, "other.model": {}, "agent.pythonPath": {} }), ["model"]);
});

test("every contributed setting has a description and the client-only ones exist", () => {
  for (const [name, spec] of Object.entries(properties)) {
    assert.ok(spec.markdownDescription ?? spec.description, `${name} needs a description`);
  }
  for (const key of CLIENT_ONLY) {
    assert.ok(`agent.${key}` in properties, `agent.${key} is contributed`);
  }
});

test("unset values are left out, strings trimmed, numbers, booleans and lists kept", () => {
  const values: Record<string, unknown> = {
    backend: "openai",
    baseUrl: "  http://127.0.0.1:8080/v1 ",
    model: "",
    apiKey: "   ",
    contextLength: 8192,
    temperature: 0,
    keepAlive: null,
    trustedWorkspace: true,
    allowedCommands: ["pytest", "npm test"],
  };
  const specs = serverSettingSpecs(properties);
  assert.deepEqual(toServerSettings(specs, (key) => values[key]), {
    backend: "openai",
    baseUrl: "http://127.0.0.1:8080/v1",
    contextLength: 8192,
    temperature: 0,
    trustedWorkspace: true,
    allowedCommands: ["pytest", "npm test"],
  });
});

test("an empty value is sent where the default is not empty (testCommand '' = no verification)", () => {
  const specs = serverSettingSpecs(properties);
  assert.deepEqual(toServerSettings(specs, (key) => (key === "testCommand" || key === "model" ? "" : undefined)), {
    testCommand: "",
  });
});

test("an untrusted workspace always sends trustedWorkspace: false", () => {
  const specs = serverSettingSpecs(properties);
  const trustedSetting = (key: string) => (key === "trustedWorkspace" ? true : undefined);
  assert.deepEqual(toServerSettings(specs, trustedSetting, { workspaceTrusted: false }), { trustedWorkspace: false });
  assert.deepEqual(toServerSettings(specs, trustedSetting, { workspaceTrusted: true }), { trustedWorkspace: true });
  // Trusted (e.g. trust granted after start): restated, so a start-time "untrusted" is lifted.
  assert.deepEqual(toServerSettings(specs, () => undefined, { workspaceTrusted: true }), { trustedWorkspace: true });
  // The user's own false still wins.
  const distrust = (key: string) => (key === "trustedWorkspace" ? false : undefined);
  assert.deepEqual(toServerSettings(specs, distrust, { workspaceTrusted: true }), { trustedWorkspace: false });
  assert.deepEqual(toServerSettings(specs, () => undefined), {});
});

test("only asked-for keys are read", () => {
  const read: string[] = [];
  toServerSettings([{ key: "model", default: "" }], (key) => {
    read.push(key);
    return "gemma4:12b-it-qat";
  });
  assert.deepEqual(read, ["model"]);
});

test("restricted settings are the ones an untrusted workspace cannot set", () => {
  const pkgFull = JSON.parse(readFileSync("package.json", "utf8")) as {
    capabilities: { untrustedWorkspaces: { restrictedConfigurations: string[] } };
  };
  const restricted = pkgFull.capabilities.untrustedWorkspaces.restrictedConfigurations;
  for (const name of ["agent.pythonPath", "agent.testCommand", "agent.allowedCommands", "agent.baseUrl"]) {
    assert.ok(restricted.includes(name), `${name} is restricted`);
    assert.equal((properties[name] as { restricted?: boolean }).restricted, true);
  }
});

test("a change to a server setting is pushed; a change to pythonPath restarts", () => {
  const keys = serverKeys(properties);
  const changed = (names: string[]) => (name: string) => names.includes(name);
  assert.equal(affectsServer(keys, changed(["agent.model"])), true);
  assert.equal(affectsServer(keys, changed(["agent.pythonPath"])), false);
  assert.equal(affectsServer(keys, changed(["editor.fontSize"])), false);
  assert.equal(needsRestart(changed(["agent.pythonPath"])), true);
  assert.equal(needsRestart(changed(["agent.model"])), false);
});

test("user value: folder over workspace over user; untrusted workspaces cannot set restricted ones", () => {
  const layers = { globalValue: "/usr/bin/python3", workspaceValue: "./evil/python", workspaceFolderValue: undefined };
  const pythonPath = { key: "pythonPath", default: "", restricted: true };
  const model = { key: "model", default: "", restricted: false };
  assert.equal(userValue(pythonPath, layers, true), "./evil/python");
  assert.equal(userValue(pythonPath, layers, false), "/usr/bin/python3");
  assert.equal(userValue(model, { workspaceValue: "gemma4:26b", globalValue: "gemma4:12b" }, false), "gemma4:26b");
  assert.equal(userValue(model, { workspaceFolderValue: "a", workspaceValue: "b" }, true), "a");
  assert.equal(userValue(model, undefined, true), undefined);
  const specs = serverSettingSpecs(properties);
  assert.equal(specs.find((s) => s.key === "testCommand")?.restricted, true);
  assert.equal(specs.find((s) => s.key === "model")?.restricted, false);
});
