"""The Code World Models Benchmark (CWMB) environments and how their ids map onto today's gymnasium.

The benchmark was recorded with gymnasium 0.29.1. gymnasium 1.x retired some of those versions; each
benchmark name below resolves to the id that exists now, with a note on whether the dynamics changed,
so that recorded transitions are never silently scored against a different simulator.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from cwm.errors import CwmError

ActionKind = Literal["discrete", "continuous"]


@dataclass(frozen=True)
class BenchmarkEnv:
    """One CWMB environment."""

    name: str
    """The benchmark's name, as the paper and its datasets use it."""
    gym_id: str
    """The gymnasium id to instantiate today."""
    actions: ActionKind
    """Decides the planner: MCTS for discrete actions, CEM for continuous ones."""
    needs: str | None = None
    """Optional extra of cwm needed to instantiate it (``mujoco``), if any."""
    dynamics_note: str = "same id, same dynamics"
    """What changed between the recorded version and ``gym_id``."""
    state_from_observation: bool = True
    """Whether a recorded observation determines the simulator state (a perfect model is possible)."""


_CLASSIC = "classic control; same id, same dynamics"
_MUJOCO_V4 = "MuJoCo v4, same id; gymnasium 1.x warns that v4 is out of date (kept for comparability)"

BENCHMARK: tuple[BenchmarkEnv, ...] = (
    BenchmarkEnv("Blackjack-v1", "Blackjack-v1", "discrete", dynamics_note="toy text; same id, same dynamics",
                 state_from_observation=False),
    BenchmarkEnv("CliffWalking-v0", "CliffWalking-v1", "discrete",
                 dynamics_note="renamed in gymnasium 1.x; v1 only adds an opt-in slippery mode (off by default), "
                 "so the default dynamics are those of v0 (checked by replaying every recorded transition)"),
    BenchmarkEnv("Taxi-v3", "Taxi-v4", "discrete",
                 dynamics_note="renamed in gymnasium 1.3; v4 only fixes the opt-in rainy and fickle-passenger "
                 "modes (off by default), so the default dynamics are those of v3 (checked by replay)"),
    BenchmarkEnv("CartPole-v1", "CartPole-v1", "discrete", dynamics_note=_CLASSIC),
    BenchmarkEnv("MountainCar-v0", "MountainCar-v0", "discrete", dynamics_note=_CLASSIC),
    BenchmarkEnv("Acrobot-v1", "Acrobot-v1", "discrete", dynamics_note=_CLASSIC),
    BenchmarkEnv("Pendulum-v1", "Pendulum-v1", "continuous", dynamics_note=_CLASSIC),
    BenchmarkEnv("Reacher-v4", "Reacher-v4", "continuous", "mujoco", _MUJOCO_V4),
    BenchmarkEnv("Pusher-v4", "Pusher-v5", "continuous", "mujoco",
                 "Pusher-v4 only runs on mujoco<3; Pusher-v5 raises the object's density above air's and "
                 "computes the distance rewards after the physics step, so v5 dynamics DIFFER from the "
                 "recorded v4 data (install mujoco<3 and pass --env Pusher-v4 for exact v4 dynamics)",
                 state_from_observation=False),
    BenchmarkEnv("InvertedPendulum-v4", "InvertedPendulum-v4", "continuous", "mujoco", _MUJOCO_V4),
    BenchmarkEnv("InvertedDoublePendulum-v4", "InvertedDoublePendulum-v4", "continuous", "mujoco", _MUJOCO_V4,
                 state_from_observation=False),
    BenchmarkEnv("HalfCheetah-v4", "HalfCheetah-v4", "continuous", "mujoco", _MUJOCO_V4,
                 state_from_observation=False),
    BenchmarkEnv("Hopper-v4", "Hopper-v4", "continuous", "mujoco", _MUJOCO_V4, state_from_observation=False),
    BenchmarkEnv("Swimmer-v4", "Swimmer-v4", "continuous", "mujoco", _MUJOCO_V4, state_from_observation=False),
    BenchmarkEnv("Walker2d-v4", "Walker2d-v4", "continuous", "mujoco", _MUJOCO_V4,
                 state_from_observation=False),
    BenchmarkEnv("Ant-v4", "Ant-v4", "continuous", "mujoco", _MUJOCO_V4, state_from_observation=False),
    BenchmarkEnv("Humanoid-v4", "Humanoid-v4", "continuous", "mujoco", _MUJOCO_V4,
                 state_from_observation=False),
    BenchmarkEnv("HumanoidStandup-v4", "HumanoidStandup-v4", "continuous", "mujoco", _MUJOCO_V4,
                 state_from_observation=False),
)

_BY_NAME = {env.name.lower(): env for env in BENCHMARK}
_BY_GYM_ID = {env.gym_id.lower(): env for env in BENCHMARK}


def benchmark_env(name: str) -> BenchmarkEnv | None:
    """The benchmark entry for a benchmark name or its current gymnasium id, else None."""
    key = name.lower()
    return _BY_NAME.get(key) or _BY_GYM_ID.get(key)


def resolve_gym_id(env_id: str) -> str:
    """The gymnasium id to instantiate for ``env_id`` (a benchmark name or any registered id).

    Raises a ``CwmError`` naming the closest known ids when ``env_id`` is neither.
    """
    bench = benchmark_env(env_id)
    if bench is not None:
        return bench.gym_id
    import gymnasium as gym

    if env_id in gym.registry:
        return env_id
    known = sorted({*(e.name for e in BENCHMARK), *gym.registry.keys()})
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "run `cwm envs` to list the benchmark environments"
    raise CwmError(f"unknown environment {env_id!r}: not a CWMB name nor a registered gymnasium id", hint=hint)


def make_env(env_id: str, **kwargs: Any) -> Any:
    """Instantiate ``env_id`` with gymnasium, turning missing extras into an actionable error."""
    import gymnasium as gym

    gym_id = resolve_gym_id(env_id)
    bench = benchmark_env(env_id)
    try:
        return gym.make(gym_id, **kwargs)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        extra = bench.needs if bench is not None and bench.needs else None
        hint = f"install it with: pip install 'cwm[{extra}]'" if extra else "install the package it names"
        raise CwmError(f"cannot create {gym_id}: {exc}".splitlines()[0], hint=hint) from exc
