import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseInterpreter, describeInterpreter, expandPath, privateInterpreter } from "../src/interpreter";

test("agent.pythonPath wins over the Python extension and the default", () => {
  const chosen = chooseInterpreter({ configured: "/opt/venv/bin/python", fromPythonExtension: "/usr/bin/python3.12" });
  assert.deepEqual(chosen, { command: "/opt/venv/bin/python", args: ["-m", "agentls"], source: "setting" });
});

test("the Python extension's interpreter is used when no path is set", () => {
  for (const configured of [undefined, "", "   "]) {
    const chosen = chooseInterpreter({ configured, fromPythonExtension: "/work/.venv/bin/python" });
    assert.equal(chosen.command, "/work/.venv/bin/python");
    assert.equal(chosen.source, "python-extension");
  }
});

test("python3 when nothing else is known", () => {
  const chosen = chooseInterpreter({ configured: "", fromPythonExtension: undefined });
  assert.deepEqual(chosen, { command: "python3", args: ["-m", "agentls"], source: "default" });
  assert.match(describeInterpreter(chosen), /^python3 -m agentls \(the default; set agent.pythonPath/);
});

test("workspace, home and environment variables are expanded", () => {
  const inputs = { workspaceFolder: "/src/proj", home: "/home/ada", env: { VENV: "/venvs/a" } };
  assert.equal(expandPath("${workspaceFolder}/.venv/bin/python", inputs), "/src/proj/.venv/bin/python");
  assert.equal(expandPath("~/venv/bin/python", inputs), "/home/ada/venv/bin/python");
  assert.equal(expandPath("${userHome}/py", inputs), "/home/ada/py");
  assert.equal(expandPath("${env:VENV}/bin/python", inputs), "/venvs/a/bin/python");
  assert.equal(expandPath("${env:MISSING}python3", inputs), "python3");
  assert.equal(
    chooseInterpreter({ ...inputs, configured: "${workspaceFolder}/.venv/bin/python" }).command,
    "/src/proj/.venv/bin/python",
  );
  // Without a workspace the variable stays visible, so the error message shows what was meant.
  assert.equal(expandPath("${workspaceFolder}/python", {}), "${workspaceFolder}/python");
});

test("the extension's own environment says so", () => {
  assert.equal(
    describeInterpreter(privateInterpreter("/store/venv/bin/python")),
    "/store/venv/bin/python -m agentls (this extension's own environment)",
  );
});
