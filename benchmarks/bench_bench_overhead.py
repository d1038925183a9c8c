"""The bench's own overhead per run, LLM latency excluded (the scripted server answers at once).

    python benchmarks/bench_bench_overhead.py [--runs 6] [--budget 2] [--plan-episodes 0]

A bench run's time splits into its search (``summary.json`` ``wall_s``: LLM calls, sandboxed scoring of
each candidate, the controller), its evaluation (the best program scored on every recorded transition with
both metrics, then planning) and the bench's own bookkeeping (thread and event loop per run, reading
rows back, progress, scheduling). The script runs a CartPole bench of ``--runs`` runs one at a time
(``--parallel 1``), then prints per run: search, evaluation, and the bench's overhead (each run's thread
time minus its search and evaluation); once per bench: what the bench spends outside the runs (imports,
scheduling, final writes); and the time to write results.json and report.md with its three figures again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import cwm.bench.executors as executors
from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.bench.report import write_report
from cwm.bench.results import write_results
from cwm.cli import main as cwm_main
from fake_llm import VARIANTS, fenced, serve_in_thread


def reply(body: dict) -> Reply:
    return fenced("weak_force" if "weak_force" not in json.dumps(body["messages"]) else "good",
                  "## Correct code" in body["messages"][-1]["content"])


OUTER: list[float] = []


def timed(work):  # one run's whole thread (event loop, run_one, teardown), timed from outside
    def wrapper(self, job):
        t = time.perf_counter()
        try:
            work(self, job)
        finally:
            OUTER.append(time.perf_counter() - t)

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6, help="runs: seeds of CartPole × gif-mcts")
    ap.add_argument("--budget", type=int, default=2)
    ap.add_argument("--plan-episodes", type=int, default=0)
    a = ap.parse_args()
    assert VARIANTS
    executors.LocalExecutor._work = timed(executors.LocalExecutor._work)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(FakeLLMServer(reply)) as server:
        out = Path(tmp) / "b"
        t0 = time.perf_counter()
        code = cwm_main(["--log-level", "error", "bench", "--llm", f"openai:fake@{server.base_url}", "--envs",
                         "CartPole-v1", "--methods", "gif-mcts", "--seeds", str(a.runs), "--budget", str(a.budget),
                         "--plan-episodes", str(a.plan_episodes), "--plan-max-steps", "20", "--out", str(out)])
        total = time.perf_counter() - t0
        assert code == 0, code
        doc = json.loads((out / "results.json").read_text())
        rows = doc["runs"]
        t1 = time.perf_counter()
        write_results(out, doc["bench"], rows, doc["status"])
        t_results = time.perf_counter() - t1
        t2 = time.perf_counter()
        write_report(doc, out)
        t_report = time.perf_counter() - t2
    search = [r["search_wall_s"] for r in rows]
    evals = [r["eval_s"] for r in rows]
    inside = [o - r["wall_s"] for o, r in zip(OUTER, rows, strict=True)]  # thread around search + evaluation
    once = total - sum(OUTER)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{len(rows)} runs (CartPole-v1, gif-mcts, budget {a.budget}, {a.plan_episodes} planning episodes), "
          f"scripted LLM with no latency, --parallel 1, total {total:.2f} s")
    print("| per run | median | max |")
    print("|---|---|---|")
    print(f"| search (summary wall_s) | {statistics.median(search):.3f} s | {max(search):.3f} s |")
    print(f"| evaluation: scoring on every transition ×2 metrics, planning | {statistics.median(evals):.3f} s | "
          f"{max(evals):.3f} s |")
    print(f"| bench overhead per run (its thread − search − evaluation) | {statistics.median(inside) * 1000:.0f} ms | "
          f"{max(inside) * 1000:.0f} ms |")
    print(f"| once per bench: imports, parsing, scheduling, final writes (elapsed − Σ runs) | {once:.2f} s | |")
    print(f"| results.json once | {t_results * 1000:.1f} ms | |")
    print(f"| report.md + 3 PNG once | {t_report:.2f} s | |")


if __name__ == "__main__":
    main()
