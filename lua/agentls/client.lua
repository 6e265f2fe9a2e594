-- Starting the agentls server and attaching buffers to it (0.7 .. 0.11+), the client config,
-- and the small compatibility layer the other modules use.

local M = {}

local uv = vim.uv or vim.loop
local has_011 = vim.fn.has("nvim-0.11") == 1

local function agentls()
  return require("agentls")
end

-- ---- compatibility (0.7 .. 0.11+) ------------------------------------------------------------

--- The clients matching { name?, bufnr? }: vim.lsp.get_clients (0.10+) or get_active_clients.
function M.clients(filter)
  filter = filter or {}
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

--- client:request (0.11) or client.request; returns ok, request id.
function M.request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.notify_server(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel_request(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.notify(msg, level)
  vim.notify("agentls: " .. msg, level or vim.log.levels.INFO)
end

-- ---- the project root -----------------------------------------------------------------------

--- The nearest folder above the buffer's file holding one of `markers`; else the folder
--- Neovim was started in when the file lies under it; else nil (the server then works on
--- the file alone, so opening /etc/hostname never makes /etc the workspace).
function M.find_root(bufnr, markers)
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
      local cwd = vim.fn.getcwd()
      if cwd ~= "/" and start:sub(1, #cwd + 1) == cwd .. "/" or start == cwd then
        return cwd ~= "/" and cwd or nil
      end
      return nil
    end
    dir = parent
  end
end

-- ---- workspace/applyEdit ----------------------------------------------------------------------

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

-- ---- the client ----------------------------------------------------------------------------

--- The client config: usable with vim.lsp.start (0.8+), vim.lsp.config (0.11+) and
--- vim.lsp.start_client (0.7). Settings go both as initializationOptions and as the
--- `agent` section the server pulls with workspace/configuration.
function M.client_config(opts)
  local options = agentls().options
  if opts then
    options = vim.tbl_deep_extend("force", options, opts)
  end
  local stream = require("agentls.stream")
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.window = capabilities.window or {}
  capabilities.window.showDocument = { support = true }
  return {
    name = agentls().name,
    cmd = options.cmd,
    filetypes = options.filetypes,
    root_markers = options.root_markers,
    init_options = options.settings,
    settings = { agent = options.settings },
    capabilities = capabilities,
    handlers = {
      ["workspace/applyEdit"] = apply_edit_handler,
      ["window/showDocument"] = stream.show_document_handler,
      ["agent/textDelta"] = stream.text_delta_handler,
      ["$/progress"] = stream.progress_handler,
    },
  }
end

--- Start (or reuse) the agentls client for a buffer and attach it; returns the client id.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if vim.bo[bufnr].buftype ~= "" or vim.api.nvim_buf_get_name(bufnr) == "" then
    return nil -- only real files: the agent reads and edits them on disk
  end
  local options = agentls().options
  local config = M.client_config()
  config.root_dir = M.find_root(bufnr, options.root_markers)
  if vim.lsp.start then -- 0.8+: reuses a running client with the same name and root
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  for _, client in ipairs(M.clients({ name = config.name })) do
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

--- The client attached to a buffer, started if there is none yet.
function M.client_for(bufnr)
  local attached = M.clients({ name = agentls().name, bufnr = bufnr })
  if attached[1] then
    return attached[1]
  end
  local id = M.attach(bufnr)
  return id and vim.lsp.get_client_by_id(id)
end

--- Send changed settings to the running servers (workspace/didChangeConfiguration); later
--- starts and :checkhealth use them too.
function M.configure(settings)
  local options = agentls().options
  options.settings = vim.tbl_deep_extend("force", options.settings, agentls().flatten_settings(settings))
  for _, client in ipairs(M.clients({ name = agentls().name })) do
    client.config.settings = { agent = options.settings }
    M.notify_server(client, "workspace/didChangeConfiguration", {
      settings = { agent = options.settings },
    })
  end
end

return M
