"""What the tools a node calls cost: run_analysis, show_transitions, check_program on CartPole-v1.

    python benchmarks/bench_node_tools.py [--runs 20]

Prints, for the bundled CartPole-v1 training set (the run's feedback split, 80 %), the size of the
program ``run_analysis`` sends to the sandbox (the training arrays embedded as a JSON literal) and
the median / p90 wall time of each tool call with a warm fork-server; show_transitions by kind scores
the parent program once per node run, so its first call and later calls are shown apart.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cwm.envs.dataset import load_for_env
from cwm.graph.run import split_heldout
from cwm.sandbox import Sandbox, SandboxConfig
from cwm.tools import ToolDeps, bind_tools
from cwm.tools.analysis import analysis_program
from cwm.tracing import configure

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cartpole_cwm.py"
FIT = "A = np.c_[state, action]\nw = np.linalg.lstsq(A, next_state, rcond=None)[0]\nprint(w.round(4))"


def _q(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1e3:7.2f} ms   p90 {xs[int(0.9 * (len(xs) - 1))] * 1e3:7.2f} ms"


async def _time(runs: int, fn: Callable[[], Awaitable[str]]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        text = await fn()
        out.append(time.perf_counter() - t0)
        assert not text.startswith("error"), text
    return out


async def main(runs: int) -> None:
    feedback, _ = split_heldout(load_for_env("CartPole-v1"), 0.2, seed=0)
    code = EXAMPLE.read_text(encoding="utf-8")
    wrong = code.replace("return self.state, 1.0, done", "return self.state, 0.0 if done else 1.0, done")
    print(f"training transitions: {len(feedback)}; run_analysis program: "
          f"{len(analysis_program(feedback, FIT)) / 1024:.0f} KiB")
    async with Sandbox(SandboxConfig()) as sb:
        deps = ToolDeps(sb, feedback, "CartPole", None, wrong)
        box = bind_tools(deps, max_calls=10 * runs + 10)
        await box.call("describe_env", {})  # warm the fork-server
        print(f"run_analysis (lstsq fit)        "
              f"{_q(await _time(runs, lambda: box.call('run_analysis', {'code': FIT})))}")
        print(f"check_program (correct model)   "
              f"{_q(await _time(runs, lambda: box.call('check_program', {'code': code})))}")
        first = []
        for _ in range(runs):  # a fresh box per node run: the parent is scored on its first kind query
            fresh = bind_tools(deps, max_calls=2)
            t0 = time.perf_counter()
            await fresh.call("show_transitions", {"kind": "reward"})
            first.append(time.perf_counter() - t0)
        print(f"show_transitions kind, first    {_q(first)}")
        print(f"show_transitions kind, later    "
              f"{_q(await _time(runs, lambda: box.call('show_transitions', {'kind': 'reward'})))}")
        print(f"show_transitions indices        "
              f"{_q(await _time(runs, lambda: box.call('show_transitions', {'indices': [0, 1, 2]})))}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    configure("warning")
    asyncio.run(main(ap.parse_args().runs))
