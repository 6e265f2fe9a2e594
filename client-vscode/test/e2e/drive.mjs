// Drives code-server (a real VS Code workbench) in Debian's headless Chromium with
// playwright-core, the way a user would: palette, Refactor Preview, Ctrl+., Ctrl+Z, Cancel.
// tests/test_vscode_e2e.py starts code-server and the scripted model, runs this script and
// checks its report. Usage: node drive.mjs CONFIG.json  (writes config.report, JSON).
//
// Each step records what a user would look at (editor text, the file on disk, tab titles,
// notifications); on a failure it saves a screenshot next to the report and exits 1.
import { chromium } from "playwright-core";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const report = { steps: {}, timings: {} };
const started = Date.now();
const save = () => writeFileSync(config.report, JSON.stringify(report, null, 2));
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ], // playwright gives every launch a fresh profile directory
});
const context = await browser.newContext({ viewport: { width: 1400, height: 850 } });
const page = await context.newPage();
const consoleErrors = [];
page.on("console", (msg) => {
  if (msg.type() === "error") consoleErrors.push(msg.text());
});

const disk = () => readFileSync(config.file, "utf8");
const normalize = (text) => text.replace(/\u00a0/g, " ");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, check, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
}

/** The text of the active editor, line by line (view-lines render in DOM order by top). */
async function editorText() {
  return page.evaluate(() => {
    const editor = document.querySelector(".editor-group-container.active .monaco-editor:not(.inline) .view-lines") ??
      document.querySelector(".monaco-editor .view-lines");
    if (!editor) return null;
    const lines = [...editor.querySelectorAll(".view-line")].map((el) => ({
      top: parseFloat(el.style.top || "0"),
      text: el.textContent ?? "",
    }));
    lines.sort((a, b) => a.top - b.top);
    return lines.map((l) => l.text).join("\n");
  }).then((t) => (t === null ? null : normalize(t)));
}

async function tabTitles() {
  return page.$$eval(".tabs-container .tab", (tabs) => tabs.map((t) => t.getAttribute("aria-label") ?? t.textContent ?? ""));
}

/** The agentls status bar item's text (codicons as their names, e.g. "check"). */
async function statusBar() {
  const items = await page.$$eval(".statusbar-item", (els) => els.map((e) => e.getAttribute("aria-label") ?? e.textContent ?? ""));
  return items.filter((t) => t.includes("agentls") || t.includes("hubot") || t.includes("ctx")).join(" | ");
}

/** A notification's message and buttons, once one with `text` is shown. */
async function toast(text, timeout = 30000) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: text }).first();
  await toast.waitFor({ state: "visible", timeout });
  const message = await toast.locator(".notification-list-item-message").innerText();
  const buttons = await toast.locator(".monaco-button").allTextContents();
  return { toast, message, buttons };
}

/**
 * Set a text setting in the Settings UI, as a user does (the extension sees a live change);
 * `current` is the value expected before, `tab` the settings target ("User", "Remote").
 */
async function setTextSetting(key, value, current, tab = "User") {
  await runFromPalette("Preferences: Open User Settings");
  await page.locator(".settings-editor").waitFor({ state: "visible" });
  await page.locator(".settings-editor .settings-tabs-widget .action-label", { hasText: tab }).first().click();
  // The search box (it may hold an earlier search when the editor was open already).
  await page.locator(".settings-editor .search-container .suggest-input-container").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.type(key);
  const input = page.locator(".settings-editor .setting-item-text input").first();
  await input.waitFor({ state: "visible" });
  if (current !== undefined) await waitFor(`the ${key} setting`, async () => (await input.inputValue()) === current);
  await input.fill(value);
  await page.keyboard.press("Tab");
}

async function notifications() {
  return page.$$eval(".notifications-toasts .notification-toast", (els) => els.map((e) => e.textContent ?? ""));
}

async function runFromPalette(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible" });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible" });
  await page.keyboard.press("Enter");
}

/** Open the sample file from the explorer (a double click keeps its tab). */
async function openFile() {
  const name = page.locator(".label-name", { hasText: new RegExp(`^${config.fileName.replace(".", "\\.")}$`) });
  const row = page.locator(".explorer-folders-view .monaco-list-row").filter({ has: name }).first();
  await row.waitFor({ timeout: 30000 });
  await row.dblclick();
  await waitFor("the file in an editor", async () => {
    const tab = await page.locator(".editor-group-container.active .tab.active").textContent().catch(() => "");
    return tab?.includes(config.fileName) && (await editorText())?.includes("def ");
  });
}

async function focusEditor() {
  await page.locator(".editor-group-container.active .monaco-editor .view-lines").first().click({ position: { x: 60, y: 5 } });
}

/** Select whole lines [from, to] (1-based) with the keyboard. */
async function selectLines(from, to) {
  await focusEditor();
  await page.keyboard.press("Control+G");
  await page.keyboard.type(String(from));
  await page.keyboard.press("Enter");
  await page.keyboard.press("Home");
  await page.keyboard.press("Home"); // twice: first Home stops at the indentation
  for (let i = from; i <= to; i++) await page.keyboard.press("Shift+ArrowDown");
}

async function acceptRefactorPreview(screenshot) {
  const apply = page.locator(".bulk-edit-panel .monaco-button", { hasText: /^Apply$/ }).first();
  await apply.waitFor({ state: "visible", timeout: 30000 });
  // The preview lists the changed file with the agent's annotation.
  await waitFor("the preview's tree", async () => (await page.locator(".bulk-edit-panel .monaco-list-row").count()) > 0);
  const rows = await page.locator(".bulk-edit-panel .monaco-list-row").allTextContents();
  // Edits that need confirmation start unticked (VS Code's rule for change annotations):
  // the user ticks each file (which ticks its changes), then presses Apply.
  const fileBoxes = page.locator('.bulk-edit-panel .monaco-list-row[aria-level="1"] input.edit-checkbox');
  const ticked = [];
  for (let i = 0; i < (await fileBoxes.count()); i++) {
    const box = fileBoxes.nth(i);
    ticked.push(await box.isChecked());
    if (!(await box.isChecked())) await box.click();
  }
  await waitFor("every change ticked", async () => {
    const states = await page.$$eval(".bulk-edit-panel input.edit-checkbox", (els) => els.map((e) => e.checked));
    return states.length > 0 && states.every(Boolean);
  });
  if (screenshot) {
    // Open the change itself: the preview shows it as a diff in the editor.
    await page.locator('.bulk-edit-panel .monaco-list-row[aria-level="2"]').first().click({ position: { x: 300, y: 10 } });
    await waitFor("the preview diff", async () => (await page.locator(".monaco-diff-editor").count()) > 0, 10000);
    await sleep(600);
    await page.screenshot({ path: screenshot });
  }
  await apply.click();
  await waitFor("the preview to close", async () => !(await apply.isVisible()));
  await openFile(); // back to the code (the preview's diff tab closed with it)
  return { rows, tickedAtFirst: ticked };
}

async function step(name, fn) {
  const t0 = Date.now();
  log(`step ${name}`);
  try {
    report.steps[name] = (await fn()) ?? {};
    report.timings[name] = (Date.now() - t0) / 1000;
    save();
  } catch (error) {
    const shot = join(config.outDir, `failure-${name}.png`);
    await page.screenshot({ path: shot }).catch(() => undefined);
    report.failure = { step: name, error: String(error?.stack ?? error), screenshot: shot, notifications: await notifications().catch(() => []), consoleErrors: consoleErrors.slice(-20) };
    save();
    log(`FAILED ${name}: ${error}`);
    await browser.close();
    process.exit(1);
  }
}

async function finish() {
  report.total = (Date.now() - started) / 1000;
  save();
  log("all steps passed");
  await browser.close();
  process.exit(0);
}

if (config.scenario === "install") {
  // agent.pythonPath names a Python without agentls: the user is told why and offered the install.
  await step("brokenPython", async () => {
    await page.goto(config.url, { waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60000 });
    const { message, buttons } = await toast("No module named agentls");
    return { message, buttons, statusBar: await statusBar() };
  });
  // One click: a private environment from the bundled wheel, with progress; then the server.
  await step("install", async () => {
    const { toast: offer } = await toast("No module named agentls");
    await offer.hover();
    await offer.locator(".monaco-button", { hasText: "Install agentls" }).click();
    const progress = await toast("agentls: installing agentls", 30000);
    // No model server answers yet: how to start Ollama and which Gemma 4 to pull.
    const help = await toast("no model server answers", 360000);
    const servers = agentServers().map((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]);
    return { progress: progress.message, help: help.message, helpButtons: help.buttons, servers, statusBar: await statusBar() };
  });
  // The model server comes up (here: the scripted one); the status bar names its model.
  await step("modelUp", async () => {
    await setTextSetting("agent.baseUrl", config.modelUrl, config.downUrl);
    const item = await waitFor("the status bar to show the model", async () => {
      const text = await statusBar();
      return text.includes(config.model) ? text : false;
    }, 30000);
    return { statusBar: item };
  });
  await step("explain", async () => {
    await openFile();
    await selectLines(1, 2);
    await runFromPalette("Agent: Explain Selection");
    const text = await waitFor("the explanation rendered", async () => {
      for (const frame of page.frames()) {
        const body = await frame.evaluate(() => document.body?.innerText ?? "").catch(() => "");
        if (body.includes(config.expect.explanationText)) return body;
      }
      return false;
    }, 60000);
    // After the run the status bar shows its numbers.
    const item = await waitFor("the run's numbers in the status bar", async () => {
      const bar = await statusBar();
      return bar.includes("tok/s") ? bar : false;
    }, 20000);
    return { previewText: text, statusBar: item };
  });
  // agent.pythonPath now names a Python whose agentls dies on import: the server never
  // answers initialize, is not restarted, and the message quotes its last line on stderr.
  await step("brokenServer", async () => {
    // A remote window's Settings UI lists machine-scoped settings (pythonPath is
    // machine-overridable) under "Remote"; a value there overrides the user's.
    await setTextSetting("agent.pythonPath", config.brokenPython, "", "Remote");
    const { message, buttons } = await toast("stopped before it started", 30000);
    await sleep(1000); // any second popup (vscode-languageclient's own) would be up by now
    return { message, buttons, notifications: await notifications(), statusBar: await statusBar() };
  });
  await finish();
}

await step("open", async () => {
  await page.goto(config.url, { waitUntil: "domcontentloaded" });
  await page.locator(".monaco-workbench").waitFor({ timeout: 60000 });
  await openFile();
  // The status bar item shows the model once the server answered agent/status.
  const status = await waitFor("the agentls status bar item", async () => {
    const items = await page.$$eval(".statusbar-item", (els) => els.map((e) => e.textContent ?? ""));
    return items.find((t) => t.includes(config.model));
  }, 40000);
  return { editor: await editorText(), statusBar: status };
});

await step("refactorModule", async () => {
  await focusEditor();
  await runFromPalette("Agent: Refactor Module");
  const preview = await acceptRefactorPreview(config.screenshot);
  const onDisk = await waitFor("the refactor on disk", async () => (disk() === config.expect.afterRefactor ? disk() : false));
  return { preview, editor: await editorText(), disk: onDisk };
});

await step("undo", async () => {
  await focusEditor();
  await page.keyboard.press("Control+Z");
  const editor = await waitFor("the undone text", async () => {
    const text = await editorText();
    return text?.includes(config.expect.undoneMarker) ? text : false;
  });
  await page.keyboard.press("Control+S");
  const onDisk = await waitFor("the original on disk", async () => (disk() === config.expect.original ? disk() : false));
  return { editor, disk: onDisk };
});

await step("codeAction", async () => {
  await selectLines(config.expect.codeActionLines[0], config.expect.codeActionLines[1]);
  await page.keyboard.press("Control+.");
  const rows = page.locator(".action-widget .monaco-list-row");
  await rows.first().waitFor({ state: "visible" });
  const titles = (await rows.allTextContents()).map((t) => t.trim());
  // An overlay takes the mouse clicks: move with the arrows, as the recipe says.
  await waitFor("'Agent: Refactor' focused", async () => {
    const focused = await page.locator(".action-widget .monaco-list-row.focused").textContent().catch(() => "");
    if (focused?.includes("Agent: Refactor")) return true;
    await page.keyboard.press("ArrowDown");
    return false;
  });
  await page.keyboard.press("Enter");
  const preview = await acceptRefactorPreview(null);
  const onDisk = await waitFor("the code action's edit on disk", async () => (disk() === config.expect.afterCodeAction ? disk() : false));
  return { actions: titles, preview, disk: onDisk };
});

await step("explain", async () => {
  await selectLines(1, 2);
  await runFromPalette("Agent: Explain Selection");
  const tab = await waitFor("the Markdown preview tab", async () => (await tabTitles()).find((t) => t.includes("Preview") && t.includes(config.expect.explanationName)), 30000);
  // The rendered preview lives in nested webview frames.
  const heading = await waitFor("the explanation rendered", async () => {
    for (const frame of page.frames()) {
      const text = await frame.evaluate(() => document.body?.innerText ?? "").catch(() => "");
      if (text.includes(config.expect.explanationText)) return text;
    }
    return false;
  }, 20000);
  const groups = await page.locator(".editor-group-container").count();
  const bar = await waitFor("the run's numbers in the status bar", async () => {
    const text = await statusBar();
    return text.includes("ctx") && text.includes("%") ? text : false;
  });
  return { tab, tabs: await tabTitles(), previewText: heading, editorGroups: groups, statusBar: bar };
});

await step("generateTests", async () => {
  await page.keyboard.press("Control+1"); // back to the code, left of the preview
  await openFile();
  await focusEditor();
  await page.keyboard.press("Control+Home"); // no selection: tests for the whole file
  await runFromPalette("Agent: Generate Tests");
  const preview = await acceptRefactorPreview(null);
  const testFile = join(config.workspace, config.expect.testFile);
  const onDisk = await waitFor("the generated test file on disk", async () => {
    try {
      const text = readFileSync(testFile, "utf8");
      return text === config.expect.testText ? text : false;
    } catch {
      return false;
    }
  });
  return { preview, disk: onDisk, tabs: await tabTitles() };
});

await step("refactorSelection", async () => {
  await page.keyboard.press("Control+1");
  await openFile();
  await selectLines(1, 5);
  await runFromPalette("Agent: Refactor Selection...");
  // The instruction box.
  const box = page.locator(".quick-input-widget input");
  await waitFor("the instruction prompt", async () => (await page.locator(".quick-input-widget").innerText()).includes("How should the selected code change?"));
  await box.fill(config.expect.instruction);
  await page.keyboard.press("Enter");
  const preview = await acceptRefactorPreview(null);
  const onDisk = await waitFor("the selection's refactor on disk", async () => (disk() === config.expect.afterRefactorSelection ? disk() : false));
  return { preview, disk: onDisk };
});

await step("cancel", async () => {
  await openFile();
  await runFromPalette("Agent: Generate Tests");
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "Agent: Generate tests" }).first();
  await toast.waitFor({ state: "visible", timeout: 20000 });
  // The server's progress reports arrive in this notification (not only in the status bar).
  const message = toast.locator(".notification-list-item-message");
  const shown = await waitFor("the run's progress in the notification", async () => {
    const text = await message.innerText();
    return text.includes(config.expect.progressText) ? text : false;
  });
  await toast.hover();
  await toast.locator(".monaco-button", { hasText: "Cancel" }).click();
  await waitFor("the progress notification to close", async () => !(await toast.isVisible()), 20000);
  await sleep(500);
  return { notification: shown, notificationsAfter: await notifications() };
});

/** Pids of `python -m agentls` processes started under code-server (our process tree only). */
function agentServers() {
  const parents = new Map();
  const commands = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      commands.set(Number(entry), readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0"));
    } catch {
      // gone meanwhile
    }
  }
  const under = (pid) => {
    for (let p = pid; p > 1; p = parents.get(p) ?? 0) if (p === config.codeServerPid) return true;
    return false;
  };
  return [...commands].filter(([pid, argv]) => argv.includes("agentls") && argv.includes("-m") && under(pid)).map(([pid]) => pid);
}

await step("crash", async () => {
  const [pid, ...others] = agentServers();
  if (!pid || others.length) throw new Error(`expected one agentls server, found ${[pid, ...others]}`);
  process.kill(pid, "SIGKILL");
  // The user is told why it stopped and that it restarts.
  const { message } = await toast("agentls: the server", 20000);
  const restarted = await waitFor("a new server process", async () => {
    const now = agentServers();
    return now.length === 1 && now[0] !== pid ? now[0] : false;
  }, 20000);
  // The new server answers: Show Status from the palette reports the model ready.
  await runFromPalette("Agent: Show Status");
  const status = page.locator(".notifications-toasts .notification-toast", { hasText: "is ready" }).first();
  await status.waitFor({ state: "visible", timeout: 20000 });
  return { message, oldPid: pid, newPid: restarted, status: await status.locator(".notification-list-item-message").innerText() };
});

await step("liveSettings", async () => {
  // Change agent.model in the Settings UI: the running server gets it without a restart and
  // the status bar names the new model (with a warning: the backend does not have it).
  await setTextSetting("agent.model", config.expect.otherModel, config.model);
  const item = await waitFor("the status bar to show the new model", async () => {
    const items = await page.$$eval(".statusbar-item", (els) => els.map((e) => e.getAttribute("aria-label") ?? ""));
    return items.find((t) => t.includes(config.expect.otherModel));
  }, 20000);
  return { statusBar: item, servers: agentServers().length, settingsFile: readFileSync(config.settingsFile, "utf8") };
});

await finish();
