"""The search methods on two scripted models, end to end (real client, sandbox, graph), and how runs made
before methods had versions resume.

"strong": every generate writes the same near-perfect CartPole program (wrong terminal reward); shown that
program with a failing transition, it writes the correct one. "weak": by call order, a program that does
not run, one with wrong physics, then the correct one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.errors import CwmError
from cwm.graph.methods import METHODS, load_controller, resolve
from cwm.graph.run import RunConfig, load_config, synthesize
from cwm.graph.tree import FeedbackGIFTree, GIFTree
from fake_llm import fenced, strong_model, weak_model


async def run(tmp_path: Path, method: str, script, *, k: int = 1, budget: int = 8, default=None,
              name: str = "run") -> tuple[dict, list[dict], FakeLLMServer]:
    async with FakeLLMServer(script, default=default) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}",
                                             budget=budget, concurrency=k, method=method), tmp_path / name)
    nodes = json.loads((tmp_path / name / "tree.json").read_text(encoding="utf-8"))["nodes"][1:]
    return summary, nodes, server


@pytest.mark.parametrize("k", [1, 2])
async def test_strong_model_default_reaches_1_within_4_calls(tmp_path, k):
    summary, nodes, server = await run(tmp_path, "gif-mcts", strong_model(), k=k)
    assert summary["stop"] == "solved" and summary["accuracy"] == 1.0
    assert summary["search_calls"] <= 4 and summary["heldout_accuracy"] == 1.0
    assert "i" in [n["action"] for n in nodes]
    # the improve showed the program with its failing transition, wrong in the reward, values as floats
    improves = [r["body"]["messages"][-1]["content"] for r in server.requests
                if "gets wrong" in r["body"]["messages"][-1]["content"]]
    assert improves and "Wrong: reward" in improves[0]


async def test_strong_model_paper_mode_keeps_generating(tmp_path):
    """The paper's algorithm, pinned: on a strong model it generates every time (the issue's finding)."""
    summary, nodes, _ = await run(tmp_path, "gif-mcts-paper", strong_model(), budget=6)
    assert summary["stop"] == "budget" and summary["search_calls"] == 6
    assert summary["accuracy"] == pytest.approx(0.98709677, abs=1e-6)
    assert [(n["action"], n["parent"], n["duplicate_of"]) for n in nodes] == [
        ("g", 0, None), ("g", 1, 1), ("g", 2, 1), ("g", 3, 1), ("g", 4, 1), ("g", 5, 1)]


async def test_duplicates_are_counted_marked_and_not_scored_again(tmp_path):
    summary, nodes, server = await run(tmp_path, "gif-mcts-paper", strong_model(), budget=4)
    assert server.answered == summary["search_calls"] == 4  # every call counted, duplicate or not
    assert [n["duplicate_of"] for n in nodes] == [None, 1, 1, 1]
    assert all(n["score"] == nodes[0]["score"] and n["failures"] == nodes[0]["failures"] for n in nodes)
    events = [json.loads(line) for line in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()]
    scored = [e for e in events if e["event"] == "sandbox.result"]
    assert [e.get("duplicate") for e in scored] == [None, 1, 1, 1]
    assert sum("accuracy" in e for e in scored) == 1  # only the first was run in the sandbox
    assert [e["duplicate"] for e in events if e["event"] == "mcts.expand"] == [None, 1, 1, 1]


async def test_weak_model_default_is_no_worse_than_paper(tmp_path):
    calls = {}
    for method in ("gif-mcts", "gif-mcts-paper"):
        summary, nodes, _ = await run(tmp_path, method, weak_model(), default=fenced("good"), name=method)
        assert summary["stop"] == "solved"
        assert [n["action"] for n in nodes][:2] == ["g", "f"]  # the program that does not run is fixed
        calls[method] = summary["search_calls"]
    assert calls["gif-mcts"] <= calls["gif-mcts-paper"]


async def test_a_run_from_before_versions_resumes_under_the_paper_rules(tmp_path):
    summary, _, _ = await run(tmp_path, "gif-mcts-paper", strong_model(), budget=2)
    cfg_path = tmp_path / "run" / "config.json"
    saved = json.loads(cfg_path.read_text(encoding="utf-8"))
    assert (saved["method"], saved["method_version"]) == ("gif-mcts-paper", 1)
    legacy = {k: v for k, v in saved.items() if k != "method_version"}
    cfg_path.write_text(json.dumps({**legacy, "method": "gif-mcts"}), encoding="utf-8")  # as written then
    cfg = load_config(tmp_path / "run")
    assert (cfg.method, cfg.method_version) == ("gif-mcts-paper", 1)
    async with FakeLLMServer(strong_model()) as server:
        # resumed the way the service does: a fresh config naming "gif-mcts", the run directory decides
        fresh = RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=5, method="gif-mcts")
        summary = await synthesize(fresh, tmp_path / "run", resume=True)
    assert summary["method"] == "gif-mcts-paper" and summary["stop"] == "budget"  # not solved: paper rules
    nodes = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))["nodes"][1:]
    assert [n["action"] for n in nodes] == ["g"] * 5


def test_checkpoints_resume_under_the_rules_they_were_made_with():
    new = FeedbackGIFTree()
    assert type(load_controller(new.to_dict())) is FeedbackGIFTree
    legacy = {**GIFTree().to_dict(), "kind": "gif-mcts"}
    del legacy["version"]
    assert type(load_controller(legacy)) is GIFTree  # "gif-mcts" without a version was the paper's rules
    with pytest.raises(CwmError, match="version 1"):
        load_controller({**new.to_dict(), "version": 1})
    with pytest.raises(CwmError, match="unknown search method"):
        resolve("mcts-deluxe", 1)
    assert list(METHODS)[:2] == ["gif-mcts", "gif-mcts-paper"]


def test_cli_method_choices_come_from_the_registry(capsys):
    from cwm.cli import main

    assert main(["synthesize", "--env", "CartPole-v1", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and all(repr(name) in err for name in METHODS)
