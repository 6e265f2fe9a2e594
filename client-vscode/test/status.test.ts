import assert from "node:assert/strict";
import { test } from "node:test";
import { isAgentStatus, statusBarText, statusDetails, statusHeadline, type AgentStatus } from "../src/status";

const ready: AgentStatus = {
  backend: "ollama",
  baseUrl: "http://localhost:11434",
  model: "gemma4:12b-it-qat",
  reachable: true,
  contextLength: 16384,
  toolMode: "auto",
  lastStats: null,
  modelContextLength: 131072,
  supportsTools: true,
};

test("status bar: model and a mark for whether the backend answers", () => {
  assert.equal(statusBarText(ready), "$(hubot) gemma4:12b-it-qat $(check)");
  assert.equal(statusBarText({ ...ready, reachable: false, model: null }), "$(hubot) no model $(error)");
  assert.equal(statusBarText({ ...ready, error: "model 'x' is not available" }), "$(hubot) gemma4:12b-it-qat $(warning)");
});

test("headline says what is wrong", () => {
  assert.equal(statusHeadline(ready), "agentls: gemma4:12b-it-qat on ollama at http://localhost:11434 is ready.");
  assert.match(
    statusHeadline({ ...ready, reachable: false, error: "cannot connect" }),
    /does not answer: cannot connect$/,
  );
});

test("details list the configuration and the last run", () => {
  const details = statusDetails({
    ...ready,
    lastStats: { turns: 3, toolCalls: 2, promptTokens: 1200, completionTokens: 80, tokensPerSecond: 21.456, wallTime: 4.2 },
  });
  assert.ok(details.includes("Context length: 16384 (model supports 131072)"));
  assert.ok(details.includes("Tool mode: auto (model supports tools)"));
  assert.equal(
    details[details.length - 1],
    "Last run: 3 turns, 2 tool calls, 1200 prompt tokens, 80 completion tokens, 21.5 tokens/s, 4.2 s",
  );
  assert.equal(statusDetails(ready).at(-1), "Last run: none yet");
});

test("only status-shaped answers are accepted", () => {
  assert.equal(isAgentStatus(ready), true);
  assert.equal(isAgentStatus(null), false);
  assert.equal(isAgentStatus({ backend: "ollama" }), false);
});
