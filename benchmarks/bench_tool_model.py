"""A tool-using Code World Model in `cwm plan`: InvertedPendulum-v4 with the MuJoCo-based example model.

    python benchmarks/bench_tool_model.py [--episodes 2] [--max-steps 50]

Plans with the receding-horizon CEM preset (the `cwm plan` default) using three models of the same
environment: the example model (its own MJCF, simulated with the mujoco library, allowed with
``--allow-import mujoco``), the real environment (oracle, exact snapshots) and no model (random
actions), and prints returns, the normalized return and the model's throughput. One run, on whatever
machine this is: the figures in the README say where they were measured.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from cwm.planning.agent import PlanConfig, normalized_return, plan
from cwm.sandbox import Sandbox, SandboxConfig
from cwm.tracing import configure

ENV = "InvertedPendulum-v4"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inverted_pendulum_mujoco_cwm.py"


async def main(episodes: int, max_steps: int) -> None:
    rows = {}
    for model in ("random", "oracle"):
        rows[model] = await plan(PlanConfig(env=ENV, model=model, episodes=episodes, max_steps=max_steps))
    async with Sandbox(SandboxConfig(allow_import=("mujoco",))) as sb:
        rows["mujoco model"] = await plan(PlanConfig(env=ENV, model=str(EXAMPLE), episodes=episodes,
                                                     max_steps=max_steps), sandbox=sb)
        policy = sb.policy_text()
    print(f"{ENV}, CEM (mpc preset), {episodes} episodes of at most {max_steps} steps; imports: {policy}")
    for name, r in rows.items():
        rate = r.get("model_steps", 0) / r["elapsed_s"] if r.get("model_steps") else None
        print(f"  {name:14s} mean return {r['mean_return']:8.2f} ± {r['std_return']:.2f}   "
              f"{r['elapsed_s']:7.1f} s" + (f"   {rate:,.0f} model steps/s" if rate else ""))
    norm = normalized_return(rows["mujoco model"]["mean_return"], rows["random"]["mean_return"],
                             rows["oracle"]["mean_return"])
    print(f"normalized return of the mujoco model: {'n/a' if norm is None else f'{norm:.3f}'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=50)
    args = parser.parse_args()
    configure("error")
    asyncio.run(main(args.episodes, args.max_steps))
