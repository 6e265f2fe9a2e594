// Builds the agentls wheel the .vsix carries (bundled/agentls-*.whl) from this repository, so
// "Install agentls" can make the extension's own environment without asking the user to pip
// install anything. Runs before `vsce package` (vscode:prepublish). PYTHON picks the interpreter.
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";

const python = process.env.PYTHON ?? "python3";
rmSync("bundled", { recursive: true, force: true }); // exactly one wheel: this tree's
execFileSync(python, ["-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", "bundled", ".."], { stdio: "inherit" });
const wheels = readdirSync("bundled").filter((name) => /^agentls-.*\.whl$/.test(name));
if (wheels.length !== 1) {
  throw new Error(`expected one agentls wheel in bundled/, found ${wheels.join(", ") || "none"}`);
}
console.log(`bundled/${wheels[0]}`);
