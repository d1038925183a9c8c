"""Comparing a program's predictions with recorded transitions. Runs in the evaluator, never in a worker.

Two metrics:

``cwm`` (default): the paper's accuracy (partial credit per transition for next state, reward and done;
each distinct recorded reward value weighs the same) with the official scorer's ceilings removed:

* rewards recorded as float32 match a prediction within ``rtol = atol = 1e-5`` (or when the prediction
  rounds to the same float32), instead of exact ``==`` against a float64 prediction;
* a truncated transition (the episode was cut by a time limit) does not score ``done``: no Markov model
  can know the step counter, so predicting ``done=False`` there is not an error;
* a transition whose program raised counts as wrong; the others still count.

``official``: reproduces the official code's numbers (``done`` = terminated or truncated, rewards
compared with exact ``==`` after widening the recorded float32, and any exception in any transition
zeroes the whole program), for comparison with the paper's tables.

Predictions arrive as untrusted JSON. Each is validated here: a prediction of the wrong type, shape,
or a non-finite number is a mismatch, never a match and never an exception in the evaluator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cwm.envs.dataset import Dataset

Metric = Literal["cwm", "official"]
METRICS: tuple[Metric, ...] = ("cwm", "official")
RTOL = 1e-5
ATOL = 1e-5


@dataclass
class TransitionScore:
    """How one prediction compares with its recorded transition."""

    credit: float
    correct: bool
    mismatch: list[str] = field(default_factory=list)
    predicted: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def wire_prediction(next_state: Any, reward: Any, done: Any) -> dict[str, Any]:
    """A prediction in the form the sandbox child sends (its ``_encode``), for predictions made here.

    ``cwm audit`` scores the real environment's own outputs through this, so that the audit and a
    candidate program are judged by one comparison."""
    arr = np.asarray(next_state, dtype=np.float64)
    return {"s": arr.ravel().tolist(), "shape": list(arr.shape), "r": float(reward), "d": bool(done)}


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _parse_state(pred: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    flat, shape = pred.get("s"), pred.get("shape")
    if not isinstance(flat, list) or not isinstance(shape, list) or len(flat) > 1_000_000:
        return None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return None
    if math.prod(shape) != len(flat):
        return None
    vals = [_number(v) for v in flat]
    if any(v is None for v in vals):
        # keep the shape, mark the non-numbers as NaN so they compare unequal elementwise
        vals = [math.nan if v is None else v for v in vals]
    return np.array(vals, dtype=np.float64).reshape(shape)


def _state_credit(ds: Dataset, i: int, pred_state: np.ndarray[Any, Any] | None) -> float:
    """Fraction of next-state elements predicted right (all-or-nothing for a scalar state)."""
    expected = np.asarray(ds.next_state[i], dtype=np.float64)
    if pred_state is None:
        return 0.0
    if ds.state_kind == "int":
        ok = pred_state.size == 1 and bool(pred_state.reshape(-1)[0] == expected)
        return 1.0 if ok else 0.0
    if pred_state.shape != expected.shape:
        return 0.0
    if ds.discrete_state:
        hits = pred_state == expected
    else:
        hits = np.isfinite(pred_state) & np.isclose(pred_state, expected, rtol=RTOL, atol=ATOL)
    return float(np.mean(hits)) if hits.size else 1.0


def _reward_ok(recorded: np.float32, predicted: float | None, metric: Metric) -> bool:
    if predicted is None:
        return False
    if metric == "official":
        return predicted == float(recorded)
    r = float(recorded)
    return abs(predicted - r) <= ATOL + RTOL * abs(r) or np.float32(predicted) == recorded


def score_transition(ds: Dataset, i: int, pred: Any, metric: Metric = "cwm") -> TransitionScore:
    """Partial credit of one prediction (see the module docstring for the rules)."""
    if not isinstance(pred, dict) or "error" in pred:
        err = pred.get("error") if isinstance(pred, dict) else None
        return TransitionScore(0.0, False, ["exception" if err else "missing"], None,
                               err if isinstance(err, dict) else None)
    state = _parse_state(pred)
    reward = _number(pred.get("r"))
    done = pred.get("d") if isinstance(pred.get("d"), bool) else None
    shown = {"next_state": None if state is None else state.tolist(), "reward": reward, "done": done}

    terminated = bool(ds.terminated[i])
    truncated = bool(ds.truncated[i])
    expected_done = terminated or truncated if metric == "official" else terminated
    parts: dict[str, float] = {}
    if not (terminated or (metric == "official" and truncated)):
        parts["next_state"] = _state_credit(ds, i, state)
    parts["reward"] = 1.0 if _reward_ok(ds.reward[i], reward, metric) else 0.0
    if metric == "official" or not truncated:
        parts["done"] = 1.0 if done is not None and done == expected_done else 0.0
    credit = sum(parts.values()) / len(parts)
    mismatch = [k for k, v in parts.items() if v < 1.0]
    return TransitionScore(credit, not mismatch, mismatch, shown)


@dataclass
class Scores:
    accuracy: float
    strict_accuracy: float
    per_transition: list[TransitionScore]


def score_all(ds: Dataset, preds: list[Any], metric: Metric = "cwm") -> Scores:
    """Score every transition and aggregate with reward-class balancing (the paper's weighting)."""
    per = [score_transition(ds, i, preds[i] if i < len(preds) else None, metric) for i in range(len(ds))]
    credits = np.array([t.credit for t in per], dtype=np.float64)
    strict = float(np.mean([t.correct for t in per])) if per else 0.0
    if metric == "official" and any(t.error is not None for t in per):
        return Scores(0.0, 0.0, per)
    if not per:  # no transitions, no reward classes: nothing was predicted right
        return Scores(0.0, 0.0, per)
    _, cls = np.unique(ds.reward, return_inverse=True)
    class_means = [credits[cls == c].mean() for c in range(cls.max() + 1)]
    return Scores(float(np.mean(class_means)), strict, per)
