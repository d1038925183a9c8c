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
    """The first wrongly predicted transition that may be shown (what the paper's improve prompt shows)."""
    error: str | None = None
    """The error and the program's traceback (for fix)."""
    failures: list[dict[str, Any]] | None = None
    """The wrong transitions an improve prompt may show: the first of each kind (next state, reward, done),
    never one the dataset's audit marked inconsistent. Empty when the program is wrong only on such
    transitions (nothing to show: it is as good as the data allows). None in results made before this
    field existed (then ``feedback`` alone stands for it)."""
    duplicate_of: int | None = None
    """The node whose program this one equals up to layout and comments; it was not scored again."""
