"""What one replanning step of the oracle costs (the planner on the true simulator), per environment.

    python benchmarks/oracle_cost.py [--envs InvertedPendulum-v4,...] [--cem paper] [--episode]

For each environment: the first replanning of the oracle from the start of episode seed 0 (CEM ``paper``:
20 iterations of 1000 plans of up to 100 steps, a plan stopping where the simulator terminates), its
wall time, the simulator steps it took, and the time per simulator step. With ``--episode`` the whole
first episode is played too (its length tells how many replannings an episode needs: one per 100 steps
under ``paper``). The estimate for 10 episodes is ``10 × replannings per episode × time of one``, taking
the first episode's replannings when it was played and 10 (a full 1000-step episode) otherwise.
``--iterations N`` times only the first N CEM iterations of the replanning and scales the time and steps
to the preset's 20 (for the expensive environments).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import replace

from cwm.envs.registry import make_env
from cwm.planning.agent import PlanConfig
from cwm.planning.models import TrueModel
from cwm.planning.planners import planner_for

MUJOCO = ("InvertedPendulum-v4,InvertedDoublePendulum-v4,Reacher-v4,Pusher-v4,Hopper-v4,Swimmer-v4,"
          "Walker2d-v4,HalfCheetah-v4,Ant-v4,Humanoid-v4,HumanoidStandup-v4")


async def measure(env_id: str, cem: str, episode: bool, iterations: int | None) -> None:
    cfg = PlanConfig(env=env_id, model="oracle", episodes=1, seed=0, cem=cem)
    env = make_env(env_id)
    max_steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 100
    planner = planner_for(env.action_space).build(env.action_space, cfg)
    full = planner.config.iterations
    scale = 1.0
    if iterations is not None and iterations < full:  # a part of one replanning, scaled up
        planner.config = replace(planner.config, iterations=iterations)
        scale = full / iterations
    model = TrueModel(env, 0)
    obs, _ = env.reset(seed=0)
    planner.reset(0)
    t0 = time.perf_counter()
    action = await planner.act(model, model.root(env, obs), max_steps)
    first_s = (time.perf_counter() - t0) * scale
    first_steps = int(model.steps * scale)
    replans, length, total = 1, 0, 0.0
    if episode:
        for t in range(max_steps):
            if t > 0:
                queued = bool(getattr(planner, "queue", []))
                action = await planner.act(model, model.root(env, obs), max_steps - t)
                replans += 0 if queued else 1
            obs, r, term, trunc, _ = env.step(action)
            model.record(action)
            total += float(r)
            length += 1
            if term or trunc:
                break
    episode_s = time.perf_counter() - t0
    per_ep = replans if episode else math.ceil(max_steps / getattr(planner.config, "replan_every", 1))
    est_h = 10 * per_ep * first_s / 3600
    ep = f"{length} steps, return {total:.1f}, {replans} replans, {episode_s:.0f} s" if episode else "not played"
    part = f" (×{scale:g} of {iterations} it.)" if scale != 1.0 else ""
    print(f"| {env_id} | {first_s:.1f} s{part} | {first_steps:.2e} | {first_s / first_steps * 1e6:.1f} µs | {ep} | "
          f"{est_h:.2f} h |", flush=True)
    env.close()


async def main(envs: list[str], cem: str, episode: bool, iterations: int | None) -> None:
    print("| env | one replanning | simulator steps | per step | first episode | est. 10 episodes |")
    print("|---|---|---|---|---|---|")
    for env_id in envs:
        await measure(env_id, cem, episode, iterations)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", default=MUJOCO)
    ap.add_argument("--cem", default="paper")
    ap.add_argument("--episode", action="store_true", help="also play the first episode to its end")
    ap.add_argument("--iterations", type=int, default=None,
                    help="time only the first N CEM iterations and scale to the preset's (exact where no plan "
                         "terminates early; an underestimate where later, better plans survive longer)")
    a = ap.parse_args()
    asyncio.run(main(a.envs.split(","), a.cem, a.episode, a.iterations))
