"""cwm: Code World Models written by LLMs, searched with GIF-MCTS, scored in a sandbox."""

from cwm.errors import CwmError

__version__ = "0.1.0"

__all__ = ["CwmError", "__version__"]
