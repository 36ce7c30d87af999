"""The composition root: the `voicebank` command line, which composes every service."""

from orchestrator._commands._cli import main

__all__ = ["main"]
