-- agentls for Neovim 0.7 and later: starts the language server, adds :AgentExplain,
-- :AgentRefactor, :AgentTests, :AgentCancel and :AgentStatus, shows progress, and streams
-- an explanation into a split beside the code as the model writes it (agent/textDelta).
--
-- Install: put this file on 'runtimepath' as lua/agentls.lua (or add its folder to
-- package.path), then in init.lua:
--
--   require("agentls").setup({ settings = { backend = "ollama", model = "gemma4:12b-it-qat" } })
--
-- All agent logic lives in the server; this module only starts it, forwards commands as
-- workspace/executeCommand and shows what comes back. See docs/neovim.md.

local M = {}

local uv = vim.uv or vim.loop
local has_011 = vim.fn.has("nvim-0.11") == 1
-- Neovim's own window/showDocument handler (0.9+), used when nothing streamed.
local builtin_show_document = vim.lsp.handlers["window/showDocument"]

M.name = "agentls"

M.defaults = {
  -- The interpreter that has agentls installed (a virtualenv's python works too).
  cmd = { "python3", "-m", "agentls" },
  filetypes = { "python", "javascript", "typescript", "go", "rust", "lua", "c", "cpp", "java" },
  root_markers = { ".git", "pyproject.toml", "setup.py", "package.json", "go.mod", "Cargo.toml" },
  -- Server settings, camelCase as in docs/neovim.md: backend, baseUrl, model, apiKey,
  -- contextLength, temperature, keepAlive, maxTurns, requestTimeout, connectTimeout,
  -- toolMode, maxOutputTokens, maxReadLines, contextWarning.
  settings = {},
  -- Echo progress reports in the command line as they arrive.
  echo_progress = true,
}

M.options = vim.deepcopy(M.defaults)

-- Runs started by this module's commands: request id -> { kind, client_id, bufnr }.
M.running = {}
-- Explanations streaming into a split, by progress token: { bufnr, win, turn, source,
-- done }. `M.streamed` lists them in the order they began.
M.streams = {}
M.streamed = {}
-- Progress titles by token (from $/progress begin): which run a textDelta belongs to.
local titles = {}
-- The last finished run: { kind, err, result, cancelled }; `finished` counts them.
M.last = nil
M.finished = 0

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

-- ---- small compatibility layer (0.7 .. 0.11+) -------------------------------------------

local function clients(filter)
  if vim.lsp.get_clients then
    return vim.lsp.get_clients(filter)
  end
  local found = {}
  for _, client in ipairs(vim.lsp.get_active_clients()) do
    if (not filter.name or client.name == filter.name)
      and (not filter.bufnr or vim.lsp.buf_is_attached(filter.bufnr, client.id))
    then
      table.insert(found, client)
    end
  end
  return found
end

local function request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify_server(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

local function cancel_request(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

local function notify(msg, level)
  vim.notify("agentls: " .. msg, level or vim.log.levels.INFO)
end

local function find_root(bufnr, markers)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local start = vim.fn.fnamemodify(name, ":p:h")
  local dir = start
  while true do
    for _, marker in ipairs(markers) do
      if uv.fs_stat(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      -- No project marker: the folder Neovim was started in, when the file lies under it (as
      -- `agentls run` does). Otherwise no folder at all: the server then works on the file
      -- alone, so opening /etc/hostname never makes /etc the workspace.
      local cwd = vim.fn.getcwd()
      if cwd ~= "/" and start:sub(1, #cwd + 1) == cwd .. "/" or start == cwd then
        return cwd ~= "/" and cwd or nil
      end
      return nil
    end
    dir = parent
  end
end

-- ---- handlers -----------------------------------------------------------------------------

-- New files (generated tests, split modules) arrive as CreateFile + an insert at 0:0.
-- Neovim 0.7 creates the file without its folder (tests/ often does not exist yet),
-- which fails the whole edit, so the folders are made first. And an empty buffer already
-- holds one empty line, so text ending in a newline leaves an extra empty last line that
-- :write would save as a blank line; drop it from the files this edit created.
local function apply_edit_handler(err, params, ctx, config)
  local edit = params and params.edit
  local created = {}
  for _, change in ipairs((edit and edit.documentChanges) or {}) do
    if change.kind == "create" then
      local fname = vim.uri_to_fname(change.uri)
      vim.fn.mkdir(vim.fn.fnamemodify(fname, ":h"), "p")
      created[#created + 1] = change.uri
    end
  end
  local result = vim.lsp.handlers["workspace/applyEdit"](err, params, ctx, config)
  if result and result.applied then
    for _, uri in ipairs(created) do
      local bufnr = vim.uri_to_bufnr(uri)
      local count = vim.api.nvim_buf_line_count(bufnr)
      if count > 1 and vim.api.nvim_buf_get_lines(bufnr, count - 1, count, false)[1] == "" then
        vim.api.nvim_buf_set_lines(bufnr, count - 1, count, false, {})
      end
    end
  end
  return result
end

-- The split a streamed explanation grows in: opened beside the code at the first token,
-- the cursor left where it was.
local function open_stream(token, source)
  -- Forget finished streams (their split now shows the saved file, or was closed).
  for i = #M.streamed, 1, -1 do
    local old = M.streamed[i]
    if old.done or not vim.api.nvim_buf_is_valid(old.bufnr) then
      M.streams[old.token] = nil
      table.remove(M.streamed, i)
    end
  end
  local bufnr = vim.api.nvim_create_buf(false, true)
  vim.bo[bufnr].filetype = "markdown"
  vim.bo[bufnr].bufhidden = "wipe"
  local win = vim.api.nvim_get_current_win()
  vim.cmd("vsplit")
  local split = vim.api.nvim_get_current_win()
  vim.api.nvim_win_set_buf(split, bufnr)
  vim.api.nvim_set_current_win(win)
  local stream = { bufnr = bufnr, win = split, source = source, token = token }
  M.streams[token] = stream
  table.insert(M.streamed, stream)
  return stream
end

-- Append text at the end of a buffer (the text may end mid-line and hold newlines).
local function append(bufnr, text)
  local count = vim.api.nvim_buf_line_count(bufnr)
  local last = vim.api.nvim_buf_get_lines(bufnr, count - 1, count, false)[1] or ""
  local lines = vim.split(last .. text, "\n", { plain = true })
  vim.api.nvim_buf_set_lines(bufnr, count - 1, count, false, lines)
end

-- agent/textDelta: the model's text as it is written, keyed by the run's progress token.
-- An explanation's answer grows in a split; a new turn starts it over (what came before
-- was commentary ahead of a tool call). Thinking and other runs' text are not shown: a
-- refactor's commentary is in its progress already.
local function text_delta_handler(_, params, ctx)
  if not params or params.kind ~= "answer" or params.delta == "" then
    return
  end
  local key = tostring(ctx.client_id) .. ":" .. tostring(params.token)
  if titles[key] ~= TITLES.explain then
    return
  end
  local stream = M.streams[key]
  if stream and stream.done then
    return
  end
  if not stream or not vim.api.nvim_buf_is_valid(stream.bufnr) then
    local source
    for _, run in pairs(M.running) do
      if run.kind == "explain" and run.client_id == ctx.client_id then
        source = vim.api.nvim_buf_get_name(run.bufnr)
      end
    end
    stream = open_stream(key, source)
  end
  if stream.turn ~= params.turn then
    stream.turn = params.turn
    vim.api.nvim_buf_set_lines(stream.bufnr, 0, -1, false, {})
  end
  append(stream.bufnr, params.delta)
end

-- Remember each run's progress title (the server's progress token names the run).
local function progress_handler(err, result, ctx, config)
  local value = result and result.value
  local key = tostring(ctx.client_id) .. ":" .. tostring(result and result.token)
  if type(value) == "table" and value.kind == "begin" then
    titles[key] = value.title
  elseif type(value) == "table" and value.kind == "end" then
    titles[key] = nil -- the server sends a run's deltas before its progress ends
  end
  return vim.lsp.handlers["$/progress"](err, result, ctx, config)
end

-- The streamed explanation the server's showDocument of the saved file completes: the
-- one named for the same file, else the oldest still open.
local function live_stream(fname)
  local name = vim.fn.fnamemodify(fname, ":t")
  local found
  for _, stream in ipairs(M.streamed) do
    if not stream.done and vim.api.nvim_win_is_valid(stream.win) then
      local stem = stream.source and vim.fn.fnamemodify(stream.source, ":t:r")
      if stem and stem .. "-explanation.md" == name then
        return stream
      end
      found = found or stream
    end
  end
  return found
end

-- window/showDocument of the saved explanation: into the split it streamed in, else a new
-- split (0.7/0.8 have no handler of their own; later versions use theirs).
local function show_document_handler(err, params, ctx, config)
  local fname = vim.uri_to_fname(params.uri)
  local stream = live_stream(fname)
  if stream then
    stream.done = true
    vim.api.nvim_win_call(stream.win, function()
      vim.cmd("edit " .. vim.fn.fnameescape(fname))
    end)
    return { success = true }
  end
  if builtin_show_document then
    return builtin_show_document(err, params, ctx, config)
  end
  local win = vim.api.nvim_get_current_win()
  vim.cmd("vsplit " .. vim.fn.fnameescape(fname))
  if not params.takeFocus then
    vim.api.nvim_set_current_win(win)
  end
  return { success = true }
end

-- ---- client configuration ---------------------------------------------------------------

--- The client config: usable with vim.lsp.start (0.8+), vim.lsp.config (0.11+) and
--- vim.lsp.start_client (0.7). Settings go both as initializationOptions and as the
--- `agent` section the server pulls with workspace/configuration.
function M.client_config(opts)
  opts = vim.tbl_deep_extend("force", M.options, opts or {})
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  local handlers = {
    ["workspace/applyEdit"] = apply_edit_handler,
    ["window/showDocument"] = show_document_handler,
    ["agent/textDelta"] = text_delta_handler,
    ["$/progress"] = progress_handler,
  }
  capabilities.window = capabilities.window or {}
  capabilities.window.showDocument = { support = true }
  return {
    name = M.name,
    cmd = opts.cmd,
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    init_options = opts.settings,
    settings = { agent = opts.settings },
    capabilities = capabilities,
    handlers = handlers,
  }
end

--- Start (or reuse) the agentls client for a buffer and attach it; returns the client id.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if vim.bo[bufnr].buftype ~= "" or vim.api.nvim_buf_get_name(bufnr) == "" then
    return nil -- only real files: the agent reads and edits them on disk
  end
  local config = M.client_config()
  config.root_dir = find_root(bufnr, M.options.root_markers)
  if vim.lsp.start then -- 0.8+: reuses a running client with the same name and root
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  for _, client in ipairs(clients({ name = M.name })) do
    if client.config.root_dir == config.root_dir then
      vim.lsp.buf_attach_client(bufnr, client.id)
      return client.id
    end
  end
  local id = vim.lsp.start_client(config)
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

--- Send changed settings to the running servers (workspace/didChangeConfiguration).
function M.configure(settings)
  M.options.settings = vim.tbl_deep_extend("force", M.options.settings, settings or {})
  for _, client in ipairs(clients({ name = M.name })) do
    client.config.settings = { agent = M.options.settings }
    notify_server(client, "workspace/didChangeConfiguration", { settings = { agent = M.options.settings } })
  end
end

-- ---- commands -----------------------------------------------------------------------------

local function client_for(bufnr)
  local attached = clients({ name = M.name, bufnr = bufnr })
  if attached[1] then
    return attached[1]
  end
  local id = M.attach(bufnr)
  return id and vim.lsp.get_client_by_id(id)
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
  M.running[id] = nil
  M.last = { kind = kind, err = err, result = result }
  M.finished = M.finished + 1
  if err then
    notify(TITLES[kind] .. " failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
  elseif result and result.ok and result.applied then
    notify(TITLES[kind] .. ": " .. (result.summary or "done") .. " (:wall to save)")
  end
  -- Failures and "no changes" were already shown by the server (window/showMessage).
end

--- Run one task: kind is "explain", "refactor" or "generateTests". opts: { bufnr, line1,
--- line2, instruction }. Returns the request id (for cancel_request) or nil.
function M.run(kind, opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf() or opts.bufnr
  local client = client_for(bufnr)
  if not client then
    notify("no agentls client for this buffer (is it a file?)", vim.log.levels.ERROR)
    return nil
  end
  local params = {
    command = COMMANDS[kind],
    arguments = M.command_arguments(bufnr, opts.line1, opts.line2, opts.instruction),
  }
  local id
  local ok
  ok, id = request(client, "workspace/executeCommand", params, function(err, result)
    on_done(kind, id, err, result)
  end, bufnr)
  if not ok then
    notify("the server is not running", vim.log.levels.ERROR)
    return nil
  end
  M.running[id] = { kind = kind, client_id = client.id, bufnr = bufnr }
  return id
end

--- Cancel every agent command in flight ($/cancelRequest), including ones started from a
--- code action. The server stops the model stream and ends its progress with "Cancelled".
function M.cancel()
  local count = 0
  for _, client in ipairs(clients({ name = M.name })) do
    for id, req in pairs(client.requests or {}) do
      if req.type == "pending" and req.method == "workspace/executeCommand" then
        cancel_request(client, id)
        count = count + 1
        local mine = M.running[id]
        if mine then -- Neovim drops the callback of a cancelled request; finish it here
          M.running[id] = nil
          M.last = { kind = mine.kind, cancelled = true }
          M.finished = M.finished + 1
        end
      end
    end
  end
  notify(count > 0 and ("cancelled " .. count .. " request(s)") or "nothing to cancel")
  return count
end

--- Progress of the agent runs as one line, for a statusline or :AgentStatus.
function M.progress()
  local parts = {}
  for _, client in ipairs(clients({ name = M.name })) do
    for _, p in pairs((client.messages and client.messages.progress) or {}) do
      if p.title and not p.done then
        local pct = p.percentage and (" " .. p.percentage .. "%") or ""
        table.insert(parts, p.title .. pct .. (p.message and (": " .. p.message) or ""))
      end
    end
  end
  if #parts == 0 and vim.lsp.status then -- 0.10+ keeps progress in client.progress instead
    local status = vim.lsp.status()
    return status ~= "" and status or nil
  end
  return #parts > 0 and table.concat(parts, " | ") or nil
end

--- agent/status: model, whether the backend answers, last run's stats.
function M.status()
  local client = client_for(vim.api.nvim_get_current_buf())
  if not client then
    return notify("no agentls client", vim.log.levels.ERROR)
  end
  request(client, "agent/status", {}, function(err, st)
    if err then
      return notify("status failed: " .. err.message, vim.log.levels.ERROR)
    end
    notify(string.format("%s %s at %s: %s", st.backend, st.model or "(auto)", st.baseUrl,
      st.reachable and "reachable" or ("not reachable " .. (st.error or ""))))
  end, vim.api.nvim_get_current_buf())
end

local function range_opts(cmd)
  if cmd.range and cmd.range > 0 then
    return cmd.line1, cmd.line2
  end
end

--- :AgentExplain, :AgentRefactor [instruction], :AgentTests (all take a range),
--- :AgentCancel, :AgentStatus.
function M.create_commands()
  local function define(name, kind, nargs)
    vim.api.nvim_create_user_command(name, function(cmd)
      local line1, line2 = range_opts(cmd)
      local instruction = cmd.args ~= "" and cmd.args or nil
      M.run(kind, { line1 = line1, line2 = line2, instruction = instruction })
    end, { range = true, nargs = nargs, desc = TITLES[kind] })
  end
  define("AgentExplain", "explain", 0)
  define("AgentRefactor", "refactor", "?")
  define("AgentTests", "generateTests", "?")
  vim.api.nvim_create_user_command("AgentCancel", function() M.cancel() end, { desc = "Cancel agent runs" })
  vim.api.nvim_create_user_command("AgentStatus", function() M.status() end, { desc = "Agent model status" })
end

local function on_progress()
  if not M.options.echo_progress then
    return
  end
  local line = M.progress()
  if line then
    vim.api.nvim_echo({ { "agentls: " .. line } }, false, {})
  end
end

--- Everything at once: start on FileType, user commands, progress echo.
function M.setup(opts)
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  local group = vim.api.nvim_create_augroup("agentls", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.options.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  if vim.fn.exists("##LspProgress") == 1 then -- 0.10+
    vim.api.nvim_create_autocmd("LspProgress", { group = group, callback = on_progress })
  else -- 0.7 .. 0.9
    vim.api.nvim_create_autocmd("User", { group = group, pattern = "LspProgressUpdate", callback = on_progress })
  end
  M.create_commands()
end

return M
