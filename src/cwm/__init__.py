"""cwm: Code World Models written by LLMs, searched with GIF-MCTS, scored in a sandbox."""

from __future__ import annotations

from typing import Any

from cwm.errors import CwmError

__version__ = "0.1.0"

__all__ = ["CwmError", "__version__", "as_env", "register_node"]


def __getattr__(name: str) -> Any:
    # heavy parts (gymnasium, the sandbox) load on first use, so `import cwm` stays cheap for the CLI
    if name == "as_env":
        from cwm.model_env import as_env

        return as_env
    if name == "register_node":
        from cwm.nodes import register_node

        return register_node
    raise AttributeError(f"module 'cwm' has no attribute {name!r}")
