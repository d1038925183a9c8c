"""``show_transitions`` and ``describe_env``: read-only views of the run's feedback transitions."""

from __future__ import annotations

from typing import Any

import numpy as np

from cwm.envs.dataset import Dataset
from cwm.sandbox.evaluate import ScoreReport, evaluate
from cwm.tools.box import ToolDeps

KINDS = ("next_state", "reward", "done")
MAX_SHOWN = 20


def transition(ds: Dataset, i: int) -> dict[str, Any]:
    """Transition ``i`` as JSON-able data."""
    return {"index": i, "state": ds.wire_state(i), "action": ds.wire_action(i),
            "next_state": np.asarray(ds.next_state[i]).tolist(), "reward": float(ds.reward[i]),
            "terminated": bool(ds.terminated[i]), "truncated": bool(ds.truncated[i]),
            "trajectory": int(ds.trajectory[i]), "step": int(ds.step[i])}


class ShowTransitions:
    name = "show_transitions"
    description = ("Show recorded training transitions: by index (indices), or the ones the current program "
                   "predicts wrongly for one kind (kind: next_state, reward or done), with its prediction.")
    schema: dict[str, Any] = {  # noqa: RUF012 - read-only description of the arguments
        "type": "object",
        "properties": {
            "indices": {"type": "array", "items": {"type": "integer"}, "description": "transition indices"},
            "kind": {"type": "string", "enum": list(KINDS), "description": "show failures of this kind"},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SHOWN, "default": 5},
        },
    }

    def __init__(self, deps: ToolDeps) -> None:
        self.deps = deps
        self._report: ScoreReport | None = None

    async def __call__(self, **kwargs: Any) -> Any:
        ds = self.deps.transitions
        limit = max(1, min(MAX_SHOWN, int(kwargs.get("limit") or 5)))
        kind = kwargs.get("kind")
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {', '.join(KINDS)}")
            return await self._failures(str(kind), limit)
        indices = kwargs.get("indices")
        if not isinstance(indices, list) or not indices:
            raise ValueError("give indices (a list of integers) or kind")
        bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < len(ds)]
        if bad:
            raise ValueError(f"indices out of range 0..{len(ds) - 1}: {bad[:5]}")
        return {"transitions": [transition(ds, i) for i in indices[:limit]], "total": len(ds)}

    async def _failures(self, kind: str, limit: int) -> dict[str, Any]:
        if self.deps.parent_program is None:
            raise ValueError("there is no current program whose failures could be shown; use indices")
        if self._report is None:  # one scoring per node run, whatever the number of calls
            ds = self.deps.transitions
            self._report = await evaluate(self.deps.sandbox, self.deps.parent_program, ds,
                                          limits=self.deps.limits, max_failures=len(ds))
        rep = self._report
        if rep.error is not None:
            return {"error": rep.error.to_json()}
        wrong = [f for f in rep.failures if kind in (f.get("mismatch") or [])]
        return {"kind": kind, "wrong": len(wrong), "of": rep.transitions,
                "failures": [{k: f.get(k) for k in ("index", "state", "action", "expected", "predicted",
                                                     "consistent", "traceback") if k in f}
                             for f in wrong[:limit]]}


class DescribeEnv:
    name = "describe_env"
    description = ("The environment's description (what the program must simulate) and a summary of the "
                   "training transitions: count, state and action shapes, reward values, episode ends.")
    schema: dict[str, Any] = {"type": "object", "properties": {}}  # noqa: RUF012

    def __init__(self, deps: ToolDeps) -> None:
        self.deps = deps

    async def __call__(self, **kwargs: Any) -> Any:
        ds = self.deps.transitions
        rewards = np.unique(ds.reward)
        return {"description": self.deps.description, "env_id": ds.env_id, "transitions": len(ds),
                "trajectories": ds.n_trajectories, "state_kind": ds.state_kind,
                "state_shape": list(ds.state.shape[1:]), "state_dtype": str(ds.state.dtype),
                "action_kind": ds.action_kind, "action_shape": list(ds.action.shape[1:]),
                "reward_values": rewards[:10].tolist() if len(rewards) <= 10 else None,
                "reward_range": [float(ds.reward.min()), float(ds.reward.max())] if len(ds) else None,
                "terminated": int(ds.terminated.sum()), "truncated": int(ds.truncated.sum())}
