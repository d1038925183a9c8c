"""User-facing errors.

Every error a user can cause (a typo in an env id, a missing file, a malformed dataset) is raised as a
``CwmError`` carrying one line that says what was wrong and what to do; the CLI prints that line and
exits non-zero instead of showing a traceback from deep inside.
"""

from __future__ import annotations


class CwmError(Exception):
    """An error caused by input or setup, with a message fit to show a user as is."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")
