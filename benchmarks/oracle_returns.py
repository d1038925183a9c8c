"""Oracle and random returns next to the paper's (Table 12), per environment.

    python benchmarks/oracle_returns.py [--episodes 10] [--envs CartPole-v1,Taxi-v3,...] [--cem paper|mpc]

The oracle is the same planner as for Code World Models, run on the true simulator with exact snapshots.
Results are also cached as baselines for normalized returns.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from cwm.bench.paper import table12
from cwm.planning.agent import PlanConfig, plan
from cwm.tracing import configure


def paper(env: str) -> tuple[float | None, float | None]:
    """Table 12's random and oracle returns, from the package data (never retyped here)."""
    row = table12(env) or {}
    return row.get("random"), row.get("oracle")


async def main(envs: list[str], episodes: int, cem: str) -> None:
    print("| env | random (ours) | random (paper) | oracle (ours) | oracle (paper) | planner | oracle time |")
    print("|---|---|---|---|---|---|---|")
    for env in envs:
        rnd = await plan(PlanConfig(env=env, model="random", episodes=episodes, cem=cem))
        t0 = time.perf_counter()
        orc = await plan(PlanConfig(env=env, model="oracle", episodes=episodes, cem=cem))
        took = time.perf_counter() - t0
        p = paper(env)
        label = orc["planner"] + ("" if orc["planner"] == "mcts" else f" ({cem})")
        print(f"| {env} | {rnd['mean_return']:.1f} ± {rnd['std_return']:.1f} | {p[0]} | "
              f"{orc['mean_return']:.1f} ± {orc['std_return']:.1f} | {p[1]} | {label} | {took:.0f} s |", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--envs", default="CartPole-v1,Taxi-v3,CliffWalking-v0,Blackjack-v1,MountainCar-v0,Pendulum-v1")
    ap.add_argument("--cem", default="paper")
    a = ap.parse_args()
    configure("error")
    asyncio.run(main(a.envs.split(","), a.episodes, a.cem))
