-- Headless Neovim driver for tests/test_neovim.py's :checkhealth test: the plugin installed as
-- a plugin manager does (the repository on 'runtimepath'), then `:checkhealth agentls` with
-- the model server reachable, with a model it lacks, with the model server down, and with a
-- cmd that does not exist. Each report's buffer text goes to $AGENTLS_HEALTH_OUT/<case>.txt.
-- Exit 0 = all four ran; the pytest judges what they say.
--
-- Environment: AGENTLS_REPO, AGENTLS_PYTHON, AGENTLS_MODEL_URL, AGENTLS_CLOSED_URL,
-- AGENTLS_HEALTH_OUT.

vim.opt.runtimepath:prepend(assert(os.getenv("AGENTLS_REPO"), "AGENTLS_REPO not set"))
local out = assert(os.getenv("AGENTLS_HEALTH_OUT"), "AGENTLS_HEALTH_OUT not set")
local agentls = require("agentls")

local function capture(case)
  vim.cmd("checkhealth agentls")
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
  local f = assert(io.open(out .. "/" .. case .. ".txt", "w"))
  f:write(text, "\n")
  f:close()
  vim.cmd("bwipeout!")
end

local function run()
  local python = os.getenv("AGENTLS_PYTHON")
  agentls.setup({
    cmd = { python, "-m", "agentls" },
    settings = { backend = "ollama", baseUrl = os.getenv("AGENTLS_MODEL_URL"), model = "gemma4:12b-it-qat" },
  })
  capture("reachable")
  agentls.configure({ model = "gemma4:31b-it-qat" }) -- not pulled on that server
  capture("missing")
  agentls.configure({ baseUrl = os.getenv("AGENTLS_CLOSED_URL") })
  capture("down")
  agentls.setup({ cmd = { "/nonexistent/bin/python3", "-m", "agentls" } })
  capture("noserver")
end

vim.api.nvim_create_autocmd("VimEnter", {
  callback = function()
    vim.schedule(function()
      local ok, err = pcall(run)
      if ok then
        vim.cmd("qall!")
      else
        io.stderr:write("FAIL ", debug.traceback(tostring(err)), "\n")
        vim.cmd("cquit 1")
      end
    end)
  end,
})
