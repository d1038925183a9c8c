"""LLM client overhead and concurrency against a fixed-latency loopback server (no real model).

    python benchmarks/bench_llm_client.py [--calls 200] [--latency 0.05]

Prints, from one run: the client's own overhead per call (server answers at once; median of --calls
sequential calls, minus nothing: this is the whole loopback round trip through the client), and the
wall time of 32 concurrent calls to a server that takes --latency seconds per call, against the ideal
(one latency).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from cwm.agents.llm import LLMClient, Message, TransportConfig
from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.tracing import configure

MSGS = [Message("system", "You write Python."), Message("user", "x" * 2000)]


async def main(calls: int, latency: float) -> None:
    async with FakeLLMServer(default=Reply("y" * 2000)) as server:
        c = LLMClient.from_string(f"openai:bench@{server.base_url}", transport=TransportConfig(concurrency=64))
        await c.__aenter__()  # pooled connections, as in a run
        await c.complete(MSGS)
        times = []
        for i in range(calls):
            t0 = time.perf_counter()
            await c.complete(MSGS, sample_index=i)
            times.append(time.perf_counter() - t0)
        await c.aclose()
    async with FakeLLMServer(default=Reply("y" * 2000, delay=latency)) as server:
        c = LLMClient.from_string(f"openai:bench@{server.base_url}", transport=TransportConfig(concurrency=64))
        await c.__aenter__()
        await c.complete(MSGS)
        walls = []
        for r in range(5):
            t0 = time.perf_counter()
            await c.sample(MSGS, k=32, first_index=1000 * (r + 1))
            walls.append(time.perf_counter() - t0)
        await c.aclose()
    med = statistics.median(times)
    wall = statistics.median(walls)
    print(f"per-call round trip through the client (instant server): median {med * 1e3:.2f} ms "
          f"(p90 {sorted(times)[int(0.9 * (len(times) - 1))] * 1e3:.2f} ms) over {calls} calls")
    print(f"32 concurrent calls at {latency * 1e3:.0f} ms latency: median wall {wall * 1e3:.1f} ms over 5 rounds, "
          f"ideal {latency * 1e3:.0f} ms, ratio {wall / latency:.2f}, throughput {32 / wall:.0f} calls/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--latency", type=float, default=0.05)
    a = p.parse_args()
    configure("warning")
    asyncio.run(main(a.calls, a.latency))
