import assert from "node:assert/strict";
import { test } from "node:test";
import { LineTail, crashMessage, notStartedMessage } from "../src/crash";

test("the tail keeps the last non-empty lines", () => {
  const tail = new LineTail(3);
  for (const line of ["a", "", "b", "c", "d"]) tail.push(line);
  assert.deepEqual(tail.last(5), ["b", "c", "d"]); // "a" and the blank line fell out
  assert.deepEqual(tail.last(1), ["d"]);
  tail.clear();
  assert.deepEqual(tail.last(1), []);
});

test("a crash names the last line on stderr and what happens next", () => {
  assert.equal(
    crashMessage(["Traceback (most recent call last):", "MemoryError"], true),
    "agentls: the server stopped unexpectedly: MemoryError. Restarting it.",
  );
  assert.equal(crashMessage([], true), "agentls: the server stopped unexpectedly. Restarting it.");
  assert.match(crashMessage(["boom"], false), /5 times in 3 minutes and was not restarted: boom\.$/);
});

test("a server that never started names the interpreter and the fixes", () => {
  const message = notStartedMessage("/venv/bin/python -m agentls (from agent.pythonPath)", [
    "ModuleNotFoundError: No module named 'pygls'",
  ]);
  assert.match(message, /^agentls: \/venv\/bin\/python -m agentls \(from agent\.pythonPath\) stopped before it started: /);
  assert.match(message, /No module named 'pygls'\. Install agentls into this extension's own environment/);
  assert.match(message, /pip install agentls/);
});
