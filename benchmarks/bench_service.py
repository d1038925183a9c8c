"""The service under load and faults, with the scripted LLM server (no real model).

    python benchmarks/bench_service.py [--runs 20] [--clients 100] [--budget 3] [--kill]

Starts `cwm serve` as a subprocess, submits ``--runs`` searches at once (CartPole, GIF-MCTS) against a scripted
LLM that answers slowly and sometimes with 429 or 500, while ``--clients`` concurrent clients poll
``GET /v1/runs/{id}`` and a tenth of them follow the runs' event streams. With ``--kill`` the server is
SIGKILLed once mid-way and started again. Prints requests/s and latency percentiles of the polls, and checks
that every run finished, every event stream replays exactly from a Last-Event-ID, and the LLM server billed
each expansion once (replies before a kill come back from the runs' caches).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from cwm.agents.llm.fake_server import Fail, FakeLLMServer, Reply

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_llm import VARIANTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(data: Path, port: int, max_runs: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "cwm.cli", "serve", "--port", str(port), "--data", str(data),
                             "--max-runs", str(max_runs)], stdout=subprocess.DEVNULL,
                            stderr=(data.parent / "serve.log").open("ab"), start_new_session=True)
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def read_events(s: aiohttp.ClientSession, base: str, run_id: str, last: int = 0) -> list[int]:
    ids = []
    async with s.get(f"{base}/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last)}) as r:
        async for raw in r.content:
            line = raw.decode()
            if line.startswith("id: "):
                ids.append(int(line[4:]))
    return ids


async def main(n_runs: int, n_clients: int, budget: int, kill: bool) -> None:
    rng = random.Random(0)

    def script(body: dict[str, Any]) -> Reply | Fail:
        roll = rng.random()
        if roll < 0.08:
            return Fail(429, retry_after=0.2)
        if roll < 0.12:
            return Fail(500)
        delay = 2.0 if roll > 0.95 else rng.uniform(0.1, 0.4)
        return Reply(f"```python\n{VARIANTS['weak_force']}```", delay=delay)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        async with FakeLLMServer(script) as llm:
            port = free_port()
            proc = await start_server(data, port, max_runs=4)
            base = f"http://127.0.0.1:{port}"
            latencies: list[float] = []
            errors = 0
            stop = asyncio.Event()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                async with s.post(f"{base}/v1/envs", json={"gym_id": "CartPole-v1"}) as r:
                    env = (await r.json())["id"]
                t0 = time.monotonic()
                ids = []
                for i in range(n_runs):
                    async with s.post(f"{base}/v1/runs", json={"env": env, "llm": f"openai:fake@{llm.base_url}",
                                                                "budget": budget, "seed": i}) as r:
                        ids.append((await r.json())["id"])

                async def poller(c: int) -> None:
                    nonlocal errors
                    while not stop.is_set():
                        run_id = ids[c % len(ids)]
                        t = time.perf_counter()
                        try:
                            async with s.get(f"{base}/v1/runs/{run_id}") as r:
                                await r.read()
                                ok = r.status == 200
                        except aiohttp.ClientError:
                            ok = False
                        if ok:
                            latencies.append(time.perf_counter() - t)
                        else:
                            errors += 1
                            await asyncio.sleep(0.1)

                async def streamer(c: int) -> None:
                    while not stop.is_set():
                        try:
                            await read_events(s, base, ids[c % len(ids)])
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.1)
                        await asyncio.sleep(0.5)

                tasks = [asyncio.create_task(poller(c)) for c in range(n_clients)]
                tasks += [asyncio.create_task(streamer(c)) for c in range(max(1, n_clients // 10))]
                if kill:
                    while llm.answered < n_runs * budget // 3:
                        await asyncio.sleep(0.1)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    proc = await start_server(data, port, max_runs=4)
                while True:
                    try:
                        async with s.get(f"{base}/v1/runs") as r:
                            runs = (await r.json())["runs"]
                    except aiohttp.ClientError:
                        runs = []
                    if runs and all(run["status"] in ("done", "failed", "cancelled") for run in runs):
                        break
                    await asyncio.sleep(0.5)
                wall = time.monotonic() - t0
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                statuses = [run["status"] for run in runs]
                replay_ok = True
                for run_id in ids[:5]:
                    full = await read_events(s, base, run_id)
                    cut = full[len(full) // 2]
                    replay_ok &= await read_events(s, base, run_id, cut) == [i for i in full if i > cut]
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        lat = sorted(latencies)
        p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
        print(json.dumps({
            "runs": n_runs, "clients": n_clients, "budget": budget, "killed_once": kill,
            "runs_done": statuses.count("done"), "runs_other": len(statuses) - statuses.count("done"),
            "wall_s": round(wall, 1), "polls": len(lat), "poll_errors": errors,
            "requests_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(p(0.50), 1), "p99_ms": round(p(0.99), 1),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
            "llm_requests": len(llm.requests), "llm_answered": llm.answered, "expansions": n_runs * budget,
            "sse_replay_exact": replay_ok,
        }, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--budget", type=int, default=3)
    ap.add_argument("--kill", action="store_true", help="SIGKILL the server once mid-way and restart it")
    a = ap.parse_args()
    asyncio.run(main(a.runs, a.clients, a.budget, a.kill))
