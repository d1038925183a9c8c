"""Planners are registered, not branched on: a new one plans by name; the built-ins keep their cache keys."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cwm.errors import CwmError
from cwm.planning.agent import PlanConfig, plan
from cwm.planning.planners import PLANNERS, PlannerSpec, planner_for, register_planner


class FirstAction:
    """Always the first action: a planner that ignores its model, so its returns are known."""

    def reset(self, seed: int) -> None:
        self.calls = 0

    async def act(self, model: Any, state: Any, remaining: int) -> int:
        return 0


@pytest.fixture
def first_action() -> Any:
    spec = register_planner(PlannerSpec("first-action", lambda space: hasattr(space, "n"),
                                        lambda space, cfg: FirstAction(), lambda cfg: {"kind": "first"}))
    yield spec
    PLANNERS.pop(spec.name)


async def test_a_registered_planner_acts_by_name(first_action: Any, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path))
    out = await plan(PlanConfig(env="CartPole-v1", model="oracle", episodes=2, planner="first-action"))
    assert out["planner"] == "first-action" and out["planner_config"] == {"kind": "first"}
    # pushing left every step topples CartPole within a few steps, whatever the seed
    assert all(length < 15 for length in out["lengths"]) and out["returns"] == [float(n) for n in out["lengths"]]


def test_default_choice_follows_the_action_space() -> None:
    import gymnasium as gym

    assert planner_for(gym.spaces.Discrete(3)).name == "mcts"
    assert planner_for(gym.spaces.Box(-1, 1, (2,), np.float32)).name == "cem"
    with pytest.raises(CwmError, match="cannot act"):
        planner_for(gym.spaces.Box(-1, 1, (2,), np.float32), "mcts")
    with pytest.raises(CwmError, match="unknown planner"):
        planner_for(gym.spaces.Discrete(3), "nope")


@pytest.mark.parametrize("discrete", [True, False])
def test_builtin_baseline_keys_are_what_they_were(discrete: bool) -> None:
    cfg = PlanConfig(env="CartPole-v1" if discrete else "Pendulum-v1", episodes=10, seed=0)
    key = cfg.planner_key(discrete)
    # the key cached oracle baselines were stored under before planners became registrations
    expected = {"env": cfg.env, "planner": "mcts" if discrete else "cem", "episodes": 10, "seed": 0,
                "max_steps": None}
    assert {k: key[k] for k in expected} == expected
    from dataclasses import asdict

    from cwm.planning.cem import PRESETS
    from cwm.planning.mcts import MCTSConfig

    assert key["config"] == (asdict(MCTSConfig(simulations=25)) if discrete else asdict(PRESETS["mpc"]))
    assert set(key) == set(expected) | {"config"}
