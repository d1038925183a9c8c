"""The official code's own oracle planner (Dainese et al. 2024), run here beside ours on the same episodes.

    python benchmarks/official_oracle.py [--src /tmp/official] [--envs CartPole-v1] [--episodes 10]
        [--seed 0] [--unseeded] [--json]

``--src`` is an extracted copy of the public repository nicoladainese96/code-world-models (the folder that
holds ``src/``; also read from ``CWM_OFFICIAL_SRC``). Without it the script prints why and exits 0.

What runs is their ``src/environments/planning.py:test_MCTS`` with their ``StochasticMCTS``
(``src/mcts/mcts.py``) on ``GymSimulatorValidActions(gym.make(env))`` — exactly their
``eval_cwm_planning.py --eval_real True`` path, with its settings (25 simulations, max_actions 100,
ucb_c 1, discount 0.99, T 0.01). Two things are supplied from here, neither touching the planner:

* their package ``__init__`` files import the LLM stack; the planner modules are loaded one by one
  under their own package names instead;
* ``torch`` (only ``softmax``/``multinomial``/``argmax``/``ones``/``zeros`` on a vector of Q values)
  and ``mloggers`` (debug logging) are replaced by small numpy stand-ins when not installed.

Their episodes are unseeded (``real_env.reset()``); by default each episode e here resets with seed + e,
as ours do, through a one-attribute wrapper, so both planners start from the same states. ``--unseeded``
runs their loop as written instead. numpy's global RNG (their tie-breaks, rollouts and action draws) is
seeded with the episode's seed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

MCTS_PARAMS = {"ucb_c": 1.0, "discount": 0.99, "max_actions": 100}
SIMULATIONS = 25
TEMPERATURE = 0.01


class _Tensor:
    """Just enough of a torch tensor for ``StochasticStateNode.softmax_Q`` / ``get_Q_values``."""

    def __init__(self, a: Any, dtype: Any = np.float64) -> None:
        self.a = np.asarray(a, dtype=dtype)

    def __neg__(self) -> _Tensor:
        return _Tensor(-self.a)

    def __mul__(self, o: Any) -> _Tensor:
        return _Tensor(self.a * (o.a if isinstance(o, _Tensor) else o))

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> _Tensor:
        return _Tensor(self.a / (o.a if isinstance(o, _Tensor) else o))

    def __setitem__(self, k: Any, v: Any) -> None:
        self.a[k] = v.a if isinstance(v, _Tensor) else v

    def item(self) -> Any:
        return self.a.item()

    def cpu(self) -> _Tensor:
        return self

    def numpy(self) -> Any:
        return self.a


def _softmax(t: _Tensor, dim: int = 0) -> _Tensor:
    e = np.exp(t.a - np.max(t.a))
    return _Tensor(e / e.sum())


def _multinomial(p: _Tensor, n: int) -> _Tensor:
    q = p.a / p.a.sum()
    return _Tensor([np.random.choice(len(q), p=q)], dtype=np.int64)  # torch returns a LongTensor


def _install_stand_ins() -> list[str]:
    """numpy stand-ins for torch and mloggers where they are not installed; returns what was replaced."""
    replaced = []
    try:
        import torch  # noqa: F401
    except ImportError:
        torch_mod = types.ModuleType("torch")
        functional = types.ModuleType("torch.nn.functional")
        nn = types.ModuleType("torch.nn")
        functional.softmax = _softmax  # type: ignore[attr-defined]
        nn.functional = functional  # type: ignore[attr-defined]
        torch_mod.nn = nn  # type: ignore[attr-defined]
        torch_mod.ones = lambda n: _Tensor(np.ones(n))  # type: ignore[attr-defined]
        torch_mod.zeros = lambda n: _Tensor(np.zeros(n))  # type: ignore[attr-defined]
        torch_mod.argmax = lambda t: int(np.argmax(t.a))  # type: ignore[attr-defined]
        torch_mod.multinomial = _multinomial  # type: ignore[attr-defined]
        sys.modules.update({"torch": torch_mod, "torch.nn": nn, "torch.nn.functional": functional})
        replaced.append("torch")
    try:
        import mloggers  # noqa: F401
    except ImportError:
        logs = types.ModuleType("mloggers")

        class ConsoleLogger:
            def __init__(self, *a: Any, **k: Any) -> None:
                pass

            def __getattr__(self, name: str) -> Any:
                return lambda *a, **k: None

        logs.ConsoleLogger = ConsoleLogger  # type: ignore[attr-defined]
        logs.LogLevel = types.SimpleNamespace(WARN=30, INFO=20, DEBUG=10, ERROR=40)  # type: ignore[attr-defined]
        sys.modules["mloggers"] = logs
        replaced.append("mloggers")
    return replaced


def _load(root: Path, name: str) -> types.ModuleType:
    path = root / (name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_official(root: Path) -> types.ModuleType:
    """Their planning module, with its imports satisfied by their planner modules only."""
    for pkg in ("src", "src.mcts", "src.environments", "src.cem"):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / pkg.replace(".", "/"))]
        sys.modules[pkg] = mod
    for pkg, names in (("src.mcts", ("mcts", "mcts_cwm")), ("src.environments", ("simulator", "cwm_simulator")),
                       ("src.cem", ("cem", "cem_cwm"))):
        for n in names:
            sub = _load(root, f"{pkg}.{n}")
            for k, v in vars(sub).items():
                if not k.startswith("_"):
                    setattr(sys.modules[pkg], k, v)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # it prints its root on import
        return _load(root, "src.environments.planning")


class SeededReset(gym.Wrapper):  # type: ignore[type-arg]
    """``reset()`` with a fixed seed, so their unseeded loop starts where ours does."""

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env)
        self.reset_seed = seed
        # test_MCTS reads the time limit with hasattr(real_env, '_max_episode_steps'), which a wrapper
        # does not forward (private name): without this the episode would stop at its 100-step default
        if hasattr(env, "_max_episode_steps"):  # envs without a TimeLimit keep test_MCTS's 100-step default
            self._max_episode_steps = env._max_episode_steps

    def reset(self, **kwargs: Any) -> Any:
        kwargs.setdefault("seed", self.reset_seed)
        return self.env.reset(**kwargs)


def run_env(planning: types.ModuleType, env_id: str, episodes: int, seed: int, unseeded: bool) -> dict[str, Any]:
    sim_cls = planning.GymSimulatorValidActions
    returns: list[float] = []
    walls: list[float] = []
    t0 = time.perf_counter()
    if unseeded:
        np.random.seed(seed)
        env = gym.make(env_id)
        sim = sim_cls(env, np.arange(env.action_space.n))
        returns = [float(r) for r in planning.test_MCTS(env, sim, dict(MCTS_PARAMS), TEMPERATURE, SIMULATIONS,
                                                        n_episodes=episodes)]
    else:
        for ep in range(episodes):
            s = seed + ep
            np.random.seed(s)
            env = SeededReset(gym.make(env_id), s)
            sim = sim_cls(env, np.arange(env.action_space.n))
            t1 = time.perf_counter()
            returns += [float(r) for r in planning.test_MCTS(env, sim, dict(MCTS_PARAMS), TEMPERATURE,
                                                             SIMULATIONS, n_episodes=1)]
            walls.append(time.perf_counter() - t1)
            print(f"  seed {s}: {returns[-1]:.1f} in {walls[-1]:.0f} s", file=sys.stderr, flush=True)
    return {"env": env_id, "returns": returns, "mean_return": statistics.fmean(returns),
            "stderr": statistics.stdev(returns) / len(returns) ** 0.5 if len(returns) > 1 else 0.0,
            "episode_s": [round(w, 1) for w in walls], "elapsed_s": round(time.perf_counter() - t0, 1),
            "seeded": not unseeded, "seed": seed, "gymnasium": gym.__version__, "numpy": np.__version__}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.environ.get("CWM_OFFICIAL_SRC", "/tmp/official"))
    ap.add_argument("--envs", default="CartPole-v1")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unseeded", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    root = Path(a.src)
    if not (root / "src" / "mcts" / "mcts.py").is_file():
        print(f"skipped: the official code is not at {root} (extract the repository nicoladainese96/"
              "code-world-models there, or pass --src / set CWM_OFFICIAL_SRC)")
        return 0
    replaced = _install_stand_ins()
    sys.path.insert(0, str(root))
    planning = load_official(root)
    print(f"official planner from {root}; numpy stand-ins for: {', '.join(replaced) or 'nothing'}; "
          f"gymnasium {gym.__version__}, numpy {np.__version__}", flush=True)
    rows = []
    for env_id in a.envs.split(","):
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # their loop prints every step
            row = run_env(planning, env_id, a.episodes, a.seed, a.unseeded)
        rows.append(row)
        if a.json:
            print(json.dumps(row), flush=True)
        else:
            eps = "unseeded" if a.unseeded else f"seeds {a.seed}-{a.seed + a.episodes - 1}"
            print(f"{env_id}: official oracle {row['mean_return']:.1f} ± {row['stderr']:.1f} (s.e.), {eps}, "
                  f"returns {row['returns']}, {row['elapsed_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
