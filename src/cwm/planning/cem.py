"""The cross-entropy method for continuous actions.

Two presets. ``paper`` is the paper's planner (App. L; official ``cem.py``): horizon 100, 20 iterations
of 1000 Gaussian plans (mean at the box's centre, std half the largest bound), 100 elites, the best plan
of the last iteration executed open loop and replanned only when it runs out. ``mpc`` (the default)
replans at every step over a 30-step horizon with 5 iterations of 200 plans and 20 elites, warm-started
from the previous mean shifted by one step, and executes the mean's first action. It spends about as
many model steps per episode as ``paper`` (30 k per step vs 2 M per 100 steps) but reacts to where the
real environment actually went, which open-loop execution of a 100-step plan cannot; receding-horizon
CEM is the standard remedy for model error compounding (research notes: ecosystem.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cwm.planning.models import PlanningModel


@dataclass(frozen=True)
class CEMConfig:
    horizon: int = 30
    iterations: int = 5
    samples: int = 200
    elites: int = 20
    replan_every: int = 1
    execute: Literal["best", "mean"] = "mean"
    warm_start: bool = True


PRESETS: dict[str, CEMConfig] = {
    "mpc": CEMConfig(),
    "paper": CEMConfig(horizon=100, iterations=20, samples=1000, elites=100, replan_every=100, execute="best",
                       warm_start=False),
}


class CEMPlanner:
    def __init__(self, low: np.ndarray[Any, Any], high: np.ndarray[Any, Any], config: CEMConfig | None = None,
                 seed: int = 0) -> None:
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.config = config or CEMConfig()
        self.rng = np.random.default_rng(seed)
        self.queue: list[np.ndarray[Any, Any]] = []
        self.mu: np.ndarray[Any, Any] | None = None

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.queue = []
        self.mu = None

    async def act(self, model: PlanningModel, state: Any, remaining: int) -> np.ndarray[Any, Any]:
        c = self.config
        if self.queue:
            return self.queue.pop(0)
        horizon = max(1, min(c.horizon, remaining))
        dim = self.low.shape[0]
        mu = np.tile((self.low + self.high) / 2, (horizon, 1))
        if c.warm_start and self.mu is not None:
            shifted = self.mu[1:horizon + 1]
            mu[: len(shifted)] = shifted
        sigma = np.tile(np.maximum(np.abs(self.low), np.abs(self.high)) / 2, (horizon, 1))
        best = mu
        for _ in range(c.iterations):
            plans = np.clip(self.rng.normal(mu, sigma, size=(c.samples, horizon, dim)), self.low, self.high)
            returns = await model.rollouts(state, plans)
            order = np.argsort(returns)
            elite = plans[order[-c.elites:]]
            mu, sigma = elite.mean(axis=0), elite.std(axis=0)
            best = plans[order[-1]]
        self.mu = mu
        plan = best if c.execute == "best" else np.clip(mu, self.low, self.high)
        steps = min(c.replan_every, horizon)
        self.queue = [plan[t] for t in range(1, steps)]
        first: np.ndarray[Any, Any] = plan[0]
        return first
