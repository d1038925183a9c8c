"""What a planner plans with: a Code World Model in the sandbox, or the true environment (the oracle).

Both expose the same three calls on opaque state handles:
``simulate(state, action, depth, discount, seed)`` — one step then a random rollout (MCTS),
``rollouts(state, plans)`` — the return of each action sequence (CEM),
``root(env)`` — the handle of the real environment's current state.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cwm.envs.snapshot import Snapshotter
from cwm.sandbox.worker import ProgramError, ProgramSession, SessionFailed


class PlanningModel(Protocol):
    async def simulate(self, state: Any, action: int, depth: int, discount: float,
                       seed: int) -> tuple[Any, float, bool, float]: ...

    async def rollouts(self, state: Any, plans: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]: ...

    def root(self, env: Any, obs: Any) -> Any: ...


class ModelFailed(Exception):
    """The Code World Model broke during planning (classified like any sandbox error)."""

    def __init__(self, error: ProgramError) -> None:
        super().__init__(f"{error.kind}: {error.message}")
        self.error = error


def _finite(x: Any, default: float) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return default
    return float(x)


@dataclass
class ProgramModel:
    """A Code World Model running in its sandbox session; states are the model's own predictions."""

    session: ProgramSession
    n_actions: int | None
    use_batch: bool = False
    timeout: float = 600.0
    steps: int = 0

    async def _call(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            answers = await self.session.step_many_raw(payload, timeout=self.timeout)
        except SessionFailed as exc:
            raise ModelFailed(exc.error) from exc
        err = answers.get("error")
        if isinstance(err, dict):
            raise ModelFailed(ProgramError(str(err.get("kind", "runtime")), str(err.get("message", ""))[:2000],
                                           err.get("traceback") if isinstance(err.get("traceback"), str) else None))
        return answers

    def root(self, env: Any, obs: Any) -> Any:
        return np.asarray(obs).tolist()

    async def simulate(self, state: Any, action: int, depth: int, discount: float,
                       seed: int) -> tuple[Any, float, bool, float]:
        out = await self._call({"op": "simulate", "state": state, "action": int(action), "depth": depth,
                                "discount": discount, "seed": seed, "n_actions": self.n_actions})
        self.steps += 1 + depth
        flat, shape = out.get("s"), out.get("shape")
        if not isinstance(flat, list) or not isinstance(shape, list):
            raise ModelFailed(ProgramError("protocol", "the model returned a malformed state"))
        nxt: Any = np.asarray(flat, dtype=np.float64).reshape(shape).tolist() if shape else flat[0]
        return nxt, _finite(out.get("r"), -1e9), bool(out.get("d")), _finite(out.get("v"), -1e9)

    async def rollouts(self, state: Any, plans: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = await self._call({"op": "rollouts", "state": state, "plans": plans.tolist(),
                                "use_batch": self.use_batch})
        rets = out.get("returns")
        if not isinstance(rets, list) or len(rets) != len(plans):
            raise ModelFailed(ProgramError("protocol", "the model returned a malformed rollout result"))
        self.steps += plans.shape[0] * plans.shape[1]
        return np.array([_finite(r, -1e18) for r in rets])


class TrueModel:
    """Planning on the real simulator: exact snapshots, or replaying seed + actions where none exist."""

    def __init__(self, env: Any, seed: int) -> None:
        self.env = env
        self.u = env.unwrapped
        self.snap = Snapshotter(self.u)
        self.seed = seed
        self.prefix: list[Any] = []
        self.steps = 0

    def root(self, env: Any, obs: Any) -> Any:
        if self.snap.supported:
            return ("snap", self.snap.save())
        return ("replay", list(self.prefix))

    def record(self, action: Any) -> None:
        """The real episode took ``action`` (needed to rebuild states by replay)."""
        self.prefix.append(action)

    def reset_episode(self, seed: int) -> None:
        self.seed = seed
        self.prefix = []

    def _restore(self, state: Any) -> None:
        kind, data = state
        if kind == "snap":
            self.snap.restore(data)
            return
        self.u.reset(seed=self.seed)
        for a in data:
            self.u.step(a)

    def _save(self, state: Any, action: Any) -> Any:
        if state[0] == "snap":
            return ("snap", self.snap.save())
        return ("replay", [*state[1], action])

    async def simulate(self, state: Any, action: int, depth: int, discount: float,
                       seed: int) -> tuple[Any, float, bool, float]:
        live = self.snap.save() if self.snap.supported else None
        self._restore(state)
        _, r, term, _, _ = self.u.step(action)
        nxt = self._save(state, action)
        rng = random.Random(seed)
        value, g, done = 0.0, 1.0, bool(term)
        n = int(self.u.action_space.n)
        steps = 1
        if not done:
            for _ in range(depth):
                _, rr, tt, _, _ = self.u.step(rng.randrange(n))
                value += g * float(rr)
                g *= discount
                steps += 1
                if tt:
                    break
        self.steps += steps
        if live is not None:
            self.snap.restore(live)
        return nxt, float(r), bool(term), value

    async def rollouts(self, state: Any, plans: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        live = self.snap.save() if self.snap.supported else None
        out = np.empty(len(plans))
        for i, plan in enumerate(plans):
            self._restore(state)
            total = 0.0
            for a in plan:
                _, r, term, _, _ = self.u.step(a)
                total += float(r)
                self.steps += 1
                if term:
                    break
            out[i] = total
        if live is not None:
            self.snap.restore(live)
        return out

