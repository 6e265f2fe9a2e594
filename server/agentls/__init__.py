"""agentls: a local coding agent exposed as a language server."""

__version__ = "0.1.0"
