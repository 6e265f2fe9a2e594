import assert from "node:assert/strict";
import { test } from "node:test";
import { isAgentStatus, runSummary, statusBarText, statusDetails, statusHeadline, tokensShort, type AgentStatus } from "../src/status";

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

test("status bar: model, context window and a mark for whether the backend answers", () => {
  assert.equal(statusBarText(ready), "$(hubot) gemma4:12b-it-qat · 16k ctx $(check)");
  assert.equal(statusBarText({ ...ready, reachable: false, model: null }), "$(hubot) no model · 16k ctx $(error)");
  assert.equal(
    statusBarText({ ...ready, error: "model 'x' is not available" }),
    "$(hubot) gemma4:12b-it-qat · 16k ctx $(warning)",
  );
});

test("status bar after a run: context fill, tokens/s and the cached share of the prompt", () => {
  const stats = { contextFill: 0.2345, tokensPerSecond: 18.64, promptTokens: 4000, cachedPromptTokens: 3000 };
  assert.equal(statusBarText(ready, stats), "$(hubot) gemma4:12b-it-qat · ctx 23% · 19 tok/s · 75% cached $(check)");
  assert.equal(statusBarText({ ...ready, lastStats: stats }), statusBarText(ready, stats));
  // Ollama reports no cached tokens; a slow model keeps a decimal.
  assert.deepEqual(runSummary({ contextFill: 0.5, tokensPerSecond: 4.26, promptTokens: 900, cachedPromptTokens: null }), [
    "ctx 50%",
    "4.3 tok/s",
  ]);
  assert.deepEqual(runSummary({ contextFill: 0.1, tokensPerSecond: null, promptTokens: 0, cachedPromptTokens: 0 }), ["ctx 10%"]);
  assert.deepEqual(runSummary(null), []);
  assert.equal(tokensShort(131072), "128k");
  assert.equal(tokensShort(512), "512");
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
    lastStats: {
      turns: 3,
      toolCalls: 2,
      promptTokens: 1200,
      cachedPromptTokens: 1000,
      completionTokens: 80,
      tokensPerSecond: 21.456,
      wallTime: 4.2,
      contextFill: 0.0732,
      contextLength: 16384,
    },
  });
  assert.ok(details.includes("Context length: 16384 (model supports 131072)"));
  assert.ok(details.includes("Tool mode: auto (model supports tools)"));
  assert.deepEqual(details.slice(-2), [
    "Last run: 3 turns, 2 tool calls, 1200 prompt tokens, 1000 cached, 80 completion tokens, 21.5 tokens/s, 4.2 s",
    "Context fill: 7% of 16384 tokens",
  ]);
  assert.equal(statusDetails(ready).at(-1), "Last run: none yet");
});

test("only status-shaped answers are accepted", () => {
  assert.equal(isAgentStatus(ready), true);
  assert.equal(isAgentStatus(null), false);
  assert.equal(isAgentStatus({ backend: "ollama" }), false);
});
