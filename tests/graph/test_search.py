"""The search graph end to end over the scripted loopback LLM: real client, real sandbox, real checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import cycle
from pathlib import Path

import numpy as np
import pytest

from cwm.agents.llm.fake_server import Fail, FakeLLMServer, Reply
from cwm.agents.results import ExpansionResult
from cwm.envs.dataset import load_for_env
from cwm.graph.run import RunConfig, split_heldout, synthesize
from cwm.graph.tree import FeedbackGIFTree, GIFConfig, GIFTree
from fake_llm import VARIANTS, fenced, serve_in_thread


def cycling(names: list[str], delay: float = 0.0):
    it = cycle(names)

    def script(body: dict) -> Reply:
        improve = "## Correct code" in body["messages"][-1]["content"]
        reply = fenced(next(it), improve=improve)
        reply.delay = delay
        return reply

    return script


MIX = ["name_error", "weak_force", "never_done", "wrong_reward", "weak_force", "never_done"]


@pytest.mark.parametrize(("method", "tree_class"), [("gif-mcts-paper", GIFTree), ("gif-mcts", FeedbackGIFTree)])
async def test_k1_graph_reproduces_sequential_gif_mcts(tmp_path, method, tree_class):
    async with FakeLLMServer(cycling(MIX)) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=10,
                                             seed=7, method=method), tmp_path / "run")
    assert summary["search_calls"] == 10 and summary["stop"] == "budget"
    saved = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))
    assert (saved["kind"], saved["version"]) == (method, tree_class.version)
    recorded = saved["nodes"]
    # replay the graph's expansion results through the pure tree, one select/apply at a time
    tree = tree_class(GIFConfig(seed=7))
    for node in recorded[1:]:
        sel = tree.select()
        assert (sel.parent, sel.key) == (node["parent"], node["key"])
        tree.apply(sel, ExpansionResult(node["program"], node["score"], node["was_bug"], node["heldout"],
                                        node["feedback"], node["error"], node["failures"]))
    assert [n.__dict__ for n in tree.nodes] == [
        {**n, "children": n["children"], "pending": {}} for n in recorded]
    kinds = {n["action"] for n in recorded[1:]}
    assert {"g", "f"} <= kinds  # the name-error program was fixed at least once


async def test_early_stop_on_a_perfect_program(tmp_path):
    async with FakeLLMServer([fenced("wrong_reward"), fenced("good", improve=True)],
                             default=fenced("weak_force")) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=10),
                                   tmp_path / "run")
    assert summary["stop"] == "solved" and summary["accuracy"] == 1.0
    assert summary["heldout_accuracy"] == 1.0 and summary["search_calls"] == 2
    best = Path(summary["program"]).read_text(encoding="utf-8")
    assert best == VARIANTS["good"]
    trace = [json.loads(line)["event"] for line in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()]
    for event in ("mcts.select", "llm.response", "sandbox.result", "mcts.expand", "mcts.backprop", "mcts.best"):
        assert event in trace


async def test_k_expansions_in_flight(tmp_path):
    async with FakeLLMServer(cycling(["weak_force", "never_done"], delay=0.3)) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=8,
                                             concurrency=4), tmp_path / "run")
    assert summary["search_calls"] == 8
    # four calls overlapped at the server, never more: concurrency measured by the server, not by a clock
    assert server.max_in_flight == 4


async def test_a_failing_branch_keeps_its_siblings_work(tmp_path):
    replies = [fenced("weak_force"), Fail(400, "bad request"), fenced("never_done")]
    async with FakeLLMServer(replies, default=fenced("weak_force")) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=6,
                                             concurrency=3), tmp_path / "run")
    assert summary["stop"].startswith("LLM error")
    assert summary["nodes"] == 2 and summary["llm_calls"] == 2  # both siblings were kept


@pytest.mark.parametrize("method", ["worldcoder", "best-of-n"])
async def test_baselines_share_the_graph(tmp_path, method):
    async with FakeLLMServer(cycling(["name_error", "weak_force", "never_done"])) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=5,
                                             method=method), tmp_path / "run")
    nodes = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))["nodes"][1:]
    assert len(nodes) == 5 and summary["method"] == method
    actions = [n["action"] for n in nodes]
    if method == "best-of-n":
        assert set(actions) == {"g"} and all(n["parent"] == 0 for n in nodes)
    else:
        assert actions[0] == "g" and set(actions[1:]) <= {"i", "f"}
        assert actions[1] == "f"  # the seed program raised NameError: refine it with fix
        assert summary["accuracy"] == max(n["score"] for n in nodes)


def test_heldout_split_is_seeded_and_disjoint():
    ds = load_for_env("CartPole-v1")
    fb, held = split_heldout(ds, 0.2, seed=3)
    _fb2, held2 = split_heldout(ds, 0.2, seed=3)
    assert held is not None and np.array_equal(held.state, held2.state)
    assert len(set(fb.trajectory.tolist()) & set(held.trajectory.tolist())) == 0
    assert len(fb) + len(held) == len(ds) and len(np.unique(held.trajectory)) == 2


async def test_heldout_transitions_never_reach_the_llm(tmp_path):
    async with FakeLLMServer(cycling(["weak_force", "never_done"])) as server:
        await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=6, seed=1,
                                   method="worldcoder"),
                         tmp_path / "run")
        prompts = "\n".join(r["body"]["messages"][-1]["content"] for r in server.requests)
    _, held = split_heldout(load_for_env("CartPole-v1"), 0.2, seed=1)
    from cwm.agents.prompts import _fmt

    assert "Input state" in prompts
    assert not any(_fmt(held.state_value(i)) in prompts for i in range(len(held)))


def test_resume_after_sigkill_pays_no_call_twice(tmp_path):
    run_dir = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(cycling(["weak_force", "never_done", "wrong_reward"], delay=0.4))) as server:
        argv = [sys.executable, "-m", "cwm.cli", "synthesize", "--env", "CartPole-v1", "--llm",
                f"openai:fake@{server.base_url}", "--budget", "8", "--concurrency", "2", "--out", str(run_dir),
                "--json"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while server.answered < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        answered_before = server.answered
        assert 3 <= answered_before < 8
        done = subprocess.run([sys.executable, "-m", "cwm.cli", "synthesize", "--resume", str(run_dir), "--json"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1, done.stderr[-2000:]  # ran, did not solve
        summary = json.loads(done.stdout)
    assert summary["search_calls"] == 8
    assert summary["llm_calls"] == server.answered  # billed replies, across both segments
    # every expansion's reply was paid for exactly once: replies received before the kill replay from the
    # run's cache; only requests that were cut mid-flight were sent again
    assert server.answered == 8
    nodes = json.loads((run_dir / "tree.json").read_text(encoding="utf-8"))["nodes"]
    assert len(nodes) == 9


def test_cli_synthesize_json_contract(tmp_path, capsys):
    from cwm.cli import main

    with serve_in_thread(FakeLLMServer(default=fenced("good"))) as server:
        code = main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget",
                     "3", "--out", str(tmp_path / "r"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "heldout_accuracy", "llm_calls", "tokens", "cost_usd", "wall_s", "run_dir", "program"):
        assert key in out
    assert out["accuracy"] == 1.0 and Path(out["program"]).is_file()
    for name in ("config.json", "checkpoint.sqlite", "trace.jsonl", "tree.json", "summary.json"):
        assert (tmp_path / "r" / name).is_file()
    # a second run into the same directory is refused with a hint to resume
    assert main(["synthesize", "--env", "CartPole-v1", "--llm", "openai:x@http://127.0.0.1:9/v1", "--out",
                 str(tmp_path / "r")]) == 2
    assert "--resume" in capsys.readouterr().err


async def test_planner_node_runs_after_the_search(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))
    async with FakeLLMServer(default=fenced("good")) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=2,
                                             plan_episodes=1), tmp_path / "run")
    plan = summary["plan"]
    assert plan is not None and plan["returns"] and plan["mean_return"] > 100
    trace = (tmp_path / "run" / "trace.jsonl").read_text(encoding="utf-8")
    assert '"plan.result"' in trace
