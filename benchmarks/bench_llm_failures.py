"""How fast the LLM client gives up on a server that is not there or has gone silent, and what streaming
costs per call, against the loopback fake server (no real model).

    python benchmarks/bench_llm_failures.py [--rounds 20] [--read-timeout 1.0]

Prints, from one run:
- connection refused: median time to the error and the attempts made (the old client retried for ~22 s);
- a silent server (accepts the call, never writes): time to the error with --read-timeout and no retries;
- per-call round trip streamed vs one JSON body (instant server, 2000-character reply).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time

from cwm.agents.llm import LLMClient, LLMUnavailable, Message, TransportConfig
from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.tracing import configure

MSGS = [Message("user", "x" * 2000)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def refused(rounds: int) -> tuple[float, int]:
    times, attempts = [], 0
    for _ in range(rounds):
        c = LLMClient.from_string(f"openai:m@http://127.0.0.1:{closed_port()}/v1")
        t0 = time.perf_counter()
        try:
            await c.complete(MSGS)
        except LLMUnavailable as exc:
            attempts = max(attempts, exc.attempts)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), attempts


async def silent(read_timeout: float) -> float:
    async with FakeLLMServer(default=Reply("never sent", delay=3600)) as server:
        c = LLMClient.from_string(f"openai:m@{server.base_url}",
                                  transport=TransportConfig(retries=0, read_timeout=read_timeout))
        t0 = time.perf_counter()
        with contextlib.suppress(LLMUnavailable):
            await c.complete(MSGS)
        return time.perf_counter() - t0


async def round_trip(stream: bool, rounds: int) -> float:
    async with FakeLLMServer(default=Reply("y" * 2000, chunks=20)) as server:
        async with LLMClient.from_string(f"openai:m@{server.base_url}", stream=stream) as c:
            await c.complete(MSGS)
            times = []
            for i in range(rounds * 5):
                t0 = time.perf_counter()
                await c.complete(MSGS, sample_index=i + 1)
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


async def main(rounds: int, read_timeout: float) -> None:
    med, attempts = await refused(rounds)
    print(f"connection refused: median {med * 1e3:.1f} ms to the error over {rounds} calls, {attempts} attempt(s)")
    wait = await silent(read_timeout)
    print(f"silent server, --read-timeout {read_timeout:g} s, no retries: error after {wait:.2f} s")
    streamed, body = await round_trip(True, rounds), await round_trip(False, rounds)
    print(f"round trip, 2000-char reply in 20 events: streamed {streamed * 1e3:.2f} ms, "
          f"one JSON body {body * 1e3:.2f} ms (median of {rounds * 5})")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--read-timeout", type=float, default=1.0)
    a = p.parse_args()
    configure("warning")
    asyncio.run(main(a.rounds, a.read_timeout))
