"""What ``cwm plan`` and ``cwm plan-report`` show people: live progress, and results per environment.

Progress: on a terminal one line is rewritten in place; anywhere else (a log file, CI, a pipe) plain
lines are written -- one when an episode ends and a heartbeat while a long episode runs -- so a slow
planner is never silent and a log never fills with carriage returns.

Report: plan results for the same environment are pooled, not counted twice. Their episodes are put
together (the mean ± std of returns is over all of them) and the normalized return is the
episode-weighted mean of the files' normalized returns, which is the normalized pooled mean when the
files share their baselines. The split means then count each environment once, as the paper does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, TextIO, TypedDict


class PlanProgress:
    """The ``progress(episode, episodes, step, return)`` callback of ``cwm.planning.agent.plan``."""

    def __init__(self, stream: TextIO, *, tty: bool, enabled: bool = True, heartbeat_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.tty, self.enabled = stream, tty, enabled
        self.heartbeat_s, self.clock = heartbeat_s, clock
        self._last: tuple[int, int, int, float] | None = None
        self._said = clock()

    def __call__(self, ep: int, total: int, step: int, ret: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            if step % 10 == 0:
                self.stream.write(f"\repisode {ep + 1}/{total} · step {step} · return {ret:.1f}".ljust(60))
                self.stream.flush()
            return
        last = self._last
        if last is not None and last[0] != ep:
            self._episode_done(*last)
        elif self.clock() - self._said >= self.heartbeat_s:
            self._say(f"episode {ep + 1}/{total} · step {step} · return {ret:.1f}")
        self._last = (ep, total, step, ret)

    def finish(self) -> None:
        """After the last step: end the terminal line, or report the last episode."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\n")
        elif self._last is not None:
            self._episode_done(*self._last)
            self._last = None

    def _episode_done(self, ep: int, total: int, step: int, ret: float) -> None:
        self._say(f"episode {ep + 1}/{total} done · {step} steps · return {ret:.1f}")

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._said = self.clock()


class EnvResult(TypedDict):
    env: str
    planner: str
    files: int
    episodes: int
    mean_return: float | None
    std_return: float | None
    normalized_return: float | None


def pool_by_env(results: list[dict[str, Any]]) -> list[EnvResult]:
    """One row per environment (first-seen order), pooling repeated results as the module says."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(str(r["env"]), []).append(r)
    rows: list[EnvResult] = []
    for env, rs in groups.items():
        returns = [float(x) for r in rs for x in (r.get("returns") or [])]
        weighted = [(float(r["normalized_return"]), max(len(r.get("returns") or []), 1))
                    for r in rs if r.get("normalized_return") is not None]
        norm = (sum(v * w for v, w in weighted) / sum(w for _, w in weighted)) if weighted else None
        rows.append({"env": env, "planner": str(rs[-1].get("planner", "?")), "files": len(rs),
                     "episodes": len(returns),
                     "mean_return": statistics.fmean(returns) if returns else None,
                     "std_return": statistics.pstdev(returns) if returns else None,
                     "normalized_return": norm})
    return rows


def format_report(rows: list[EnvResult], split: dict[str, Any]) -> str:
    """Per-environment returns ± std, episode counts and normalized return; then the split means."""
    lines = [f"{'environment':28s} {'normalized':>10s}  {'return (mean ± std)':>22s}  episodes"]
    for r in rows:
        norm = "n/a" if r["normalized_return"] is None else f"{r['normalized_return']:.3f}"
        ret = ("n/a" if r["mean_return"] is None or r["std_return"] is None
               else f"{r['mean_return']:.2f} ± {r['std_return']:.2f}")
        pooled = f" (pooled from {r['files']} results)" if r["files"] > 1 else ""
        lines.append(f"{r['env']:28s} {norm:>10s}  {ret:>22s}  {r['episodes']:8d}{pooled}")
    for name, mean in split["split_mean"].items():
        n = split["split_count"][name]
        lines.append(f"{name} mean ({n} env{'s' if n != 1 else ''}): {'n/a' if mean is None else f'{mean:.3f}'}")
    return "\n".join(lines)
