"""The Code World Models Benchmark (CWMB) environments and how their ids map onto today's gymnasium.

The benchmark was recorded with gymnasium 0.29.1. gymnasium 1.x retired some of those versions; each
benchmark name below resolves to the id that exists now, with a note on whether the dynamics changed,
so that recorded transitions are never silently scored against a different simulator.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
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
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        if not kwargs:
            raise
        raise CwmError(f"{gym_id} does not accept --env-kwargs {json.dumps(kwargs, default=str)}: "
                       f"{type(exc).__name__}: {exc}".splitlines()[0],
                       hint="pass only arguments the environment's constructor takes, with valid values") from exc


# -- environment arguments (--env-kwargs) ---------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PY_LITERALS = {"True": True, "False": False, "None": None}


def _pair_value(text: str) -> Any:
    if text in _PY_LITERALS:
        return _PY_LITERALS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word is a string: map_name=8x8


def parse_env_kwargs(text: str) -> dict[str, Any]:
    """``--env-kwargs``: a JSON object, or ``key=value`` pairs separated by commas or spaces.

    Values of pairs are read as JSON (``true``, ``0.5``, ``[1, 2]``), Python's ``True``/``False``/``None``
    are accepted too, and anything else is a string. Raises ``CwmError`` naming what is wrong.
    """
    text = text.strip()
    hint = "pass a JSON object ('{\"is_slippery\": false}') or key=value pairs ('is_slippery=False,map_name=8x8')"
    if not text:
        raise CwmError("--env-kwargs is empty", hint=hint)
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CwmError(f"--env-kwargs is not valid JSON: {exc}", hint=hint) from exc
        if not isinstance(value, dict):
            raise CwmError("--env-kwargs must be a JSON object", hint=hint)
        out: dict[str, Any] = value
    else:
        out = {}
        for item in re.split(r"[,\s]+", text):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            if not sep:
                raise CwmError(f"--env-kwargs item {item!r} is not key=value", hint=hint)
            out[key.strip()] = _pair_value(raw.strip())
    for key in out:
        if not _KEY.match(key):
            raise CwmError(f"--env-kwargs key {key!r} is not a Python identifier", hint=hint)
    return out


def canonical_kwargs(kwargs: Any) -> str:
    """A comparable form of env kwargs (None and {} are the same; tuples and lists are the same)."""
    return json.dumps(kwargs or {}, sort_keys=True, default=str)


def dataset_mismatch(ds_env_id: str, ds_kwargs: Any, env_id: str, env_kwargs: dict[str, Any] | None) -> str | None:
    """Why a dataset recorded on ``ds_env_id`` (with ``ds_kwargs``) is not data of ``env_id``, or None."""
    def name(x: str) -> str:
        bench = benchmark_env(x)
        return bench.name if bench is not None else x

    if name(ds_env_id) != name(env_id):
        return f"the dataset was recorded on {ds_env_id}, not on {env_id}"
    if canonical_kwargs(ds_kwargs) != canonical_kwargs(env_kwargs):
        return (f"the dataset was recorded with env kwargs {canonical_kwargs(ds_kwargs)}, not "
                f"{canonical_kwargs(env_kwargs)}")
    return None


# -- random dynamics --------------------------------------------------------------------------------------

StochasticRule = Callable[[dict[str, Any]], "str | None"]


def _if(flag: str, default: bool, why: str) -> StochasticRule:
    return lambda kw: why if kw.get(flag, default) else None


STOCHASTIC_RULES: dict[str, StochasticRule] = {
    "Blackjack": lambda _kw: "every card is drawn at random from an infinite deck (with replacement)",
    "FrozenLake": _if("is_slippery", True, "the ice is slippery: the agent moves in the chosen direction or in "
                      "one of the two perpendicular directions, each with probability 1/3"),
    "CliffWalking": _if("is_slippery", False, "the ground is slippery: the agent may move in a direction "
                        "perpendicular to the chosen one"),
    "Taxi": lambda kw: ("rain may push the taxi sideways and a fickle passenger may change destination"
                        if kw.get("is_rainy") or kw.get("fickle_passenger") else None),
}
"""Environment family (the id before ``-v``) -> why its dynamics are random under these kwargs, or None."""


def stochasticity(env_id: str, env_kwargs: dict[str, Any] | None = None) -> str | None:
    """Why ``env_id`` (with ``env_kwargs``) has random dynamics, or None when a state and action determine
    the next state, reward and end."""
    bench = benchmark_env(env_id)
    gym_id = bench.gym_id if bench is not None else env_id
    rule = STOCHASTIC_RULES.get(gym_id.split("/")[-1].split("-v")[0])
    return rule(env_kwargs or {}) if rule is not None else None
