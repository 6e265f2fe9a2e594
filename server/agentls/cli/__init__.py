"""The ``agentls`` command: the language server (stdio or ``--tcp``), ``agentls acp``,
``agentls run`` (:mod:`~agentls.cli.run`, the same task functions as the server) and
``agentls doctor`` (:mod:`~agentls.cli.doctor`)."""

from agentls.cli.main import main

__all__ = ["main"]
