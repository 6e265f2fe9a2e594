-- What the server sends while a run works: the explanation streamed into a split as the
-- model writes it (agent/textDelta), the saved explanation it ends with (window/showDocument),
-- and progress ($/progress) echoed and kept for a statusline.
--
-- agent/textDelta params: { token, turn, kind = "answer" | "thinking", delta }. `token` is the
-- run's work-done progress token (its `begin` carries the task's title and comes first);
-- `delta` continues the text of model call `turn`, and a new `turn` starts a new text (what
-- came before was commentary ahead of a tool call). See docs/architecture.md.

local M = {}

-- Neovim's own window/showDocument handler (0.9+), used for documents that are not
-- explanations.
local builtin_show_document = vim.lsp.handlers["window/showDocument"]

local EXPLAIN_TITLE = "Agent: Explain"

local function agentls()
  return require("agentls")
end

local function key_of(client_id, token)
  return tostring(client_id) .. ":" .. tostring(token)
end

-- ---- the split -------------------------------------------------------------------------------

--- Open a window beside the current one with the configured split command; the cursor stays
--- where it was. Returns the new window.
local function open_beside(bufnr_or_file)
  local win = vim.api.nvim_get_current_win()
  vim.cmd(agentls().options.split or "vsplit")
  local split = vim.api.nvim_get_current_win()
  if type(bufnr_or_file) == "number" then
    vim.api.nvim_win_set_buf(split, bufnr_or_file)
  else
    vim.cmd("edit " .. vim.fn.fnameescape(bufnr_or_file))
  end
  if vim.api.nvim_win_is_valid(win) then
    vim.api.nvim_set_current_win(win)
  end
  return split
end

-- The split a streamed explanation grows in: opened beside the code at the first token.
local function open_stream(key, source)
  local state = agentls()
  -- Forget finished streams (their split now shows the saved file, or was closed).
  for i = #state.streamed, 1, -1 do
    local old = state.streamed[i]
    if old.done or not vim.api.nvim_buf_is_valid(old.bufnr) then
      state.streams[old.token] = nil
      table.remove(state.streamed, i)
    end
  end
  local bufnr = vim.api.nvim_create_buf(false, true)
  vim.bo[bufnr].filetype = "markdown"
  vim.bo[bufnr].bufhidden = "wipe"
  local win = open_beside(bufnr)
  local stream = { bufnr = bufnr, win = win, source = source, token = key }
  state.streams[key] = stream
  table.insert(state.streamed, stream)
  return stream
end

-- Append text at the end of a buffer (the text may end mid-line and hold newlines), and keep
-- the end in view while the user is not in that window.
local function append(stream, text)
  local bufnr = stream.bufnr
  local count = vim.api.nvim_buf_line_count(bufnr)
  local last = vim.api.nvim_buf_get_lines(bufnr, count - 1, count, false)[1] or ""
  local lines = vim.split(last .. text, "\n", { plain = true })
  vim.api.nvim_buf_set_lines(bufnr, count - 1, count, false, lines)
  local win = stream.win
  if vim.api.nvim_win_is_valid(win) and vim.api.nvim_win_get_buf(win) == bufnr
    and win ~= vim.api.nvim_get_current_win()
  then
    vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(bufnr), 0 })
  end
end

--- agent/textDelta: an explanation's answer grows in a split; a new turn starts it over.
--- Thinking and other runs' text are not shown (a refactor's commentary is in its progress).
function M.text_delta_handler(_, params, ctx)
  if not params or params.kind ~= "answer" or params.delta == "" then
    return
  end
  local state = agentls()
  local key = key_of(ctx.client_id, params.token)
  local run = state.runs[key]
  if not run or run.title ~= EXPLAIN_TITLE then
    return
  end
  local stream = state.streams[key]
  if stream and stream.done then
    return
  end
  if not stream or not vim.api.nvim_buf_is_valid(stream.bufnr) then
    local source
    for _, mine in pairs(state.running) do
      if mine.kind == "explain" and mine.client_id == ctx.client_id then
        source = vim.api.nvim_buf_get_name(mine.bufnr)
      end
    end
    stream = open_stream(key, source)
  end
  if stream.turn ~= params.turn then
    stream.turn = params.turn
    vim.api.nvim_buf_set_lines(stream.bufnr, 0, -1, false, {})
  end
  append(stream, params.delta)
end

-- A stream whose run ended without an explanation: say so at its end, and let it be.
local function end_stream(key, message)
  local stream = agentls().streams[key]
  if not stream or stream.done then
    return
  end
  stream.done = true
  if vim.api.nvim_buf_is_valid(stream.bufnr) then
    append(stream, "\n\n*" .. (message == "Cancelled" and "Cancelled." or "Failed: see :messages.") .. "*")
  end
end

-- ---- progress --------------------------------------------------------------------------------

-- One line in the command line, cut to fit (a longer one would ask to press Enter).
local function echo(line)
  if not agentls().options.echo_progress then
    return
  end
  line = "agentls: " .. line
  local space = vim.v.echospace or (vim.o.columns - 12)
  if space > 1 and vim.fn.strdisplaywidth(line) > space then
    line = vim.fn.strcharpart(line, 0, space - 1) .. "…"
  end
  vim.api.nvim_echo({ { line } }, false, {})
end

local function describe(run)
  local pct = run.percentage and (" " .. run.percentage .. "%") or ""
  return run.title .. pct .. (run.message and (": " .. run.message) or "")
end

--- $/progress: kept per run (token) for progress() and echoed; Neovim's own handler still
--- runs, so vim.lsp.status(), LspProgress and statusline plugins see it too.
function M.progress_handler(err, result, ctx, config)
  local value = result and result.value
  if type(value) == "table" then
    local state = agentls()
    local key = key_of(ctx.client_id, result.token)
    if value.kind == "begin" then
      state.runs[key] = { title = value.title, message = value.message, percentage = value.percentage }
      echo(describe(state.runs[key]))
    elseif value.kind == "report" and state.runs[key] then
      local run = state.runs[key]
      run.message = value.message or run.message
      run.percentage = value.percentage or run.percentage
      echo(describe(run))
    elseif value.kind == "end" and state.runs[key] then
      -- The server sends a run's deltas before its progress ends.
      local run = state.runs[key]
      state.runs[key] = nil
      echo(run.title .. ": " .. (value.message or "done"))
      if value.message == "Cancelled" or value.message == "Failed" then
        end_stream(key, value.message)
      end
    end
  end
  return vim.lsp.handlers["$/progress"](err, result, ctx, config)
end

--- The agent runs in progress as one line, for a statusline, or nil when idle.
function M.progress()
  local parts = {}
  for _, run in pairs(agentls().runs) do
    table.insert(parts, describe(run))
  end
  table.sort(parts)
  return #parts > 0 and table.concat(parts, " | ") or nil
end

-- ---- the saved explanation -------------------------------------------------------------------

-- The streamed explanation the server's showDocument of the saved file completes: the one
-- named for the same file, else the oldest still open.
local function live_stream(fname)
  local name = vim.fn.fnamemodify(fname, ":t")
  local found
  for _, stream in ipairs(agentls().streamed) do
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

--- window/showDocument: the saved explanation replaces the text streamed into its split, or
--- opens in a new split beside the code (0.7/0.8 have no handler of their own, and 0.9+'s
--- would put it in place of the code). Other documents go to Neovim's handler (0.9+).
function M.show_document_handler(err, params, ctx, config)
  local fname = vim.uri_to_fname(params.uri)
  local stream = live_stream(fname)
  if stream then
    stream.done = true
    vim.api.nvim_win_call(stream.win, function()
      vim.cmd("edit " .. vim.fn.fnameescape(fname))
    end)
    return { success = true }
  end
  local explanation = fname:match("%-explanation%.md$") ~= nil
  if builtin_show_document and not explanation then
    return builtin_show_document(err, params, ctx, config)
  end
  local split = open_beside(fname)
  if params.takeFocus then
    vim.api.nvim_set_current_win(split)
  end
  return { success = true }
end

return M
