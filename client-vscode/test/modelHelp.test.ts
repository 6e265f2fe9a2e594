import assert from "node:assert/strict";
import { test } from "node:test";
import { GEMMA4_DENSE_12B, GEMMA4_MOE, doctorCommand, modelHelpMessage, recommendedModel } from "../src/modelHelp";

const GIB = 1024 ** 3;

test("the Gemma 4 for the machine: the 26B MoE on 32 GB, the 12B below", () => {
  assert.equal(recommendedModel(31.3 * GIB), GEMMA4_MOE); // what a 32 GB laptop reports
  assert.equal(recommendedModel(64 * GIB), GEMMA4_MOE);
  assert.equal(recommendedModel(15.5 * GIB), GEMMA4_DENSE_12B);
  assert.equal(recommendedModel(23 * GIB), GEMMA4_DENSE_12B);
  assert.equal(recommendedModel(0), GEMMA4_DENSE_12B); // unknown memory
});

test("Ollama down: start it and pull the model for this machine", () => {
  const server = { backend: "ollama", baseUrl: "http://localhost:11434" };
  assert.equal(
    modelHelpMessage(server, undefined, 31.3 * GIB),
    "agentls: no model server answers at http://localhost:11434. Start Ollama (ollama serve), then pull " +
      "the Gemma 4 for this machine's 31 GB of RAM: ollama pull gemma4:26b-a4b-it-qat",
  );
  assert.match(modelHelpMessage(server, undefined, 16 * GIB), /16 GB of RAM: ollama pull gemma4:12b-it-qat$/);
  // A model the user chose is the one to pull.
  assert.match(modelHelpMessage(server, "qwen3:8b", 16 * GIB), /pull the model agent\.model names: ollama pull qwen3:8b$/);
});

test("an OpenAI-compatible server down: start it with a model loaded", () => {
  const message = modelHelpMessage({ backend: "openai", baseUrl: "http://localhost:1234/v1" }, undefined, 16 * GIB);
  assert.match(message, /^agentls: no model server answers at http:\/\/localhost:1234\/v1\. Start your OpenAI-compatible server/);
  assert.match(message, /gemma4:12b-it-qat/);
});

test("doctor runs with the server's settings; the API key goes by environment", () => {
  assert.deepEqual(doctorCommand({}), { args: ["-m", "agentls", "doctor"], env: {} });
  assert.deepEqual(
    doctorCommand({ backend: "openai", baseUrl: "http://127.0.0.1:8080/v1", model: "gemma", contextLength: 8192, apiKey: "sk", maxTurns: 3 }),
    {
      args: ["-m", "agentls", "doctor", "--backend", "openai", "--base-url", "http://127.0.0.1:8080/v1", "--model", "gemma", "--context-length", "8192"],
      env: { AGENTLS_API_KEY: "sk" },
    },
  );
});
