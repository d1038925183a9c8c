"""Sandbox speed: scoring a candidate with a warm fork-server, and a persistent session's step rate.

    python benchmarks/bench_sandbox.py [--runs 30]

Prints medians (and p90) over --runs repetitions, measured in one run of this script, for:
- fork-server start (cold);
- scoring 1000 CartPole transitions per candidate with every available isolation layer on, and with
  the layers off (--isolation none, no seccomp), to show what the layers cost;
- a persistent session: round trips per second (one step per request) and steps per second in
  batches of 1000 (what the planner uses).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from cwm.envs.collect import CollectConfig, collect
from cwm.sandbox import IOSpec, Limits, Sandbox, SandboxConfig, evaluate
from cwm.tracing import configure

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cartpole_cwm.py"


def _q(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1e3:7.2f} ms   p90 {xs[int(0.9 * (len(xs) - 1))] * 1e3:7.2f} ms"


async def main(runs: int) -> None:
    ds = collect("CartPole-v1", CollectConfig(trajectories=40, max_steps=100, seed=1), progress=None)
    ds = ds.subset(np.arange(1000))
    code = EXAMPLE.read_text(encoding="utf-8")
    print(f"dataset: {len(ds)} CartPole-v1 transitions in {ds.n_trajectories} trajectories, "
          f"{sum(1 for _ in ds.lockstep_batches())} lockstep batches")
    for label, cfg in (("all layers", SandboxConfig()),
                       ("layers off", SandboxConfig(isolation="none", limits=Limits(seccomp=False)))):
        starts = []
        for _ in range(5):
            t0 = time.perf_counter()
            async with Sandbox(cfg):
                starts.append(time.perf_counter() - t0)
        async with Sandbox(cfg) as sb:
            active = [layer.name for layer in sb.layers if layer.active]
            await evaluate(sb, code, ds)  # warm-up
            times, acc = [], 0.0
            for _ in range(runs):
                t0 = time.perf_counter()
                rep = await evaluate(sb, code, ds)
                times.append(time.perf_counter() - t0)
                acc = rep.accuracy
            session, loaded = await sb.load(code, IOSpec("array", "float32", "int", "int64"))
            assert loaded.ok
            item = (ds.wire_state(0), ds.wire_action(0))
            n_rt = 2000
            t0 = time.perf_counter()
            for _ in range(n_rt):
                await session.step_many([item], timeout=5)
            rt = time.perf_counter() - t0
            batch = [(ds.wire_state(i), ds.wire_action(i)) for i in range(1000)]
            t0 = time.perf_counter()
            for _ in range(20):
                await session.step_many(batch, timeout=30)
            bt = time.perf_counter() - t0
            await session.close()
        print(f"\n[{label}] active: {', '.join(active)}")
        print(f"  fork-server start           {_q(starts)}")
        print(f"  score 1000 transitions      {_q(times)}   (accuracy {acc:.3f}, {runs} runs)")
        print(f"  session round trips         {n_rt / rt:9.0f} calls/s   ({rt / n_rt * 1e6:.0f} us per call)")
        print(f"  session batched steps       {20 * 1000 / bt:9.0f} steps/s  (batches of 1000)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=30)
    configure("error")
    asyncio.run(main(p.parse_args().runs))
