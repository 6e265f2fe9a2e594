-- Headless Neovim driver for tests/test_neovim.py: installs the plugin the way a plugin
-- manager does (the repository on 'runtimepath', so plugin/agentls.lua is sourced at startup)
-- and calls require("agentls").setup{} as docs/neovim.md says, then does what a user does.
-- Runs on Neovim 0.7 (Debian's) and 0.10+. Exit 0 = pass; on failure everything seen
-- (messages, progress, the error) is in $AGENTLS_NVIM_LOG.
--
-- Environment: AGENTLS_REPO (the repository), AGENTLS_PYTHON, AGENTLS_MODEL_URL,
-- AGENTLS_NVIM_LOG.

local log_path = assert(os.getenv("AGENTLS_NVIM_LOG"), "AGENTLS_NVIM_LOG not set")
local function log(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[#parts + 1] = type(v) == "string" and v or vim.inspect(v)
  end
  local f = assert(io.open(log_path, "a"))
  f:write(table.concat(parts, " "), "\n")
  f:close()
end

-- What lazy.nvim, packer and vim.pack do with the repository.
vim.opt.runtimepath:prepend(assert(os.getenv("AGENTLS_REPO"), "AGENTLS_REPO not set"))
local agentls = require("agentls")

-- The user's configuration, as in docs/neovim.md.
agentls.setup({
  cmd = { os.getenv("AGENTLS_PYTHON"), "-m", "agentls" },
  settings = {
    backend = "ollama",
    baseUrl = os.getenv("AGENTLS_MODEL_URL"),
    model = "gemma4:12b-it-qat",
  },
})

local function active_clients(filter)
  return (vim.lsp.get_clients or vim.lsp.get_active_clients)(filter or {})
end

-- Record what the user would see.
vim.notify = function(msg, level)
  log("notify", level or "", msg)
end
local show_message = vim.lsp.handlers["window/showMessage"]
vim.lsp.handlers["window/showMessage"] = function(err, result, ctx, config)
  log("showMessage", result.type, result.message)
  return show_message(err, result, ctx, config)
end

-- Progress as a statusline would read it, per token: { title, begun, done, message }; `runs`
-- lists them in the order they began, so two runs with the same title stay apart.
local progress, runs = {}, {}
local function seen_progress(key, title, message, done)
  local seen = progress[key]
  if not seen and title then
    seen = { title = title }
    progress[key] = seen
    runs[#runs + 1] = seen
    log("progress begin", title, message or "")
  end
  if not seen then
    return
  end
  if done and not seen.done then
    log("progress end", seen.title, message or "")
  end
  seen.done = done
  seen.message = message or seen.message
  local line = agentls.progress()
  if line then
    log("statusline", line)
  end
end
if vim.fn.exists("##LspProgress") == 1 then -- 0.10+
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(args)
      local params = args.data.params
      local value = params.value
      local key = tostring(args.data.client_id) .. ":" .. tostring(params.token)
      seen_progress(key, value.title, value.message, value.kind == "end")
    end,
  })
else -- 0.7 .. 0.9
  vim.api.nvim_create_autocmd("User", {
    pattern = "LspProgressUpdate",
    callback = function()
      for _, client in ipairs(active_clients()) do
        for token, p in pairs(client.messages.progress) do
          if p.title then
            seen_progress(client.id .. ":" .. tostring(token), p.title, p.message, p.done)
          end
        end
      end
    end,
  })
end

-- The n-th run (in the order they began) with this progress title.
local function run_titled(title, n)
  local count = 0
  for _, seen in ipairs(runs) do
    if seen.title == title then
      count = count + 1
      if count == n then
        return seen
      end
    end
  end
end

local function wait(ms, cond, what)
  if not vim.wait(ms, cond, 20) then
    error("timed out after " .. ms .. " ms waiting for " .. what, 2)
  end
end

local function buffer_text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), "\n")
end

local function run()
  local bufnr = vim.api.nvim_get_current_buf()
  log("file", vim.api.nvim_buf_get_name(bufnr), "filetype", vim.bo[bufnr].filetype)
  local client
  wait(15000, function()
    client = active_clients({ name = "agentls" })[1]
    return client ~= nil and client.initialized and vim.lsp.buf_is_attached(bufnr, client.id)
  end, "the agentls client to start and attach")
  log("attached", client.name, "root", client.config.root_dir)

  -- 1. The light bulb path: vim.lsp.buf.code_action(), pick "Agent: Refactor".
  local offered = {}
  vim.ui.select = function(items, opts, on_choice)
    for i, item in ipairs(items) do
      local title = opts.format_item and opts.format_item(item) or tostring(item)
      offered[#offered + 1] = title
      if title == "Agent: Refactor" then
        log("code actions offered", offered, "choosing", title)
        return on_choice(item, i)
      end
    end
    log("code actions offered", offered)
    on_choice(nil, nil)
  end
  local before = buffer_text(bufnr)
  vim.lsp.buf.code_action()
  wait(30000, function()
    return buffer_text(bufnr) ~= before
  end, "the refactor chosen from the code actions to change the buffer")
  wait(10000, function()
    local refactor = run_titled("Agent: Refactor", 1)
    return refactor and refactor.done
  end, "the refactor's progress to end")
  vim.cmd("write")
  log("refactor applied and written")

  -- 2. A user command: :AgentTests writes a new tests/test_calc.py (CreateFile + edit).
  vim.cmd("AgentTests")
  wait(30000, function()
    return agentls.finished >= 1
  end, ":AgentTests to finish")
  local last = agentls.last
  log("AgentTests result", last)
  if last.err or not (last.result and last.result.applied) then
    error(":AgentTests did not apply its edit: " .. vim.inspect(last))
  end
  vim.cmd("wall")
  log("tests written")

  -- 3. :AgentExplain streams the explanation into a split beside the code while the model
  -- writes, then the saved file takes its place; the cursor stays in calc.py.
  vim.cmd("AgentExplain")
  local partial
  wait(30000, function()
    local stream = agentls.streamed[1]
    if not partial and stream and agentls.finished < 2 and vim.api.nvim_buf_is_valid(stream.bufnr) then
      local text = buffer_text(stream.bufnr)
      partial = text ~= "" and text or nil
    end
    return agentls.finished >= 2
  end, ":AgentExplain to finish")
  -- One line in the log: newlines written as \n.
  log("streamed while running", partial and (partial:gsub("\n", "\\n")) or "(nothing)")
  log("AgentExplain result", agentls.last)
  local shown = {}
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    local buf = vim.api.nvim_win_get_buf(win)
    shown[#shown + 1] = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(buf), ":t")
    if win ~= vim.api.nvim_get_current_win() then
      log("beside the code", shown[#shown], buffer_text(buf))
    end
  end
  log("windows", shown, "current", vim.fn.expand("%:t"))
  if #shown ~= 2 or vim.fn.expand("%:t") ~= "calc.py" then
    error("the explanation did not open beside calc.py")
  end

  -- 4. Cancel: a range explain whose model writes a little, then never finishes; :AgentCancel.
  vim.cmd("1,2AgentExplain")
  local explain
  wait(15000, function()
    explain = run_titled("Agent: Explain", 2)
    return explain ~= nil
  end, "the second explain's progress to begin")
  -- Its first words in a split of their own: the model's stream is open, and held open.
  local stream
  wait(15000, function()
    stream = agentls.streamed[#agentls.streamed]
    return stream ~= nil and not stream.done and buffer_text(stream.bufnr) == "total adds"
  end, "the second explain to stream its first words into a split")
  vim.cmd("AgentCancel")
  local cancelled = agentls.last and agentls.last.cancelled and agentls.last.kind == "explain"
  wait(15000, function()
    return explain.done
  end, "the server to end the cancelled explain's progress")
  log("explain progress ended with", explain.message, "cancelled", cancelled)
  if explain.message ~= "Cancelled" or not cancelled then
    error("the explain was not cancelled")
  end
  local left = buffer_text(stream.bufnr)
  log("cancelled split shows", (left:gsub("\n", "\\n")))
  if left ~= "total adds\n\n*Cancelled.*" then
    error("the split of the cancelled explain does not say so")
  end
  log("PASS")
end

vim.api.nvim_create_autocmd("VimEnter", {
  callback = function()
    vim.schedule(function()
      local ok, err = pcall(run)
      if ok then
        vim.cmd("qall!")
      else
        log("FAIL", debug.traceback(tostring(err)))
        vim.cmd("cquit 1")
      end
    end)
  end,
})
