"""Score a program against a dataset: the child predicts, this process compares.

Inputs go to the child in lockstep batches (``Dataset.lockstep_batches``): the child never holds an
expected output, not even the next state hidden in a later transition's input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cwm.envs.dataset import Dataset
from cwm.sandbox.scoring import Metric, TransitionScore, score_all
from cwm.sandbox.worker import IOSpec, Limits, ProgramError, Sandbox, SandboxConfig, SessionFailed
from cwm.telemetry import traced

MAX_TRANSITION_TIMEOUTS = 3
"""Stop after this many transitions hit the per-transition timer: the program is too slow to be useful."""


@dataclass
class ScoreReport:
    """What ``cwm check --json`` prints.

    ``passed``: no error, and every transition is fully correct except those the dataset's audit proved
    the real environment cannot produce from their recorded state (``excused``; ``consistent`` False in
    their failure dicts). A model matching the real environment therefore passes; unknown transitions
    still have to be right. ``ceiling``/``strict_ceiling``: what the real environment itself scores on
    these transitions (``cwm`` metric; None when any transition is unknown or under ``official``, which
    excuses nothing: the audit judges with the ``cwm`` comparison).
    """

    env_id: str
    metric: Metric
    accuracy: float
    strict_accuracy: float
    transitions: int
    correct: int
    exceptions: int
    error: ProgramError | None
    failures: list[dict[str, Any]]
    elapsed_s: float
    timings: dict[str, float] = field(default_factory=dict)
    output: str = ""
    ceiling: float | None = None
    strict_ceiling: float | None = None
    excused: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and self.correct + self.excused == self.transitions

    def to_json(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id, "metric": self.metric, "accuracy": self.accuracy,
            "strict_accuracy": self.strict_accuracy, "transitions": self.transitions, "correct": self.correct,
            "exceptions": self.exceptions, "passed": self.passed, "ceiling": self.ceiling,
            "strict_ceiling": self.strict_ceiling, "excused": self.excused,
            "error": None if self.error is None else self.error.to_json(),
            "failures": self.failures, "elapsed_s": round(self.elapsed_s, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()}, "output": self.output,
        }


def io_spec(ds: Dataset) -> IOSpec:
    return IOSpec(ds.state_kind, str(ds.state.dtype), ds.action_kind, str(ds.action.dtype))


def _failure(ds: Dataset, i: int, ts: TransitionScore) -> dict[str, Any]:
    err = ts.error or {}
    return {
        "index": i, "trajectory": int(ds.trajectory[i]), "step": int(ds.step[i]),
        "state": ds.wire_state(i), "action": ds.wire_action(i),
        "expected": {"next_state": ds.next_state[i].tolist(), "reward": float(ds.reward[i]),
                     "done": bool(ds.terminated[i]), "truncated": bool(ds.truncated[i])},
        "predicted": ts.predicted, "mismatch": ts.mismatch,
        "traceback": err.get("traceback") if isinstance(err.get("traceback"), str) else None,
        "error": err.get("message") if isinstance(err.get("message"), str) else None,
        "consistent": ds.consistent_value(i),
    }


@traced("cwm.sandbox.evaluate")
async def evaluate(sandbox: Sandbox, code: str, ds: Dataset, *, metric: Metric = "cwm",
                   max_failures: int = 5, limits: Limits | None = None) -> ScoreReport:
    """Load ``code`` in a fresh child, collect a prediction per transition, and score them here."""
    t0 = time.perf_counter()
    lim = limits or sandbox.config.limits
    session, loaded = await sandbox.load(code, io_spec(ds), lim)
    timings = {"load_s": loaded.elapsed_s}
    preds: list[Any] = [None] * len(ds)
    error: ProgramError | None = loaded.error
    if loaded.ok:
        t1 = time.perf_counter()
        deadline = time.monotonic() + lim.deadline(len(ds))
        timeouts = 0
        try:
            for batch in ds.lockstep_batches():
                items = [(ds.wire_state(int(i)), ds.wire_action(int(i))) for i in batch]
                left = deadline - time.monotonic()
                try:
                    answers = await session.step_many(items, timeout=max(left, 0.001))
                except SessionFailed as exc:
                    for i, a in zip(batch, exc.answered, strict=False):
                        preds[int(i)] = a
                    stuck = int(batch[len(exc.answered)]) if len(exc.answered) < len(batch) else None
                    error = exc.error
                    if stuck is not None:
                        error.index = stuck
                        error.message += (f"; stuck on transition {stuck} (trajectory "
                                          f"{int(ds.trajectory[stuck])}, step {int(ds.step[stuck])})")
                    if error.kind == "timeout":
                        error.message += f"; the step deadline for {len(ds)} transitions is " \
                                         f"{lim.deadline(len(ds)):.3g} s"
                    break
                for i, a in zip(batch, answers, strict=True):
                    preds[int(i)] = a
                    if isinstance(a.get("error"), dict) and a["error"].get("kind") == "timeout":
                        timeouts += 1
                if timeouts >= MAX_TRANSITION_TIMEOUTS:
                    error = ProgramError("timeout", f"{timeouts} transitions each took longer than "
                                         f"{lim.transition_s:g} s; scoring stopped")
                    break
        finally:
            await session.close()
        timings["step_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    scores = score_all(ds, preds, metric)
    timings["score_s"] = time.perf_counter() - t2
    wrong = [i for i, ts in enumerate(scores.per_transition) if not ts.correct]
    # transitions no model can get right go last, so a truncated list keeps the informative ones
    wrong.sort(key=lambda i: ds.consistent_value(i) is False)
    failures = [_failure(ds, i, scores.per_transition[i]) for i in wrong[:max_failures]]
    excused = 0 if metric != "cwm" else \
        sum(1 for i in wrong if ds.consistent_value(i) is False and scores.per_transition[i].error is None)
    exceptions = sum(1 for ts in scores.per_transition if ts.error is not None)
    accuracy, strict = scores.accuracy, scores.strict_accuracy
    if error is not None and not loaded.ok:
        accuracy = strict = 0.0
    if metric == "official" and error is not None:
        accuracy = strict = 0.0
    return ScoreReport(
        env_id=ds.env_id, metric=metric, accuracy=accuracy, strict_accuracy=strict, transitions=len(ds),
        correct=sum(1 for ts in scores.per_transition if ts.correct), exceptions=exceptions, error=error,
        failures=failures, elapsed_s=time.perf_counter() - t0, timings=timings, output=loaded.output,
        ceiling=ds.ceiling() if metric == "cwm" else None,
        strict_ceiling=ds.strict_ceiling() if metric == "cwm" else None, excused=excused,
    )


async def check_program(code: str, ds: Dataset, *, metric: Metric = "cwm", max_failures: int = 5,
                        config: SandboxConfig | None = None) -> ScoreReport:
    """One-shot scoring with a sandbox of its own (closed before returning)."""
    async with Sandbox(config) as sandbox:
        return await evaluate(sandbox, code, ds, metric=metric, max_failures=max_failures)
