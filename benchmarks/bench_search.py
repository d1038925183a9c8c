"""Search wall time against the ideal, with a scripted LLM of fixed latency (no real model).

    python benchmarks/bench_search.py [--budget 32] [--concurrency 8] [--latency 1.0]

The ideal for budget B at concurrency k is ceil(B / k) rounds of one LLM latency. The script prints the
measured wall time, the ratio to the ideal, the sandbox time per expansion and the controller node's own
time per superstep (from the run's trace). Programs are CartPole variants that never reach 1.0, so the
search spends its whole budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.graph.run import RunConfig, synthesize
from cwm.tracing import configure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_llm import VARIANTS


async def main(budget: int, k: int, latency: float) -> None:
    names = cycle(["weak_force", "never_done", "wrong_reward"])

    def script(body: dict) -> Reply:
        return Reply(f"```python\n{VARIANTS[next(names)]}```", delay=latency)

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        async with FakeLLMServer(script) as server:
            t0 = time.perf_counter()
            summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:bench@{server.base_url}",
                                                 budget=budget, concurrency=k), run)
            wall = time.perf_counter() - t0
        events = [json.loads(line) for line in (run / "trace.jsonl").read_text(encoding="utf-8").splitlines()]
    ctrl = [e["seconds"] for e in events if e["event"] == "mcts.controller"]
    sandbox = [e["seconds"] for e in events if e["event"] == "sandbox.result" and "seconds" in e]
    ideal = math.ceil(budget / k) * latency
    print(f"budget {budget}, concurrency {k}, LLM latency {latency:g} s: {summary['search_calls']} calls, "
          f"max in flight {server.max_in_flight}")
    print(f"  wall {wall:.2f} s vs ideal {ideal:.2f} s ({math.ceil(budget / k)} rounds): ratio {wall / ideal:.2f}")
    print(f"  controller node per superstep: median {statistics.median(ctrl) * 1e3:.2f} ms, "
          f"max {max(ctrl) * 1e3:.2f} ms over {len(ctrl)} supersteps")
    print(f"  sandbox per expansion (feedback + held-out scoring): median {statistics.median(sandbox) * 1e3:.0f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency", type=float, default=1.0)
    a = p.parse_args()
    configure("error")
    asyncio.run(main(a.budget, a.concurrency, a.latency))
