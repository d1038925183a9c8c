"""Inference speed of a world model (the paper's App. H comparison), on Pendulum-v1.

    python benchmarks/bench_planning.py [--llm local]

Per model step: the Code World Model in its sandbox (one step per round trip; scalar rollouts inside the
child; batched ``step_batch`` rollouts), the real gymnasium environment, and an LLM asked to predict the
next state from a few examples (the embedded SmolLM2-135M by default: a tiny model, so a lower bound on
what a useful LLM would cost). Medians from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from cwm.agents.llm import LLMClient, Message, SamplingParams
from cwm.envs.dataset import load_for_env
from cwm.envs.registry import make_env
from cwm.planning.models import ProgramModel
from cwm.sandbox import IOSpec, Sandbox
from cwm.tracing import configure

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pendulum_cwm.py"


async def main(llm: str, llm_calls: int) -> None:
    ds = load_for_env("Pendulum-v1")
    code = EXAMPLE.read_text(encoding="utf-8")
    rows = []
    async with Sandbox() as sb:
        session, loaded = await sb.load(code, IOSpec("array", "float32", "array", "float64"))
        assert loaded.ok and loaded.has_step_batch
        items = [(ds.wire_state(i), ds.wire_action(i)) for i in range(200)]
        times = []
        for it in items:
            t0 = time.perf_counter()
            await session.step_many([it], timeout=5)
            times.append(time.perf_counter() - t0)
        rows.append(("CWM in sandbox, one step per round trip", statistics.median(times)))
        model = ProgramModel(session, None)
        plans = np.random.default_rng(0).uniform(-2, 2, size=(200, 30, 1))
        state = ds.wire_state(0)
        for batch in (False, True):
            model.use_batch = batch
            reps = []
            for _ in range(5):
                t0 = time.perf_counter()
                await model.rollouts(state, plans)
                reps.append((time.perf_counter() - t0) / plans[:, :, 0].size)
            rows.append((f"CWM in sandbox, {'batched step_batch' if batch else 'scalar'} rollouts (200 x 30)",
                         statistics.median(reps)))
        await session.close()
    env = make_env("Pendulum-v1").unwrapped
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(20000):
        env.step(np.array([0.5]))
    rows.append(("real gymnasium Pendulum-v1 step", (time.perf_counter() - t0) / 20000))
    client = await LLMClient.from_string(llm).__aenter__()
    shots = "\n".join(f"state {ds.wire_state(i)} action {ds.wire_action(i)} -> next state {ds.next_state[i].tolist()}"
                      for i in range(3))
    llm_times = []
    for i in range(3, 3 + llm_calls):
        prompt = (f"Predict the next state of the Pendulum-v1 environment.\n{shots}\n"
                  f"state {ds.wire_state(i)} action {ds.wire_action(i)} -> next state")
        t0 = time.perf_counter()
        await client.complete([Message("user", prompt)], SamplingParams(temperature=0.0, max_tokens=40),
                              sample_index=i)
        llm_times.append(time.perf_counter() - t0)
    await client.aclose()
    rows.append((f"LLM as world model ({llm}, 40 new tokens)", statistics.median(llm_times)))
    base = rows[-2][1]
    for name, sec in rows:
        print(f"{name:62s} {sec * 1e6:12.1f} us/step   {sec / base:10.1f} x real env")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="local")
    ap.add_argument("--llm-calls", type=int, default=3)
    a = ap.parse_args()
    configure("error")
    asyncio.run(main(a.llm, a.llm_calls))
