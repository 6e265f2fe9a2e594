import assert from "node:assert/strict";
import { test } from "node:test";
import { LineTail, RestartPolicy, describeExit } from "../src/restart";

const options = { maxCrashes: 3, windowMs: 60_000, baseDelayMs: 1_000, maxDelayMs: 3_000 };

test("crashes restart with doubling delays, capped", () => {
  const policy = new RestartPolicy(options);
  assert.deepEqual(policy.onCrash(0, true), { restart: true, delayMs: 1000, attempt: 1 });
  assert.deepEqual(policy.onCrash(5_000, true), { restart: true, delayMs: 2000, attempt: 2 });
  assert.deepEqual(policy.onCrash(10_000, true), { restart: true, delayMs: 3000, attempt: 3 });
  assert.deepEqual(policy.onCrash(15_000, true), { restart: false, reason: "too-many-crashes" });
});

test("crashes older than the window are forgotten", () => {
  const policy = new RestartPolicy(options);
  policy.onCrash(0, true);
  policy.onCrash(1_000, true);
  policy.onCrash(2_000, true);
  assert.deepEqual(policy.onCrash(70_000, true), { restart: true, delayMs: 1000, attempt: 1 });
});

test("a server that never started is not restarted", () => {
  assert.deepEqual(new RestartPolicy(options).onCrash(0, false), { restart: false, reason: "never-started" });
});

test("a manual restart resets the count", () => {
  const policy = new RestartPolicy(options);
  for (let i = 0; i < 3; i++) policy.onCrash(i, true);
  policy.reset();
  assert.equal(policy.onCrash(10, true).restart, true);
});

test("the stderr tail keeps the last non-empty lines", () => {
  const tail = new LineTail(3);
  for (const line of ["a", "b", "", "Traceback", "ModuleNotFoundError: No module named 'agentls'"]) tail.push(line);
  assert.deepEqual(tail.last(5), ["Traceback", "ModuleNotFoundError: No module named 'agentls'"]);
  assert.deepEqual(tail.last(1), ["ModuleNotFoundError: No module named 'agentls'"]);
});

test("exits read as sentences", () => {
  assert.equal(describeExit(1, null), "exited with code 1");
  assert.equal(describeExit(null, "SIGKILL"), "was killed by SIGKILL");
  assert.equal(describeExit(null, null), "stopped");
});
