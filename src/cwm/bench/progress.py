"""The bench's one progress display: runs done, paid calls, cost, elapsed time and time left.

Runs report from the executor's thread (its event loop) while the main thread draws (with Ray, only when
each finishes), so updates are taken under a lock. The estimate of time left treats a run's search as its
budget of calls and extrapolates from the share of calls made so far; it is rough on purpose and says so
(``~``). On a terminal the line is redrawn in place; in a log (not a terminal) a line is written when a run
finishes and at least every ``LOG_EVERY_S`` while calls are made, so a long run is never silent throughout.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

LOG_EVERY_S = 60.0
"""Seconds between progress lines in a log (not a terminal), between runs finishing."""


@dataclass
class _Live:
    calls: int = 0
    paid: int = 0
    cost: float = 0.0
    done: bool = False
    unpriced: bool = False
    prior: bool = False
    """Finished before this session (a resume): counts as done, but not as work done in this elapsed time."""
    """Paid calls at a price the table does not know: the bench's total is then unknown, not $0."""


@dataclass
class BenchProgress:
    total_runs: int
    budget: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool = False
    enabled: bool = True
    started: float = field(default_factory=time.monotonic)
    runs: dict[str, _Live] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: float = 0.0

    def run_progress(self, key: str, p: dict[str, Any]) -> None:
        """A search's own progress callback (``on_progress`` of ``synthesize``)."""
        with self._lock:
            live = self.runs.setdefault(key, _Live())
            live.calls = int(p.get("calls") or 0)
            live.paid = int(p.get("paid_calls") or 0)
            live.cost = float(p.get("cost_usd") or 0.0)
            live.unpriced = p.get("cost_usd") is None and live.paid > 0
        self.show()

    def run_done(self, key: str, row: dict[str, Any] | None, prior: bool = False) -> None:
        with self._lock:
            live = self.runs.setdefault(key, _Live())
            live.done, live.prior = True, prior
            if row is not None:
                live.calls = int(row.get("search_calls") or live.calls)
                live.paid = int(row.get("llm_calls") or live.paid)
                live.cost = float(row.get("cost_usd") or live.cost)
                live.unpriced = row.get("cost_usd") is None and live.paid > 0
        self.show(force=True)

    @property
    def cost(self) -> float:
        with self._lock:
            return sum(r.cost for r in self.runs.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            done = sum(1 for r in self.runs.values() if r.done)
            calls = sum(r.paid for r in self.runs.values())
            cost = sum(r.cost for r in self.runs.values())
            unpriced = any(r.unpriced for r in self.runs.values())
            work = sum(1.0 if r.done else min(r.calls / max(self.budget, 1), 1.0) * 0.9
                       for r in self.runs.values() if not r.prior)
            todo = self.total_runs - sum(1 for r in self.runs.values() if r.prior)
        elapsed = time.monotonic() - self.started
        frac = work / todo if todo > 0 else 1.0
        eta = elapsed * (1 - frac) / frac if frac > 0 else None
        return {"runs_done": done, "runs": self.total_runs, "paid_calls": calls,
                "cost_usd": None if unpriced else round(cost, 6), "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None else round(eta, 1)}

    def line(self) -> str:
        s = self.snapshot()
        eta = "?" if s["eta_s"] is None else _clock(s["eta_s"])
        return (f"bench: runs {s['runs_done']}/{s['runs']} · calls {s['paid_calls']} · {usd(s['cost_usd'])} · "
                f"elapsed {_clock(s['elapsed_s'])} · left ~{eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else LOG_EVERY_S):
            return
        self._last = now
        text = self.line()
        self.stream.write(("\r" + text.ljust(96)) if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def usd(cost: float | None) -> str:
    """A cost for people: dollars, or why it is unknown."""
    return "$? (unpriced calls; pass --prices)" if cost is None else f"${cost:.4f}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
