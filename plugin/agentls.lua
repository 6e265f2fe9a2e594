-- agentls: defines the user commands at startup and nothing else. The server starts when
-- require("agentls").setup({...}) has been called and a buffer of a configured filetype
-- opens, or when one of these commands runs (with the default options if setup was never
-- called). Lazy-loading plugin managers may load this file late; setup() defines the
-- commands too.
if vim.g.loaded_agentls == 1 or vim.fn.has("nvim-0.7") == 0 then
  return
end
vim.g.loaded_agentls = 1

require("agentls.commands").create()
