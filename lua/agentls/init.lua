-- agentls for Neovim 0.7 and later: a local coding agent as a language server.
--
-- Install the repository as a plugin (lazy.nvim: `{ "OWNER/agentls", opts = { ... } }`), or
-- put it on 'runtimepath' yourself, then:
--
--   require("agentls").setup({ settings = { backend = "ollama", model = "gemma4:12b-it-qat" } })
--
-- All agent logic lives in the Python server; this plugin starts it, forwards commands as
-- workspace/executeCommand and shows what comes back. See docs/neovim.md.
--
-- The modules, by job:
--   agentls          setup() and the options (this file), plus the state the others share
--   agentls.client   the client config, starting and attaching the server, settings changes
--   agentls.commands :AgentExplain, :AgentRefactor, :AgentTests, :AgentCancel, :AgentStatus
--   agentls.stream   the explanation streamed into a split (agent/textDelta), progress
--   agentls.health   :checkhealth agentls

local M = {}

M.name = "agentls"

M.defaults = {
  -- How to start the server: an interpreter that has agentls installed (a virtualenv's
  -- python works too), or { "agentls" } when the console script is on PATH. Left out: the
  -- plugin's own .venv when its build step made one (see docs/neovim.md), else python3.
  cmd = { "python3", "-m", "agentls" },
  -- Buffers of these filetypes start (or join) the server when opened.
  filetypes = { "python", "javascript", "typescript", "go", "rust", "lua", "c", "cpp", "java" },
  -- The project root is the nearest folder holding one of these.
  root_markers = { ".git", "pyproject.toml", "setup.py", "package.json", "go.mod", "Cargo.toml" },
  -- The server's `agent.*` settings, camelCase: backend, baseUrl, model, apiKey,
  -- contextLength, temperature, keepAlive, maxTurns, requestTimeout, connectTimeout,
  -- toolMode, maxOutputTokens, maxReadLines, contextWarning. `{ agent = { ... } }` works too.
  settings = {},
  -- Echo progress reports in the command line as they arrive.
  echo_progress = true,
  -- The Ex command that opens the window an explanation streams into ("vsplit",
  -- "botright split", "tabnew", ...).
  split = "vsplit",
  -- false: no mappings. true: the defaults below. A table: your own left-hand sides (a key
  -- set to false is left unmapped). Normal and visual mode; in visual mode the selected lines.
  keymaps = false,
}

M.default_keymaps = {
  explain = "<leader>ae",
  refactor = "<leader>ar",
  tests = "<leader>at",
  cancel = "<leader>ax",
  status = "<leader>as",
}

M.did_setup = false

-- ---- state shared by the modules -----------------------------------------------------------

-- Runs started by the commands: request id -> { kind, client_id, bufnr }.
M.running = {}
-- Explanations streaming into a split, by "<client id>:<progress token>": { bufnr, win,
-- turn, source, token, done }. `M.streamed` lists them in the order they began.
M.streams = {}
M.streamed = {}
-- Runs in progress, by "<client id>:<progress token>": { title, message, percentage }.
M.runs = {}
-- The last finished run: { kind, err, result, cancelled }; `finished` counts them.
M.last = nil
M.finished = 0

-- ---- options ---------------------------------------------------------------------------------

-- `settings = { agent = { ... } }` is the same as `settings = { ... }`.
function M.flatten_settings(settings)
  if type(settings) ~= "table" then
    return {}
  end
  local flat = vim.deepcopy(settings)
  if type(flat.agent) == "table" then
    local inner = flat.agent
    flat.agent = nil
    flat = vim.tbl_deep_extend("force", flat, inner)
  end
  return flat
end

local function check_options(opts)
  vim.validate({
    cmd = { opts.cmd, "table" },
    filetypes = { opts.filetypes, "table" },
    root_markers = { opts.root_markers, "table" },
    settings = { opts.settings, "table" },
    echo_progress = { opts.echo_progress, "boolean" },
    split = { opts.split, "string" },
    keymaps = { opts.keymaps, { "boolean", "table" } },
  })
  if #opts.cmd == 0 then
    error("agentls: cmd must name a program, e.g. { 'python3', '-m', 'agentls' }")
  end
end

-- The repository this file was installed from (lua/agentls/init.lua -> the root).
M.root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:gsub("^@", ""), ":p:h:h:h")

--- The interpreter of the plugin's own virtual environment (made by the plugin manager's build
--- step: `python3 -m venv .venv && .venv/bin/pip install .`), or nil.
function M.plugin_python()
  for _, python in ipairs({ "/.venv/bin/python", "/.venv/Scripts/python.exe" }) do
    if vim.fn.executable(M.root .. python) == 1 then
      return M.root .. python
    end
  end
end

--- The options a table of user options gives, merged over the defaults (lists replaced).
function M.resolve(opts)
  opts = opts or {}
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  if opts.cmd == nil and M.plugin_python() then
    -- -P: the working directory is not put on sys.path, so a folder named agentls there (the
    -- plugin's own checkout, say) cannot shadow an editable install as a namespace package.
    merged.cmd = { M.plugin_python(), "-P", "-m", "agentls" }
  end
  -- Lists are replaced, not merged index by index.
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts[key] ~= nil then
      merged[key] = vim.deepcopy(opts[key])
    end
  end
  merged.settings = M.flatten_settings(merged.settings)
  check_options(merged)
  return merged
end

local function set_keymaps(keymaps)
  if not keymaps then
    return
  end
  local lhs = keymaps == true and M.default_keymaps
    or vim.tbl_extend("force", M.default_keymaps, keymaps)
  -- From visual mode ":" puts in '<,'>, so each command gets the selected lines. Refactor
  -- and tests stop in the command line for an optional instruction (Enter: none).
  local maps = {
    explain = { ":AgentExplain<CR>", "Agent: explain", true },
    refactor = { ":AgentRefactor ", "Agent: refactor (type an instruction, or Enter)", false },
    tests = { ":AgentTests ", "Agent: generate tests (type an instruction, or Enter)", false },
    cancel = { "<Cmd>AgentCancel<CR>", "Agent: cancel the runs", true },
    status = { "<Cmd>AgentStatus<CR>", "Agent: model status", true },
  }
  for key, map in pairs(maps) do
    if lhs[key] then
      vim.keymap.set({ "n", "x" }, lhs[key], map[1], { desc = map[2], silent = map[3] })
    end
  end
end

--- Everything at once: start the server for the configured filetypes, define the commands,
--- the optional mappings. Safe to call again (options are replaced, not merged).
function M.setup(opts)
  M.options = M.resolve(opts)
  M.did_setup = true
  local group = vim.api.nvim_create_augroup("agentls", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.options.filetypes,
    callback = function(args)
      require("agentls.client").attach(args.buf)
    end,
  })
  require("agentls.commands").create()
  set_keymaps(M.options.keymaps)
  -- Loaded lazily (lazy.nvim `ft`/`cmd`/`keys`): the buffers already open join now.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr)
      and vim.tbl_contains(M.options.filetypes, vim.bo[bufnr].filetype)
    then
      require("agentls.client").attach(bufnr)
    end
  end
end

M.options = M.resolve()

-- ---- the public functions, kept here so `require("agentls").x` stays the one entry point ----

--- The client config (cmd, filetypes, root_markers, settings, handlers): usable with
--- vim.lsp.start (0.8+), vim.lsp.config (0.11+) and vim.lsp.start_client (0.7).
function M.client_config(opts)
  return require("agentls.client").client_config(opts)
end

--- Start (or reuse) the client for a buffer and attach it; returns the client id.
function M.attach(bufnr)
  return require("agentls.client").attach(bufnr)
end

--- Send changed settings to the running servers (workspace/didChangeConfiguration).
function M.configure(settings)
  return require("agentls.client").configure(settings)
end

--- Run one task ("explain", "refactor" or "generateTests"); opts: { bufnr, line1, line2,
--- instruction }. Returns the request id or nil.
function M.run(kind, opts)
  return require("agentls.commands").run(kind, opts)
end

--- Cancel every agent run in flight; returns how many requests were cancelled.
function M.cancel()
  return require("agentls.commands").cancel()
end

--- agent/status, shown as a message.
function M.status()
  return require("agentls.commands").status()
end

--- Define the user commands (setup() does; for vim.lsp.enable users).
function M.create_commands()
  return require("agentls.commands").create()
end

--- [uri, range?, instruction?] for the agent.* commands.
function M.command_arguments(bufnr, line1, line2, instruction)
  return require("agentls.commands").command_arguments(bufnr, line1, line2, instruction)
end

--- The agent runs in progress as one line (for a statusline), or nil when idle.
function M.progress()
  return require("agentls.stream").progress()
end

return M
