-- :checkhealth agentls: is the server there (the configured cmd runs `... --version`), does the
-- model server answer and is the model pulled (`agentls doctor` run with the same cmd and the
-- same settings, each of its lines reported as ok, warning or error with its fix).
--
-- Works with vim.health.start/ok/warn/error (0.10+), vim.health.report_* (0.8, 0.9) and
-- require("health").report_* (0.7).

local M = {}

local function reporter()
  local ok, health = pcall(require, "vim.health")
  if not ok or type(health) ~= "table" then
    health = require("health")
  end
  return {
    start = health.start or health.report_start,
    ok = health.ok or health.report_ok,
    info = health.info or health.report_info,
    warn = health.warn or health.report_warn,
    error = health.error or health.report_error,
  }
end

-- How long the checks may take (ms): `--version` imports little; the doctor asks the model
-- server, which answers at once or fails fast unless a host is unreachable.
M.version_timeout = 20000
M.doctor_timeout = 60000

-- Run a command, wait for it; returns { code, stdout, stderr } (lists of lines), or nil and why.
local function run(cmd, env, timeout)
  local out = {}
  local ok, job = pcall(vim.fn.jobstart, cmd, {
    env = env,
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      out.stdout = data
    end,
    on_stderr = function(_, data)
      out.stderr = data
    end,
    on_exit = function(_, code)
      out.code = code
    end,
  })
  if not ok then
    return nil, (tostring(job):gsub("^Vim:", ""))
  end
  if job <= 0 then
    return nil, "could not start " .. cmd[1]
  end
  if vim.fn.jobwait({ job }, timeout)[1] == -1 then
    vim.fn.jobstop(job)
    return nil, string.format("no answer within %d s", timeout / 1000)
  end
  vim.wait(2000, function()
    return out.code ~= nil and out.stdout ~= nil and out.stderr ~= nil
  end, 10)
  local function lines(data)
    local kept = {}
    for _, line in ipairs(data or {}) do
      line = line:gsub("\r$", "")
      if line ~= "" then
        kept[#kept + 1] = line
      end
    end
    return kept
  end
  return { code = out.code or -1, stdout = lines(out.stdout), stderr = lines(out.stderr) }
end

-- The cmd without a trailing `lsp` subcommand: the base `--version` and `doctor` go after.
local function base_cmd(cmd)
  local base = vim.deepcopy(cmd)
  if base[#base] == "lsp" then
    table.remove(base)
  end
  return base
end

local function shown(cmd)
  return table.concat(cmd, " ")
end

-- `agentls doctor` flags for the settings it takes; the API key goes in the environment. The
-- server reads no AGENTLS_* variables, so none from Neovim's environment may change the
-- doctor's answer either.
local FLAGS = {
  { "backend", "--backend" },
  { "baseUrl", "--base-url" },
  { "model", "--model" },
  { "contextLength", "--context-length" },
  { "maxTurns", "--max-turns" },
  { "requestTimeout", "--request-timeout" },
}

function M.doctor_command(cmd, settings)
  local full = base_cmd(cmd)
  full[#full + 1] = "doctor"
  for _, flag in ipairs(FLAGS) do
    local value = settings[flag[1]]
    if value ~= nil and value ~= vim.NIL and value ~= "" then
      full[#full + 1] = flag[2]
      full[#full + 1] = tostring(value)
    end
  end
  local env = {
    AGENTLS_BACKEND = "",
    AGENTLS_BASE_URL = "",
    AGENTLS_MODEL = "",
    AGENTLS_CONTEXT_LENGTH = "",
    AGENTLS_API_KEY = type(settings.apiKey) == "string" and settings.apiKey or "",
  }
  return full, env
end

--- The doctor's report as { level = "ok" | "warn" | "error" | "info", text, advice? }.
--- Its lines look like `[ok  ] server   ollama at http://... answers`, `[FAIL] model ...`
--- followed by `       fix: ...`, and `[??  ] tools ...` (could not be determined).
function M.parse_doctor(result)
  local findings = {}
  local levels = { ["ok"] = "ok", ["FAIL"] = "error", ["??"] = "warn" }
  for _, line in ipairs(result.stdout) do
    local mark, name, detail = line:match("^%[(.-)%]%s+(%S+)%s+(.*)$")
    local fix = line:match("^%s+fix:%s*(.*)$")
    if mark and levels[vim.trim(mark)] then
      findings[#findings + 1] = { level = levels[vim.trim(mark)], text = name .. ": " .. detail }
    elseif fix and #findings > 0 then
      findings[#findings].advice = fix
    end
  end
  for _, line in ipairs(result.stderr) do
    local warning = line:match("^warning:%s*(.*)$")
    if warning then -- an invalid setting: the server would warn about it too
      findings[#findings + 1] = { level = "warn", text = "settings: " .. warning }
    end
  end
  return findings
end

local function check_neovim(report)
  report.start("agentls: Neovim")
  local v = vim.version()
  local version = string.format("%d.%d.%d", v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.7") == 1 then
    report.ok("Neovim " .. version)
  else
    report.error("Neovim " .. version .. " is too old", { "agentls needs Neovim 0.7 or later." })
  end
  local agentls = require("agentls")
  if agentls.did_setup then
    report.ok("setup() was called; the server starts for: " .. table.concat(agentls.options.filetypes, ", "))
  else
    report.info("setup() was not called: the commands start the server with the default options")
  end
  local clients = require("agentls.client").clients({ name = agentls.name })
  if #clients == 0 then
    report.info("the server is not running (it starts with the first file of a configured filetype)")
  end
  for _, client in ipairs(clients) do
    report.info(string.format("client %d running for %s", client.id, client.config.root_dir or "a single file"))
  end
end

-- Returns true when the server answered.
local function check_server(report, cmd)
  report.start("agentls: server")
  local advice = {
    "Install agentls into the interpreter cmd names: <that python> -m pip install agentls "
      .. "(from a clone: pip install -e .)",
    "or set cmd in require('agentls').setup({ cmd = { '/path/to/venv/bin/python', '-m', 'agentls' } })",
    string.format("or give the plugin its own environment (used when cmd is not set): cd %s && "
      .. "python3 -m venv .venv && .venv/bin/pip install .", require("agentls").root),
  }
  local version_cmd = base_cmd(cmd)
  version_cmd[#version_cmd + 1] = "--version"
  local result, why = run(version_cmd, nil, M.version_timeout)
  if not result then
    report.error(string.format("cmd %s cannot run: %s", shown(cmd), why), advice)
    return false
  end
  local text = table.concat(result.stdout, " ")
  if result.code ~= 0 or not text:match("^agentls") then
    local said = table.concat(vim.list_extend(vim.list_extend({}, result.stdout), result.stderr), " ")
    report.error(string.format("%s exited %d: %s", shown(version_cmd), result.code, said ~= "" and said or "(no output)"), advice)
    return false
  end
  report.ok(string.format("%s (%s)", text, shown(cmd)))
  return true
end

local function check_model(report, cmd, settings)
  report.start("agentls: model server (agentls doctor)")
  local doctor, env = M.doctor_command(cmd, settings)
  local result, why = run(doctor, env, M.doctor_timeout)
  if not result then
    report.error("agentls doctor: " .. why)
    return
  end
  local findings = M.parse_doctor(result)
  if #findings == 0 then
    local said = table.concat(vim.list_extend(vim.list_extend({}, result.stdout), result.stderr), " ")
    report.error(string.format("agentls doctor exited %d: %s", result.code, said ~= "" and said or "(no output)"))
    return
  end
  for _, finding in ipairs(findings) do
    local advice = finding.advice and { finding.advice } or nil
    if advice and finding.advice:match("agent%.%a+") then
      local name = finding.advice:match("agent%.(%a+)")
      advice[2] = string.format("agent.%s is settings.%s in require('agentls').setup({ settings = { ... } })", name, name)
    end
    if finding.level == "error" and finding.text:match("^server: %S+ at %S+$") then
      finding.text = finding.text .. " does not answer"
    end
    if finding.level == "ok" then
      report.ok(finding.text)
    elseif finding.level == "warn" then
      report.warn(finding.text, advice)
    else
      report.error(finding.text, advice)
    end
  end
end

function M.check()
  local report = reporter()
  local agentls = require("agentls")
  check_neovim(report)
  if check_server(report, agentls.options.cmd) then
    check_model(report, agentls.options.cmd, agentls.options.settings)
  else
    report.start("agentls: model server (agentls doctor)")
    report.warn("not checked: the server was not found")
  end
end

return M
