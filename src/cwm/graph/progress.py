"""What a run reports about itself across interruptions: running time per segment, and the anytime curve.

A run may be stopped (Ctrl-C, SIGKILL, a reboot) and resumed any number of times; each stretch of
running is a *segment*. ``segments.json`` holds one entry per segment (start and last-seen wall-clock
times), rewritten by a heartbeat every second, so a killed segment loses at most a second. The run's
``wall_s`` is the sum of the segments' running time: the hours a run sat killed are not time it spent,
and ``--max-time`` must not expire while nothing runs. The search state measures its own elapsed time
from its first step (wall clock, downtime included); ``downtime_since`` is what to subtract.

The anytime curve answers "how good was the best program after n calls": one point per expansion (one
LLM call each), in the order the search applied them, with the best feedback accuracy so far (highest,
earliest on ties, the rule the controllers use) and that program's held-out accuracy.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import structlog

log = structlog.get_logger("cwm.run")

NO_PROGRAM_ERROR = "The reply contained no Python program"
"""How an expansion whose reply held no code block starts its error (see ``cwm.agents.expand``)."""


@dataclass
class Segment:
    started: float
    """Wall-clock (epoch) seconds when this segment began."""
    seen: float
    """The last time this segment was known to be running."""

    @property
    def running_s(self) -> float:
        return max(0.0, self.seen - self.started)


class Segments:
    """``segments.json`` of a run directory: begin a segment, keep it alive, sum running time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[Segment] = []
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self.items = [Segment(float(d["started"]), float(d["seen"])) for d in raw]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("run.segments_unreadable", path=str(path), error=str(exc))
        self._current: Segment | None = None

    def begin(self) -> None:
        now = time.time()
        self._current = Segment(now, now)
        self.items.append(self._current)
        self.save()

    def tick(self) -> None:
        if self._current is not None:
            self._current.seen = time.time()
            self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps([asdict(s) for s in self.items]), encoding="utf-8")
        tmp.replace(self.path)

    @property
    def running_s(self) -> float:
        return sum(s.running_s for s in self.items)

    def downtime_since(self, since: float) -> float:
        """Seconds after ``since`` (epoch) that fell between segments: nothing was running."""
        gaps = 0.0
        for prev, nxt in zip(self.items, self.items[1:], strict=False):
            lo, hi = max(prev.seen, since), nxt.started
            gaps += max(0.0, hi - lo)
        return gaps

    async def heartbeat(self, every: float = 1.0) -> None:
        """Tick until cancelled (run as a task beside the search)."""
        while True:
            await asyncio.sleep(every)
            self.tick()


class CurvePoint(TypedDict):
    call: int
    best: float
    heldout: float | None


def anytime_curve(nodes: list[Any]) -> list[CurvePoint]:
    """One point per expanded node (root excluded), in creation order; ``nodes`` are the controller's."""
    curve: list[CurvePoint] = []
    best: Any = None
    for n, node in enumerate(nodes[1:], 1):
        if best is None or node.score > best.score:
            best = node
        curve.append({"call": n, "best": float(best.score), "heldout": best.heldout})
    return curve


def curve_summary(curve: list[CurvePoint]) -> str:
    """The calls at which the best score rose, e.g. ``1:0.50 3:0.98 5:1.00``."""
    steps: list[str] = []
    last: float | None = None
    for p in curve:
        if last is None or p["best"] > last:
            steps.append(f"{p['call']}:{p['best']:.2f}")
            last = p["best"]
    return " ".join(steps)


def no_program_replies(nodes: list[Any]) -> int:
    """Expansions whose LLM reply held no code block (the model ignored the format, or ran out of tokens)."""
    return sum(1 for node in nodes[1:] if (node.error or "").startswith(NO_PROGRAM_ERROR))
