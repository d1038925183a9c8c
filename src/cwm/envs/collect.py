"""Recording datasets: the paper's protocol for any gymnasium environment.

Ten trajectories of at most 100 steps, acted by policies that range from random to competent so the
data covers both typical and rare transitions (paper App. F; official code ``collect_gym_traj.py``):

* continuous actions: trajectory k plans with the cross-entropy method on exact snapshots of the real
  env, with an iteration budget from ``CEM_ITERATIONS`` (1 iteration is close to random, 25 is good),
  horizon 100, 1000 samples, 100 elites, the plan executed open loop as in the official collector;
* discrete actions: trajectory k acts with epsilon = 1 - k/(n-1) randomly and otherwise picks the
  action whose random-rollout return on a snapshot of the real env is highest.

Environments that cannot be snapshotted (Box2D) fall back to random actions, with a warning.
Terminations and truncations (time limits) are recorded separately.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from cwm.envs.dataset import Dataset
from cwm.envs.registry import benchmark_env, make_env, resolve_gym_id
from cwm.envs.snapshot import Snapshotter
from cwm.errors import CwmError

log = structlog.get_logger("cwm.collect")

CEM_ITERATIONS = (1, 2, 3, 4, 5, 8, 12, 16, 20, 25)


@dataclass(frozen=True)
class CollectConfig:
    trajectories: int = 10
    max_steps: int = 100
    seed: int = 0
    policy: str = "spread"  # or "random"
    cem_horizon: int = 100
    cem_samples: int = 1000
    cem_elites: int = 100
    lookahead_depth: int = 20
    lookahead_rollouts: int = 2


def space_kinds(env: Any) -> tuple[str, Any, str]:
    """(state kind, state dtype, action kind) of an env's spaces, as cwm datasets and the sandbox use them."""
    from gymnasium import spaces

    dtype: Any

    obs = env.observation_space
    if isinstance(obs, spaces.Discrete):
        state_kind, dtype = "int", np.int64
    elif isinstance(obs, spaces.Tuple) and all(isinstance(s, spaces.Discrete) for s in obs.spaces):
        state_kind, dtype = "tuple", np.int64
    elif isinstance(obs, spaces.Box):
        state_kind, dtype = "array", obs.dtype
    else:
        raise CwmError(f"unsupported observation space {obs}",
                       hint="cwm datasets hold Box arrays, Discrete ints or tuples of Discrete ints")
    act = env.action_space
    if isinstance(act, spaces.Discrete):
        return state_kind, dtype, "int"
    if isinstance(act, spaces.Box):
        return state_kind, dtype, "array"
    raise CwmError(f"unsupported action space {act}", hint="cwm collects Discrete or Box action spaces")


def _progress(done: int, total: int, steps: int, t0: float) -> None:
    width = 24
    fill = int(width * done / total)
    line = f"\rcollecting [{'#' * fill}{'.' * (width - fill)}] {done}/{total} trajectories, " \
           f"{steps} transitions, {time.monotonic() - t0:.1f} s"
    sys.stderr.write(line if sys.stderr.isatty() else line.lstrip("\r") + "\n")
    sys.stderr.flush()


def _cem_plan(u: Any, snap: Snapshotter, iters: int, cfg: CollectConfig, rng: np.random.Generator,
              horizon: int) -> np.ndarray[Any, Any]:
    low, high = u.action_space.low.astype(np.float64), u.action_space.high.astype(np.float64)
    mu = np.tile((low + high) / 2, (horizon, 1))
    sigma = np.tile(np.maximum(np.abs(low), np.abs(high)) / 2, (horizon, 1))
    root = snap.save()
    best = mu
    for _ in range(iters):
        samples = np.clip(rng.normal(mu, sigma, size=(cfg.cem_samples, *mu.shape)), low, high)
        returns = np.empty(cfg.cem_samples)
        for n in range(cfg.cem_samples):
            snap.restore(root)
            total = 0.0
            for t in range(horizon):
                _, r, term, _, _ = u.step(samples[n, t])
                total += float(r)
                if term:
                    break
            returns[n] = total
        elite = samples[np.argsort(returns)[-cfg.cem_elites:]]
        mu, sigma = elite.mean(axis=0), elite.std(axis=0)
        best = samples[int(np.argmax(returns))]
    snap.restore(root)
    return best


def _lookahead(u: Any, snap: Snapshotter, cfg: CollectConfig, rng: np.random.Generator) -> int:
    root = snap.save()
    n = int(u.action_space.n)
    values = np.zeros(n)
    for a in range(n):
        for _ in range(cfg.lookahead_rollouts):
            snap.restore(root)
            _, r, term, _, _ = u.step(a)
            total, depth = float(r), 0
            while not term and depth < cfg.lookahead_depth:
                _, r, term, _, _ = u.step(int(rng.integers(n)))
                total += float(r)
                depth += 1
            values[a] += total
    snap.restore(root)
    best = np.flatnonzero(values == values.max())
    return int(rng.choice(best))


def collect(env_id: str, cfg: CollectConfig | None = None,
            progress: Callable[[int, int, int, float], None] | None = _progress,
            env_kwargs: dict[str, Any] | None = None, audit: bool = True) -> Dataset:
    """Record ``cfg.trajectories`` trajectories of ``env_id`` made with ``env_kwargs`` (see the module
    docstring); the kwargs go into the dataset's meta so that scoring can refuse another environment.

    ``audit``: replay the recording with the real env (``cwm audit``) so every transition carries its
    verdict. Recorded from the env itself, a transition can still be "unknown" where the observation does
    not fix the state (a card deck, a solver warm start); without the audit all of them would be."""
    cfg = cfg or CollectConfig()
    if cfg.trajectories < 1 or cfg.max_steps < 1:
        raise CwmError("--trajectories and --max-steps must be at least 1")
    env_kwargs = dict(env_kwargs or {})
    env: Any = make_env(env_id, **env_kwargs)
    u = env.unwrapped
    state_kind, sdtype, action_kind = space_kinds(env)
    snap = Snapshotter(u)
    policy = cfg.policy
    if policy == "spread" and not snap.supported:
        log.warning("env cannot be snapshotted; recording with a random policy", env=env_id)
        policy = "random"
    rng = np.random.default_rng(cfg.seed)
    env.action_space.seed(cfg.seed)
    rows: dict[str, list[Any]] = {k: [] for k in ("state", "action", "next_state", "reward", "terminated",
                                                  "truncated", "trajectory", "step")}
    t0 = time.monotonic()
    for k in range(cfg.trajectories):
        obs, _ = env.reset(seed=cfg.seed + k)
        competence = k / (cfg.trajectories - 1) if cfg.trajectories > 1 else 1.0
        plan: list[Any] = []
        iters = CEM_ITERATIONS[min(round(competence * (len(CEM_ITERATIONS) - 1)), len(CEM_ITERATIONS) - 1)]
        for t in range(cfg.max_steps):
            if policy == "random":
                action = env.action_space.sample()
            elif action_kind == "array":
                if not plan:
                    horizon = min(cfg.cem_horizon, cfg.max_steps - t)
                    plan = list(_cem_plan(u, snap, iters, cfg, rng, horizon))
                action = plan.pop(0)
            elif rng.random() < 1.0 - competence:
                action = env.action_space.sample()
            else:
                action = _lookahead(u, snap, cfg, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows["state"].append(obs)
            rows["action"].append(action)
            rows["next_state"].append(next_obs)
            rows["reward"].append(reward)
            rows["terminated"].append(bool(terminated))
            rows["truncated"].append(bool(truncated) and not terminated)
            rows["trajectory"].append(k)
            rows["step"].append(t)
            obs = next_obs
            if terminated or truncated:
                break
        if progress is not None:
            progress(k + 1, cfg.trajectories, len(rows["reward"]), t0)
    env.close()
    bench = benchmark_env(env_id)
    ds = Dataset(
        env_id=bench.name if bench else env_id,
        state=np.array(rows["state"], dtype=sdtype), action=np.array(
            rows["action"], dtype=np.int64 if action_kind == "int" else np.float64),
        next_state=np.array(rows["next_state"], dtype=sdtype),
        reward=np.array(rows["reward"], dtype=np.float32),
        terminated=np.array(rows["terminated"], dtype=bool), truncated=np.array(rows["truncated"], dtype=bool),
        trajectory=np.array(rows["trajectory"], dtype=np.int32), step=np.array(rows["step"], dtype=np.int32),
        state_kind=state_kind, action_kind=action_kind,  # type: ignore[arg-type]
        meta={"gym_id": resolve_gym_id(env_id), "protocol": f"cwm collect: {cfg}",
              "gymnasium": __import__("gymnasium").__version__, "source": "recorded with cwm collect",
              "env_kwargs": env_kwargs,
              "seconds": round(time.monotonic() - t0, 1)},
    )
    if not audit:
        return ds
    from cwm.envs.audit import audit as replay_audit

    return replay_audit(ds).apply(ds)
