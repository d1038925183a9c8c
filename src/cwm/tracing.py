"""structlog configuration: human-readable events on stderr (stdout stays free for --json output)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import structlog

_METHOD_LEVEL = {"warn": "warning", "exception": "error", "critical": "error", "fatal": "error"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at the time of the call (test harnesses swap it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*args: object) -> _StderrLogger:
    return _StderrLogger()


class _TraceFile:
    """Writes every event (info and above) as one JSON line to the run's trace, before console filtering."""

    def __init__(self, path: Path | None, console_level: int) -> None:
        self.path = path
        self.console_level = console_level
        self._fh = path.open("a", encoding="utf-8") if path is not None else None

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self._fh is not None:
            self._fh.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
            self._fh.flush()
        if _LEVELS.get(_METHOD_LEVEL.get(method, method), logging.INFO) < self.console_level:
            raise structlog.DropEvent
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def open(self, path: Path) -> None:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")


_current: _TraceFile | None = None


def configure(level: str = "warning", trace_path: str | Path | None = None) -> None:
    """Console events at ``level`` and above on stderr; with ``trace_path``, every info event as JSON lines."""
    global _current
    if _current is not None:
        _current.close()
    console = _LEVELS.get(level, logging.WARNING)
    tee = _TraceFile(Path(trace_path) if trace_path else None, console)
    _current = tee
    floor = min(console, logging.INFO)  # info events always reach a trace file, if one is attached
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            tee,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


@contextlib.contextmanager
def trace_to(path: str | Path) -> Iterator[None]:
    """Write every info-and-above event to ``path`` (JSON lines) for the duration of the block."""
    if _current is None:
        configure("warning")
    assert _current is not None
    previous = _current.path
    _current.open(Path(path))
    try:
        yield
    finally:
        _current.close()
        if previous is not None and previous != Path(path):
            _current.open(previous)
