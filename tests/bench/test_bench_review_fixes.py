"""Fixes from a review of `cwm bench` by using it: an LLM outage is not a failed synthesis, flags that would
be ignored or contradict each other are refused, 𝓡 stays undefined when nothing was planned, the report
names seeds and both baseline sources, the dry-run's bound covers repair prompts, and a log gets progress
lines between finished runs."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import pytest
from test_bench import bench, run, script

from cwm.agents.llm.fake_server import Fail, FakeLLMServer
from cwm.bench.matrix import BenchSpec, RunSpec, estimate
from cwm.bench.progress import LOG_EVERY_S, BenchProgress
from cwm.bench.report import figures, render, split_summary
from fake_llm import serve_in_thread


def test_an_llm_outage_is_reported_as_failed_and_retried_by_resume(tmp_path):
    """Pendulum's calls are refused while the provider is 'down': those runs are errors (exit 1), not rows
    counted as failed syntheses; a resume once it is back evaluates them, with no repeated paid call."""
    down = [True]
    good = script()

    def reply(body: dict):
        if down[0] and "swingup" in body["messages"][-1]["content"].lower():
            return Fail(401, "invalid api key")
        return good(body)

    out = tmp_path / "b"
    with serve_in_thread(FakeLLMServer(reply)) as server:
        first = run(bench(out, server.base_url, "--json"))
        assert first.returncode == 1, first.stderr[-3000:]
        doc = json.loads(first.stdout)
        assert {r["env"] for r in doc["runs"]} == {"CartPole-v1"}
        assert doc["status"]["state"] == "incomplete: some runs failed"
        assert sorted(doc["status"]["errors"]) == ["Pendulum-v1/gif-mcts/seed0", "Pendulum-v1/worldcoder/seed0"]
        assert "Pendulum-v1" not in (out / "report.md").read_text().split("## Per environment")[1]
        down[0] = False
        again = run([*bench(out, server.base_url)[:4], "--out", str(out), "--resume", "--json"])
        assert again.returncode == 0, again.stderr[-3000:]
        rows = json.loads(again.stdout)["runs"]
        assert len(rows) == 4 and all(r["llm_error"] is None and r["accuracy"] == 1.0
                                      for r in rows if r["env"] == "Pendulum-v1")
        assert server.answered == sum(r["llm_calls"] for r in rows)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--ray-address", "10.0.0.1:6379"], "--ray-address needs --executor ray"),
    (["--dry-run", "--baselines-only"], "--dry-run and --baselines-only"),
    (["--resume", "--budget", "5", "--envs", "CartPole-v1"], "--envs, --budget cannot change"),
    (["--resume", "--llm", "openai:other@http://127.0.0.1:9/v1"], "--llm cannot change"),
])
def test_conflicting_or_ignored_flags_are_one_line_and_exit_2(tmp_path, argv, needle):
    out = tmp_path / "b"
    out.mkdir()
    BenchSpec(llm="openai:fake@http://127.0.0.1:9/v1", envs=["CartPole-v1"], methods=["gif-mcts"]).save(
        out / "bench.json")
    done = run([sys.executable, "-m", "cwm.cli", "bench", "--out", str(out), *argv], timeout=60)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _row(env: str, acc: float | None, seed: int = 0, episodes: int = 10, sources=("computed", "computed")) -> dict:
    return {"env": env, "method": "gif-mcts", "seed": seed, "describe": "docs", "comparable": False,
            "accuracy": acc, "official_accuracy": acc, "normalized_return": None if acc is None or not episodes
            else 0.5, "random_return": -10.0, "oracle_return": 10.0, "plan_error": None,
            "planner": {"episodes": episodes}, "baseline_source": {"random": sources[0], "oracle": sources[1]},
            "curve": None if acc is None else [{"call": 1, "best": acc}]}


def test_without_planning_a_failed_synthesis_has_no_normalized_return():
    """--plan-episodes 0 measures no 𝓡; a run without a program must not make the split's 𝓡 0.00."""
    rows = [_row("CartPole-v1", 1.0, episodes=0), _row("Taxi-v3", None, episodes=0)]
    assert split_summary(rows, "gif-mcts")["discrete_normalized_return"] == (None, None, 0)
    planned = [_row("CartPole-v1", 1.0), _row("Taxi-v3", None)]  # planned: the failed synthesis counts 0
    assert split_summary(planned, "gif-mcts")["discrete_normalized_return"][0] == pytest.approx(0.25)


def _doc(rows: list[dict]) -> dict:
    bench = {"llm": "openai:m", "budget": 2, "seeds": 2, "methods": ["gif-mcts"], "plan_episodes": 10,
             "simulations": 25, "cem": "paper", "plan_max_steps": None, "describe": "docs"}
    versions = {"models": ["m"], "cwm": "0", "gymnasium": "1", "mujoco": "3", "numpy": "2", "prompt_set": "s"}
    return {"bench": bench, "versions": versions, "status": {"state": "complete", "runs": len(rows)}, "runs": rows}


def test_report_names_seeds_and_both_baseline_sources(tmp_path):
    rows = [_row("CartPole-v1", 1.0, seed=0) | {"ceiling": 0.99}, _row("CartPole-v1", 0.8, seed=1) | {"ceiling": 0.99},
            _row("Pendulum-v1", 0.5, sources=("computed", "paper")), _row("Pendulum-v1", 0.5, seed=1,
                                                                          sources=("computed", "paper"))]
    report = render(_doc(rows), [], None)
    assert "| m (2 seeds) | gif-mcts (ours) | 2 | 0.90 (1) |" in report
    assert "| Pendulum-v1 | continuous | 0.50 | 0.50 | – | 0.50 | random computed / oracle paper |" in report
    assert "| CartPole-v1 | discrete | 0.90 | 0.90 | 0.99 | 0.50 | computed |" in report
    assert "Llama 3 70B first seed" in report


def test_figures_draw_an_env_without_curves_without_warnings(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [_row("CartPole-v1", 1.0), _row("Taxi-v3", None)]  # Taxi: no program, so no curve to plot
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths, note = figures(_doc(rows), tmp_path)
    assert note is None and all(Path(p).stat().st_size > 1000 for p in paths)


def test_dry_run_input_bound_covers_a_repair_prompt_with_a_whole_program():
    """Every call after the first may carry an improve prompt with a program as long as a reply and the
    failing transitions; Humanoid's 376-number states make that prompt far longer than the first one."""
    from cwm.agents.prompts import improve
    from cwm.envs.dataset import load_for_env
    from cwm.envs.describe import describe

    spec = BenchSpec(llm="openai:m@http://127.0.0.1:9/v1", envs=["Humanoid-v4"], methods=["gif-mcts"], budget=3)
    (est,) = estimate(spec, [RunSpec("Humanoid-v4", "gif-mcts", 0)])
    ds = load_for_env("Humanoid-v4")
    wrong = {"state": ds.state[0], "action": ds.action[0], "mismatch": ["next_state"],
             "expected": {"next_state": ds.next_state[0], "reward": 1.0, "done": False},
             "predicted": {"next_state": ds.next_state[0] * 1.5, "reward": 0.0, "done": True}}
    prompt = improve(describe("Humanoid-v4"), ds, "y = 1\n" * 1000, [wrong] * 3)
    chars = sum(len(m.content) for m in prompt)
    assert est.input_tokens >= 2 * chars // 4  # two repair calls, each at least ~4 characters a token


def test_a_log_gets_progress_lines_between_finished_runs():
    stream = io.StringIO()
    progress = BenchProgress(2, 10, stream=stream, tty=False)
    progress.run_progress("a", {"calls": 1, "paid_calls": 1, "cost_usd": 0.01})
    progress.run_progress("a", {"calls": 2, "paid_calls": 2, "cost_usd": 0.02})
    assert len(stream.getvalue().splitlines()) == 1  # a log is not flooded
    progress._last -= LOG_EVERY_S  # as if a minute passed with the run still searching
    progress.run_progress("a", {"calls": 3, "paid_calls": 3, "cost_usd": 0.03})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "calls 3" in lines[-1] and "runs 0/2" in lines[-1]


def test_an_unpriced_bench_total_is_unknown_not_zero():
    """Without a price for the model every row's cost is null; the bench's total must not say $0."""
    stream = io.StringIO()
    progress = BenchProgress(2, 10, stream=stream, tty=False)
    progress.run_done("a", {"search_calls": 2, "llm_calls": 2, "cost_usd": None})
    assert progress.snapshot()["cost_usd"] is None and "$?" in stream.getvalue()
    priced = BenchProgress(1, 10, stream=io.StringIO())
    priced.run_done("a", {"search_calls": 2, "llm_calls": 2, "cost_usd": 0.5})
    priced.run_done("b", {"search_calls": 0, "llm_calls": 0, "cost_usd": None})  # no call made: nothing unknown
    assert priced.snapshot()["cost_usd"] == 0.5


def test_report_names_the_runs_left_out_and_why():
    doc = _doc([_row("CartPole-v1", 1.0)])
    doc["status"] |= {"state": "incomplete: some runs failed", "runs": 3,
                      "not_evaluated": ["Taxi-v3/gif-mcts/seed0", "Acrobot-v1/gif-mcts/seed0"],
                      "errors": {"Taxi-v3/gif-mcts/seed0": "LLM error: invalid api key"}}
    report = render(doc, [], None)
    assert ("1 of 3 runs evaluated. Not in the tables: Taxi-v3/gif-mcts/seed0 (LLM error: invalid api key); "
            "Acrobot-v1/gif-mcts/seed0 (not run).") in report


def test_table2_adds_the_papers_figures_over_the_same_envs():
    """A bench of CartPole and MountainCar compares with Tables 10/11 over those two envs, not with the
    paper's split means over six; whole splits need no such rows."""
    report = render(_doc([_row("CartPole-v1", 1.0), _row("MountainCar-v0", 0.5)]), [], None)
    # Table 10 (Llama 3, first seed) WorldCoder: accuracy 0.92 and 0.83; 𝓡 1.09 and N/A (left out)
    assert ("| Llama 3 70B (first seed) | WorldCoder (paper, these envs) | 50 | – | 0.88 ± 0.05 (2) | 1.09 (1) | "
            "– | – | – |") in report
    assert "| GPT-4 Turbo | GIF-MCTS (paper, these envs) | 10 | – | 1.00 ± 0.00 (2) | 0.99 (1) |" in report
    assert "not its 𝓡 errors" in report
    envs = ["Blackjack-v1", "CliffWalking-v0", "Taxi-v3", "CartPole-v1", "MountainCar-v0", "Acrobot-v1"]
    doc = _doc([_row(e, 1.0) for e in envs])
    doc["bench"]["envs"] = envs
    assert "(paper, these envs)" not in render(doc, [], None)


def test_a_plain_resume_keeps_the_benchs_cost_limit(tmp_path):
    """A bench stopped by --max-cost (or killed) and resumed without --max-cost must not run on unlimited:
    the limit is part of bench.json until a resume gives a new one."""
    out = tmp_path / "b"
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"fake": [1000.0, 1000.0]}))  # ~$0.015 a scripted call
    with serve_in_thread(FakeLLMServer(script())) as server:
        first = run(bench(out, server.base_url, "--prices", str(prices), "--max-cost", "0.02"))
        assert first.returncode == 1, first.stderr[-3000:]
        spent = server.answered
        again = run([*bench(out, server.base_url)[:4], "--out", str(out), "--resume", "--json"])
        assert again.returncode == 1 and server.answered == spent, again.stderr[-3000:]
        assert json.loads(again.stdout)["status"]["state"] == "stopped: --max-cost reached"
        more = run([*bench(out, server.base_url)[:4], "--out", str(out), "--resume", "--max-cost", "1"])
        assert more.returncode == 0, more.stderr[-3000:]
        assert json.loads((out / "bench.json").read_text())["extra"]["max_cost_usd"] == 1.0


def test_time_left_after_a_resume_ignores_runs_finished_before_it():
    """Three of four runs were done before this session; the fourth is half way after 100 s of this session:
    about 100 s are left, not the ~16 s that counting the earlier runs as this session's work would say."""
    progress = BenchProgress(4, 10, stream=io.StringIO())
    for key in ("a", "b", "c"):
        progress.run_done(key, {"search_calls": 10, "llm_calls": 10, "cost_usd": 0.1}, prior=True)
    progress.run_progress("d", {"calls": 5, "paid_calls": 5, "cost_usd": 0.05})
    progress.started -= 100.0
    snap = progress.snapshot()
    assert snap["runs_done"] == 3 and snap["cost_usd"] == pytest.approx(0.35)
    assert 100.0 < snap["eta_s"] < 150.0
