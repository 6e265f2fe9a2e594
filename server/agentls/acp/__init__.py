"""The Agent Client Protocol front end (``agentls acp``), on the official SDK (``acp``).

Zed, the JetBrains IDEs, Neovim (CodeCompanion, avante.nvim) and Emacs (agent-shell) host
coding agents as chat panels over ACP. This package runs the same engine as the language
server for them: ``agent`` (the protocol's methods), ``session`` (a conversation and its
prompt), ``prompt`` (reading a prompt's blocks), ``updates`` (the loop's events as
``session/update``), ``permissions`` (consent before edits), ``files`` (the client's buffers
and writes), ``config`` (settings and selectors), ``engine`` (the thread runs execute on),
``main`` (the command). Nothing below this package knows ACP.
"""
