"""LLM calls each search method needs to reach accuracy 1.0 on CartPole, with two scripted models.

    python benchmarks/bench_search_methods.py [--budget 20] [--seeds 1] [--k 1 4]

"strong": every generate writes the same near-perfect program (wrong reward on terminal steps, accuracy
0.987); shown that program with a failing transition, it writes the correct one. "weak": by call order,
a program that does not run, one with wrong physics (0.838), then the correct one. Both come from
``tests/fake_llm.py`` and run through the real client, graph and sandbox on the loopback server.

Printed per method, model and concurrency k: the call (in the order the search applied results) whose
program first scored 1.0, the calls made before the search stopped (with k > 1 the calls already in
flight when 1.0 arrived are paid too), and how many replies repeated an earlier program.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.graph.run import RunConfig, synthesize
from cwm.tracing import configure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_llm import fenced, strong_model, weak_model

METHODS = ("gif-mcts", "gif-mcts-paper", "worldcoder", "best-of-n")


async def one(method: str, model: str, k: int, budget: int, seed: int) -> dict[str, object]:
    script = strong_model() if model == "strong" else weak_model()
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeLLMServer(script, default=fenced("good")) as server:
            summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:bench@{server.base_url}",
                                                 budget=budget, concurrency=k, method=method, seed=seed),
                                       Path(tmp) / "run")
        nodes = json.loads((Path(tmp) / "run" / "tree.json").read_text(encoding="utf-8"))["nodes"][1:]
    first = next((i for i, n in enumerate(nodes, 1) if n["score"] >= 1.0), None)
    return {"solved_at": first, "calls": summary["search_calls"],
            "duplicates": sum(n.get("duplicate_of") is not None for n in nodes),
            "actions": "".join(n["action"] for n in nodes)}


async def main(budget: int, seeds: int, ks: list[int]) -> None:
    configure(level="warning")
    print("| model | k | method | calls to reach 1.0 | calls made | duplicates | actions (seed 0) |")
    print("|---|---|---|---|---|---|---|")
    for model in ("strong", "weak"):
        for k in ks:
            for method in METHODS:
                runs = [await one(method, model, k, budget, seed) for seed in range(seeds)]
                solved = [r["solved_at"] for r in runs]
                shown = ", ".join(f"not in {budget}" if s is None else str(s) for s in solved)
                made = ", ".join(str(r["calls"]) for r in runs)
                dups = ", ".join(str(r["duplicates"]) for r in runs)
                print(f"| {model} | {k} | {method} | {shown} | {made} | {dups} | {runs[0]['actions']} |",
                      flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--k", type=int, nargs="+", default=[1, 4])
    a = p.parse_args()
    asyncio.run(main(a.budget, a.seeds, a.k))
