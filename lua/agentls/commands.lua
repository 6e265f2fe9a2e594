-- The user commands: :AgentExplain, :AgentRefactor [instruction], :AgentTests [instruction]
-- (all three take a range), :AgentCancel and :AgentStatus. Each task is sent as
-- workspace/executeCommand, so the server applies edits with workspace/applyEdit and shows
-- explanations with window/showDocument, exactly as for a code action.
--
-- Loading this module starts nothing: plugin/agentls.lua defines the commands at startup and
-- the rest of the plugin loads when one runs.

local M = {}

-- The task registry's names (server/agentls/tasks/registry.py; tests/test_registry.py checks
-- that these match).
local COMMANDS = {
  explain = "agent.explain",
  refactor = "agent.refactor",
  generateTests = "agent.generateTests",
}
local TITLES = {
  explain = "Agent: Explain",
  refactor = "Agent: Refactor",
  generateTests = "Agent: Generate tests",
}
M.COMMANDS = COMMANDS
M.TITLES = TITLES

local function agentls()
  return require("agentls")
end

local function client()
  return require("agentls.client")
end

--- Arguments of the agent.* commands: [uri, range?, instruction?]. A range covers whole
--- lines line1..line2 (1-based, inclusive); the server only looks at lines.
function M.command_arguments(bufnr, line1, line2, instruction)
  local args = { vim.uri_from_bufnr(bufnr) }
  if line1 then
    args[2] = {
      start = { line = line1 - 1, character = 0 },
      ["end"] = { line = line2, character = 0 },
    }
  elseif instruction then
    args[2] = vim.NIL
  end
  if instruction then
    args[3] = instruction
  end
  return args
end

local function on_done(kind, id, err, result)
  local state = agentls()
  state.running[id] = nil
  state.last = { kind = kind, err = err, result = result }
  state.finished = state.finished + 1
  if err then
    client().notify(TITLES[kind] .. " failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
  elseif result and result.ok and result.applied then
    client().notify(TITLES[kind] .. ": " .. (result.summary or "done") .. " (:wall to save)")
  end
  -- Failures and "no changes" were already shown by the server (window/showMessage).
end

--- Run one task: kind is "explain", "refactor" or "generateTests". opts: { bufnr, line1,
--- line2, instruction }. Returns the request id (for cancel_request) or nil.
function M.run(kind, opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf() or opts.bufnr
  local c = client().client_for(bufnr)
  if not c then
    client().notify("no agentls client for this buffer (is it a file?)", vim.log.levels.ERROR)
    return nil
  end
  local params = {
    command = COMMANDS[kind],
    arguments = M.command_arguments(bufnr, opts.line1, opts.line2, opts.instruction),
  }
  local id
  local ok
  ok, id = client().request(c, "workspace/executeCommand", params, function(err, result)
    on_done(kind, id, err, result)
  end, bufnr)
  if not ok then
    client().notify("the server is not running (:checkhealth agentls)", vim.log.levels.ERROR)
    return nil
  end
  agentls().running[id] = { kind = kind, client_id = c.id, bufnr = bufnr }
  return id
end

--- Cancel every agent command in flight ($/cancelRequest), including ones started from a
--- code action. The server stops the model stream and ends its progress with "Cancelled".
function M.cancel()
  local state = agentls()
  local count = 0
  for _, c in ipairs(client().clients({ name = state.name })) do
    for id, req in pairs(c.requests or {}) do
      if req.type == "pending" and req.method == "workspace/executeCommand" then
        client().cancel_request(c, id)
        count = count + 1
        local mine = state.running[id]
        if mine then -- Neovim drops the callback of a cancelled request; finish it here
          state.running[id] = nil
          state.last = { kind = mine.kind, cancelled = true }
          state.finished = state.finished + 1
        end
      end
    end
  end
  client().notify(count > 0 and ("cancelled " .. count .. " request(s)") or "nothing to cancel")
  return count
end

--- agent/status: model, whether the backend answers, the last run's figures.
function M.status()
  local bufnr = vim.api.nvim_get_current_buf()
  local c = client().client_for(bufnr)
  if not c then
    return client().notify("no agentls client for this buffer (:checkhealth agentls)", vim.log.levels.ERROR)
  end
  client().request(c, "agent/status", {}, function(err, st)
    if err then
      return client().notify("status failed: " .. err.message, vim.log.levels.ERROR)
    end
    local line = string.format("%s %s at %s: %s", st.backend, st.model or "(auto)", st.baseUrl,
      st.reachable and "reachable" or ("not reachable " .. (st.error or "")))
    local running = require("agentls.stream").progress()
    client().notify(line .. (running and (" · " .. running) or ""))
  end, bufnr)
end

local function range_of(cmd)
  if cmd.range and cmd.range > 0 then
    return cmd.line1, cmd.line2
  end
end

--- Define :AgentExplain, :AgentRefactor [instruction], :AgentTests [instruction] (all take a
--- range), :AgentCancel and :AgentStatus. Defining them again replaces them.
function M.create()
  local function define(name, kind, nargs)
    vim.api.nvim_create_user_command(name, function(cmd)
      local line1, line2 = range_of(cmd)
      local instruction = cmd.args ~= "" and cmd.args or nil
      M.run(kind, { line1 = line1, line2 = line2, instruction = instruction })
    end, { range = true, nargs = nargs, desc = TITLES[kind] })
  end
  define("AgentExplain", "explain", 0)
  define("AgentRefactor", "refactor", "?")
  define("AgentTests", "generateTests", "?")
  vim.api.nvim_create_user_command("AgentCancel", function()
    M.cancel()
  end, { desc = "Agent: cancel the runs in flight" })
  vim.api.nvim_create_user_command("AgentStatus", function()
    M.status()
  end, { desc = "Agent: model and server status" })
end

return M
