"""The planner agent: act in the real environment with a Code World Model, or with the baselines.

``model`` is a program (file or run directory), ``"oracle"`` (the same planner on the true simulator,
exact snapshots) or ``"random"`` (uniform actions). Episodes are seeded (episode e resets with seed + e)
and last until the environment ends them or its time limit (100 steps where it has none, as in the
paper). Normalized return = (R_model − R_random) / (R_oracle − R_random), from baselines cached per
environment and planner configuration (``~/.cache/cwm/baselines``); it is undefined (None) without both
baselines or when the oracle does no better than random.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cwm.agents.llm.cache import cache_root
from cwm.envs.registry import benchmark_env, make_env
from cwm.errors import CwmError
from cwm.planning.cem import CEMConfig
from cwm.planning.models import ModelFailed, PlanningModel, ProgramModel, TrueModel
from cwm.planning.planners import PLANNERS, planner_for
from cwm.sandbox.worker import IOSpec, Limits, Sandbox, SandboxConfig


@dataclass(frozen=True)
class PlanConfig:
    env: str
    model: str = "oracle"
    episodes: int = 10
    seed: int = 0
    cem: str = "mpc"
    simulations: int = 25
    max_steps: int | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments the environment is made with (--env-kwargs); part of the baselines' cache key when set."""
    planner: str | None = None
    """A registered planner's name (``cwm.planning.planners``); None: the first that fits the action space."""

    def planner_key(self, discrete: bool) -> dict[str, Any]:
        name = self.planner or ("mcts" if discrete else "cem")
        spec = PLANNERS.get(name)
        if spec is None:
            raise CwmError(f"unknown planner {name!r}", hint=f"choose one of {', '.join(PLANNERS)}")
        return {"env": self.env, "planner": name, "config": spec.config(self),
                "episodes": self.episodes, "seed": self.seed, "max_steps": self.max_steps,
                **({"env_kwargs": self.env_kwargs} if self.env_kwargs else {})}


def baseline_dir() -> Path:
    return cache_root() / "baselines"


def _baseline_file(cfg: PlanConfig, discrete: bool, which: str) -> Path:
    # the random policy does not depend on the planner: key it by env, episodes, seed and length only
    key: Any = [cfg.env, cfg.episodes, cfg.seed, cfg.max_steps] + ([cfg.env_kwargs] if cfg.env_kwargs else []) \
        if which == "random" else cfg.planner_key(discrete)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    bench = benchmark_env(cfg.env)
    name = (bench.name if bench is not None else cfg.env).replace("/", "_")
    return baseline_dir() / f"{name}-{which}-{digest}.json"


def normalized_return(r_model: float, r_random: float | None, r_oracle: float | None) -> float | None:
    """(R_model − R_random) / (R_oracle − R_random), or None where that ratio means nothing.

    The paper reads 𝓡 > 0 as "better than random" and 𝓡 = 1 as "matches the oracle"; both readings need
    R_oracle > R_random. It marks the equal case N/A (MountainCar, Acrobot). An oracle *worse* than random
    would flip the sign (a model scoring below random would get a positive 𝓡), so that case is None too.
    """
    if r_random is None or r_oracle is None or r_oracle <= r_random or math.isclose(r_oracle, r_random,
                                                                                      abs_tol=1e-9):
        return None
    return (r_model - r_random) / (r_oracle - r_random)


def resolve_program(model: str) -> Path:
    path = Path(model)
    if path.is_dir():
        path = path / "best_program.py"
        if not path.is_file():
            raise CwmError(f"run directory {model!r} has no best_program.py", hint="the search produced no program")
    if not path.is_file():
        raise CwmError(f"model {model!r} is neither a program file, a run directory, 'oracle' nor 'random'")
    return path


def env_io_spec(env: Any) -> tuple[IOSpec, int | None]:
    """How the sandbox rebuilds this environment's states and actions, and its number of discrete actions."""
    from cwm.envs.collect import space_kinds

    state_kind, dtype, action_kind = space_kinds(env)
    n = int(env.action_space.n) if action_kind == "int" else None
    return IOSpec(state_kind, str(np.dtype(dtype)), action_kind, "int64" if action_kind == "int" else "float64"), n


async def _check_batch(model: ProgramModel, env: Any, seed: int) -> bool:
    """Use step_batch only where it agrees with step on real states (20 random transitions)."""
    items = []
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(20):
        a = env.action_space.sample()
        items.append((np.asarray(obs).tolist(), np.asarray(a).tolist()))
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    out = await model._call({"op": "check_batch", "items": items})
    diff = out.get("max_diff")
    return isinstance(diff, (int, float)) and diff <= 1e-6


async def plan(cfg: PlanConfig, *, code: str | None = None, sandbox: Sandbox | None = None,
               progress: Callable[[int, int, int, float], None] | None = None) -> dict[str, Any]:
    """Run the episodes; returns returns, mean, std, normalized return and timing."""
    env: Any = make_env(cfg.env, **cfg.env_kwargs)
    discrete = hasattr(env.action_space, "n")
    max_steps = cfg.max_steps or (env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 100)
    spec = planner_for(env.action_space, cfg.planner)
    spec.config(cfg)  # refuses unknown settings (a CEM preset) before anything runs
    planner = spec.build(env.action_space, cfg)
    model: PlanningModel | None = None
    own_sandbox = None
    session = None
    kind = cfg.model if cfg.model in ("oracle", "random") and code is None else "program"
    use_batch = False
    try:
        if kind == "oracle":
            model = TrueModel(env, cfg.seed)
        elif kind == "program":
            if code is None:
                code = resolve_program(cfg.model).read_text(encoding="utf-8")
            if sandbox is None:
                own_sandbox = sandbox = Sandbox(SandboxConfig(limits=Limits()))
                await sandbox.start()
            io, n = env_io_spec(env)
            session, loaded = await sandbox.load(code, io)
            if not loaded.ok:
                assert loaded.error is not None
                raise ModelFailed(loaded.error)
            pm = ProgramModel(session, n)
            if loaded.has_step_batch and not discrete:
                pm.use_batch = use_batch = await _check_batch(pm, make_env(cfg.env, **cfg.env_kwargs), cfg.seed)
            model = pm
        returns: list[float] = []
        lengths: list[int] = []
        t0 = time.perf_counter()
        for ep in range(cfg.episodes):
            seed = cfg.seed + ep
            obs, _ = env.reset(seed=seed)
            env.action_space.seed(seed)
            planner.reset(seed)
            if isinstance(model, TrueModel):
                model.reset_episode(seed)
            total, steps = 0.0, 0
            for t in range(max_steps):
                if model is None:
                    action = env.action_space.sample()
                else:
                    action = await planner.act(model, model.root(env, obs), max_steps - t)
                obs, r, term, trunc, _ = env.step(action)
                if isinstance(model, TrueModel):
                    model.record(action)
                total += float(r)
                steps += 1
                if progress is not None:
                    progress(ep, cfg.episodes, t + 1, total)
                if term or trunc:
                    break
            returns.append(total)
            lengths.append(steps)
        elapsed = time.perf_counter() - t0
    finally:
        if session is not None:
            await session.close()
        if own_sandbox is not None:
            await own_sandbox.close()
        env.close()
    result: dict[str, Any] = {
        "env": cfg.env, "model": kind if kind != "program" else cfg.model, "planner": spec.name,
        "planner_config": cfg.planner_key(discrete)["config"], "episodes": cfg.episodes, "seed": cfg.seed,
        "returns": returns, "lengths": lengths, "mean_return": statistics.fmean(returns),
        "std_return": statistics.pstdev(returns) if len(returns) > 1 else 0.0, "elapsed_s": round(elapsed, 3),
        "model_steps": getattr(model, "steps", 0), "step_batch": use_batch,
    }
    if kind in ("oracle", "random"):
        path = _baseline_file(cfg, discrete, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result), encoding="utf-8")
    baselines = {}
    for which in ("random", "oracle"):
        path = _baseline_file(cfg, discrete, which)
        if path.is_file():
            baselines[which] = float(json.loads(path.read_text(encoding="utf-8"))["mean_return"])
    result["random_return"] = baselines.get("random")
    result["oracle_return"] = baselines.get("oracle")
    result["normalized_return"] = normalized_return(result["mean_return"], baselines.get("random"),
                                                    baselines.get("oracle"))
    return result


def split_report(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Normalized returns per environment and their mean per split (discrete, continuous), as in the paper.

    Environments whose normalized return is undefined (no baselines, or oracle = random) are listed but
    left out of the split means, as the paper leaves out MountainCar and Acrobot."""
    per_env = {r["env"]: r.get("normalized_return") for r in results}
    splits: dict[str, list[float]] = {"discrete": [], "continuous": []}
    for r in results:
        if r.get("normalized_return") is not None:
            splits["discrete" if r.get("planner") == "mcts" else "continuous"].append(float(r["normalized_return"]))
    return {"per_env": per_env,
            "split_mean": {k: (statistics.fmean(v) if v else None) for k, v in splits.items()},
            "split_count": {k: len(v) for k, v in splits.items()}}


__all__ = ["CEMConfig", "PlanConfig", "normalized_return", "plan", "split_report"]
