import assert from "node:assert/strict";
import { test } from "node:test";
import { LiveText, baseName, explanationName, isTextDelta, liveRunFor, type TextDelta } from "../src/stream";

const delta = (turn: number, text: string, kind: TextDelta["kind"] = "answer"): TextDelta => ({
  token: "t",
  turn,
  kind,
  delta: text,
});

test("deltas append; a new turn starts over; thinking is not shown", () => {
  const live = new LiveText();
  assert.equal(live.apply(delta(1, "Let me read geo.py.")), true);
  assert.equal(live.apply(delta(1, "hmm", "thinking")), false);
  assert.equal(live.text, "Let me read geo.py.");
  live.apply(delta(2, "# geo\n\n"));
  live.apply(delta(2, "`area` multiplies."));
  assert.equal(live.text, "# geo\n\n`area` multiplies.");
});

test("the final text replaces the streamed one and later deltas are stale", () => {
  const live = new LiveText();
  live.apply(delta(1, "partial"));
  live.replace("The whole answer.\n");
  assert.equal(live.apply(delta(1, " late")), false);
  assert.equal(live.text, "The whole answer.\n");
});

test("only textDelta-shaped notifications are accepted", () => {
  assert.equal(isTextDelta(delta(1, "x")), true);
  assert.equal(isTextDelta({ ...delta(1, "x"), token: 7 }), true);
  assert.equal(isTextDelta({ ...delta(1, "x"), kind: "other" }), false);
  assert.equal(isTextDelta({ token: "t", delta: "x" }), false);
  assert.equal(isTextDelta(null), false);
});

test("explanation names follow the server's (the stem, then -explanation.md)", () => {
  assert.equal(explanationName("file:///home/u/proj/calc.py"), "calc-explanation.md");
  assert.equal(explanationName("file:///home/u/my%20proj/archive.tar.gz"), "archive.tar-explanation.md");
  assert.equal(explanationName("file:///home/u/.bashrc"), ".bashrc-explanation.md");
  assert.equal(baseName("file:///c/agentls/explanations/calc-explanation.md"), "calc-explanation.md");
});

test("the saved explanation goes to the run that streamed that file's explanation", () => {
  const runs = [
    { source: "file:///p/calc.py" },
    { source: "file:///p/geo.py", live: "live-geo" },
    { source: "file:///p/calc.py", live: "live-calc" },
  ];
  const saved = (name: string) => `file:///c/agentls/explanations/${name}`;
  assert.equal(liveRunFor(runs, saved("calc-explanation.md"))?.live, "live-calc");
  assert.equal(liveRunFor(runs, saved("geo-explanation.md"))?.live, "live-geo");
  assert.equal(liveRunFor(runs, saved("other-explanation.md"))?.live, "live-geo");
  assert.equal(liveRunFor([{ source: "file:///p/calc.py" }], saved("calc-explanation.md")), undefined);
});
