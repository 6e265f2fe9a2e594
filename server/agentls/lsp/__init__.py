"""Everything that knows LSP: the server's features (:mod:`~agentls.lsp.server`), the wire
(:mod:`~agentls.lsp.framing`, :mod:`~agentls.lsp.agent_protocol`, :mod:`~agentls.lsp.transport`,
:mod:`~agentls.lsp.text_sync`), the protocol's JSON shapes, progress and streaming, settings
sources, status, code actions, and the ``WorkspaceEdit``. Nothing below the front ends imports
this package (``tests/test_layers.py``)."""
