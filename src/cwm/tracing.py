"""structlog configuration and per-run trace binding.

Console events go to stderr (stdout stays free for ``--json`` output), rendered for people on a terminal
and as JSON lines otherwise, so a log pipeline receives the same events as a run's trace file.

Every run writes its own trace. The sink is held in a :class:`contextvars.ContextVar`, not a module
global: asyncio tasks copy the context they are created in, so every event emitted by a run's tasks
reaches that run's file (and its live subscribers), even while other runs in the same process emit theirs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "console", "json")
Subscriber = Callable[[dict[str, Any]], None]

_METHOD_LEVEL = {"warn": "warning", "exception": "error", "critical": "error", "fatal": "error"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at the time of the call (test harnesses swap it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*args: object) -> _StderrLogger:
    return _StderrLogger()


class TraceSink:
    """One run's trace: a JSON-lines file, plus in-process subscribers (a live event stream)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a", encoding="utf-8")
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` with every event from now on; returns the function that unsubscribes."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def write(self, event: MutableMapping[str, Any]) -> None:
        record = dict(event)
        if self._fh is not None:
            self._fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
            self._fh.flush()
        for fn in list(self._subscribers):
            fn(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


_sink: contextvars.ContextVar[TraceSink | None] = contextvars.ContextVar("cwm_trace_sink", default=None)


class _Tee:
    """Hands every event (info and above) to the current run's sink, then filters for the console."""

    def __init__(self, console_level: int) -> None:
        self.console_level = console_level

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        sink = _sink.get()
        if sink is not None:
            sink.write(event)
        if _LEVELS.get(_METHOD_LEVEL.get(method, method), logging.INFO) < self.console_level:
            raise structlog.DropEvent
        return event


def _renderer(fmt: LogFormat) -> Any:
    resolved = fmt if fmt != "auto" else ("console" if sys.stderr.isatty() else "json")
    if resolved == "json":
        return structlog.processors.JSONRenderer(default=str, ensure_ascii=False)
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def configure(level: str = "warning", trace_path: str | Path | None = None, fmt: LogFormat = "console") -> None:
    """Console events at ``level`` and above on stderr (``fmt``: console, json, or auto = console on a
    terminal and JSON lines otherwise); with ``trace_path``, every info event of this context as JSON lines.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; choose one of {', '.join(LOG_FORMATS)}")
    console = _LEVELS.get(level, logging.WARNING)
    floor = min(console, logging.INFO)  # info events always reach a trace sink, if one is bound
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _Tee(console),
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    if trace_path is not None:
        _sink.set(TraceSink(Path(trace_path)))


def _ensure_configured() -> None:
    if not structlog.is_configured():
        configure("warning")


def current_sink() -> TraceSink | None:
    """The trace sink bound in this context (the run being executed), if any."""
    return _sink.get()


@contextlib.contextmanager
def bind_sink(sink: TraceSink) -> Iterator[TraceSink]:
    """Route this context's events (and those of tasks created inside it) to ``sink`` for the block."""
    _ensure_configured()
    token = _sink.set(sink)
    try:
        yield sink
    finally:
        _sink.reset(token)


@contextlib.contextmanager
def trace_to(path: str | Path) -> Iterator[TraceSink]:
    """Write every info-and-above event of this context to ``path`` (JSON lines) for the duration of the block."""
    sink = TraceSink(Path(path))
    try:
        with bind_sink(sink):
            yield sink
    finally:
        sink.close()
