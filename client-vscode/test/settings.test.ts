import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { CLIENT_ONLY, affectsServer, needsRestart, serverKeys, toServerSettings } from "../src/settings";

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

test("unset values are left out, strings trimmed, numbers and booleans kept", () => {
  const values: Record<string, unknown> = {
    backend: "openai",
    baseUrl: "  http://127.0.0.1:8080/v1 ",
    model: "",
    apiKey: "   ",
    contextLength: 8192,
    temperature: 0,
    keepAlive: null,
    flag: false,
  };
  const keys = ["backend", "baseUrl", "model", "apiKey", "contextLength", "temperature", "keepAlive", "maxTurns", "flag"];
  assert.deepEqual(
    toServerSettings(keys, (key) => values[key]),
    { backend: "openai", baseUrl: "http://127.0.0.1:8080/v1", contextLength: 8192, temperature: 0, flag: false },
  );
});

test("only asked-for keys are read", () => {
  const read: string[] = [];
  toServerSettings(["model"], (key) => {
    read.push(key);
    return "gemma4:12b-it-qat";
  });
  assert.deepEqual(read, ["model"]);
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
