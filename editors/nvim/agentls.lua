-- The agentls Neovim plugin now lives at the repository root (lua/agentls/, plugin/), so
-- plugin managers install it straight from the repository; see docs/neovim.md.
--
-- This file keeps the old set-up working: with editors/nvim on package.path,
-- require("agentls") finds this file, which puts the repository on 'runtimepath' and hands
-- back the plugin (setup() and the rest unchanged). A copy of this file elsewhere finds the
-- plugin on 'runtimepath' if a plugin manager installed it, and otherwise says what to do.

local here = debug.getinfo(1, "S").source:gsub("^@", "")
local repo = vim.fn.fnamemodify(here, ":p:h:h:h")
local init = repo .. "/lua/agentls/init.lua"

if vim.fn.filereadable(init) == 1 then
  local rtp = vim.api.nvim_list_runtime_paths()
  if not vim.tbl_contains(rtp, repo) then
    vim.opt.runtimepath:prepend(repo)
  end
else
  init = vim.api.nvim_get_runtime_file("lua/agentls/init.lua", false)[1]
  if not init then
    error("agentls: this file is only a pointer now. Install the plugin from the agentls "
      .. "repository (lazy.nvim: { 'OWNER/agentls', opts = { ... } }, or add the repository "
      .. "to 'runtimepath'), delete this copy, and see docs/neovim.md.")
  end
end

-- This file is being loaded as the module "agentls", so the plugin's init.lua is run by path
-- and its result becomes the module; its submodules (agentls.client, ...) load from
-- 'runtimepath'.
return dofile(init)
