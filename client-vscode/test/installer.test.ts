import assert from "node:assert/strict";
import { test } from "node:test";
import { canInstallWith, failureSummary, findWheel, installSteps, probeMessage, probeOutcome, venvPython } from "../src/installer";

test("the probe's exit code says whether the Python has agentls", () => {
  assert.deepEqual(probeOutcome({ code: 0, stdout: "", stderr: "" }), { kind: "ok" });
  assert.deepEqual(probeOutcome({ code: 3, stdout: "", stderr: "" }), { kind: "missing" });
  assert.deepEqual(probeOutcome({ code: 4, stdout: "3.9\n", stderr: "" }), { kind: "too-old", version: "3.9" });
  assert.deepEqual(probeOutcome({ code: null, stdout: "", stderr: "", error: "spawn python9 ENOENT" }), {
    kind: "unrunnable",
    error: "spawn python9 ENOENT",
  });
  assert.deepEqual(probeOutcome({ code: 1, stdout: "", stderr: "Traceback\nSyntaxError: bad\n" }), {
    kind: "failed",
    detail: "SyntaxError: bad",
  });
  assert.equal(canInstallWith({ kind: "missing" }), true);
  assert.equal(canInstallWith({ kind: "unrunnable", error: "x" }), false);
  assert.equal(canInstallWith({ kind: "too-old", version: "3.10" }), false);
});

test("the messages name the interpreter, the cause and the fixes", () => {
  const who = "/tmp/bare/bin/python -m agentls (from agent.pythonPath)";
  const missing = probeMessage({ kind: "missing" }, who);
  assert.match(missing, /^agentls: \/tmp\/bare\/bin\/python -m agentls \(from agent\.pythonPath\) cannot start the server: No module named agentls\./);
  assert.match(missing, /Install agentls into this extension's own environment/);
  assert.match(missing, /pip install agentls into that Python, or set agent\.pythonPath\.$/);
  assert.match(probeMessage({ kind: "too-old", version: "3.9" }, who), /is Python 3\.9; agentls needs Python 3\.11 or newer/);
  assert.match(probeMessage({ kind: "unrunnable", error: "spawn x ENOENT" }, who), /cannot run .*: spawn x ENOENT\. Set agent\.pythonPath/);
});

test("the bundled wheel is found among the folder's files, newest first", () => {
  assert.equal(findWheel(["README", "agentls-0.1.0-py3-none-any.whl"]), "agentls-0.1.0-py3-none-any.whl");
  assert.equal(
    findWheel(["agentls-0.9.0-py3-none-any.whl", "agentls-0.10.0-py3-none-any.whl", "other-1.0-py3-none-any.whl"]),
    "agentls-0.10.0-py3-none-any.whl",
  );
  assert.equal(findWheel(["agentls-0.1.0.tar.gz"]), undefined);
});

test("install: a venv made by the chosen Python, then pip with the wheel", () => {
  const steps = installSteps("/usr/bin/python3", "/store/venv", "/ext/bundled/agentls-0.1.0-py3-none-any.whl", { platform: "linux" });
  assert.deepEqual(
    steps.map((s) => [s.command, ...s.args]),
    [
      ["/usr/bin/python3", "-m", "venv", "/store/venv"],
      ["/store/venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "/ext/bundled/agentls-0.1.0-py3-none-any.whl"],
    ],
  );
  assert.equal(venvPython("C:\\store\\venv", "win32"), "C:\\store\\venv\\Scripts\\python.exe");
});

test("update: the wheel replaces the old agentls, then new dependencies come in", () => {
  const steps = installSteps("/usr/bin/python3", "/store/venv", "/w.whl", { update: true, platform: "linux" });
  assert.deepEqual(
    steps.map((s) => s.args.slice(3)),
    [
      ["--disable-pip-version-check", "--no-input", "--force-reinstall", "--no-deps", "/w.whl"],
      ["--disable-pip-version-check", "--no-input", "/w.whl"],
    ],
  );
  assert.ok(steps.every((s) => s.command === "/store/venv/bin/python"));
});

test("a failed step is summed up by its error line", () => {
  const [, pip] = installSteps("/usr/bin/python3", "/v", "/w.whl", { platform: "linux" });
  assert.ok(pip);
  assert.equal(
    failureSummary(pip, 1, ["Collecting pygls", "ERROR: Could not find a version that satisfies the requirement pygls", ""]),
    "Installing agentls and its dependencies (pip) failed: python exited with code 1: ERROR: Could not find a version that satisfies the requirement pygls",
  );
  assert.match(failureSummary(pip, null, []), /python was stopped$/);
});
