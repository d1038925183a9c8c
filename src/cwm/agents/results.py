"""What an agent hands back to a search controller (kept apart so the pure tree imports no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ExpansionResult:
    program: str | None
    score: float
    """Accuracy on the feedback transitions."""
    bug: bool
    """The program failed as a whole or raised on some transition: the next action is fix."""
    heldout: float | None = None
    feedback: dict[str, Any] | None = None
    """The first wrongly predicted transition (for improve)."""
    error: str | None = None
    """The error and the program's traceback (for fix)."""
