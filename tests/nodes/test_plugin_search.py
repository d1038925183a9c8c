"""Plugin nodes in real searches over the scripted loopback LLM: selected, budgeted, traced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer, Rules
from cwm.errors import CwmError
from cwm.graph.run import RunConfig, synthesize
from fake_llm import fenced

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def focus_model() -> Rules:
    """Writes the near-perfect program; shown its wrong rewards by the focus plugin, the correct one."""
    return Rules([(("## Wrong predictions of reward",), fenced("good"))], default=fenced("terminal_reward"))


def trace(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trace.jsonl").read_text(encoding="utf-8").splitlines()]


def cfg(server, **kw) -> RunConfig:
    return RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", seed=3, **kw)


async def test_module_attr_node_is_tried_early_and_solves(tmp_path, examples_path):
    run = tmp_path / "run"
    async with FakeLLMServer(focus_model()) as server:
        summary = await synthesize(cfg(server, budget=6, nodes=["plugin_node:Focus"]), run)
    tree = json.loads((run / "tree.json").read_text(encoding="utf-8"))
    actions = [n["action"] for n in tree["nodes"]]
    assert actions[:3] == ["root", "g", "focus"]  # the new node type goes first once a program exists
    assert tree["nodes"][2]["score"] == 1.0 and summary["stop"] == "solved"
    assert tree["config"]["extra_actions"] == [{"name": "focus", "prior": 0.5, "prior_gain": 0.05,
                                                "needs_parent": True}]
    events = trace(run)
    sel = [e for e in events if e["event"] == "mcts.select"]
    assert (sel[1]["action"], sel[1]["reason"]) == ("focus", "first-try")
    tools = [e for e in events if e["event"] == "tool.call"]
    assert [t["tool"] for t in tools] == ["show_transitions", "run_analysis"]
    assert all(t["run_id"] == summary["run_id"] and t["node"] == "focus" and t["ok"] for t in tools)
    assert any(e["event"] == "focus.inspected" for e in events)
    prompt = json.loads((run / "llm" / "000001.json").read_text(encoding="utf-8"))
    assert prompt["node"] == "focus" and "reward values: [1.0]" in prompt["messages"][-1]["content"]


async def test_without_the_node_the_same_model_does_not_use_it(tmp_path):
    async with FakeLLMServer(focus_model()) as server:
        await synthesize(cfg(server, budget=3), tmp_path / "run")
    tree = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))
    assert "focus" not in {n["action"] for n in tree["nodes"]}
    assert all("focus#1" not in n["children"] for n in tree["nodes"])


async def test_failing_plugin_is_a_buggy_child_not_a_crash(tmp_path, monkeypatch):
    mod = tmp_path / "boom_node.py"
    mod.write_text("async def boom(ctx):\n    raise RuntimeError('plugin broke')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with FakeLLMServer(focus_model()) as server:
        summary = await synthesize(cfg(server, budget=4, nodes=["boom_node:boom"]), tmp_path / "run")
    tree = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))
    boom = [n for n in tree["nodes"] if n["action"] == "boom"]
    assert boom and boom[0]["bug"] and "plugin broke" in boom[0]["error"]
    assert summary["search_calls"] == 4  # a node that made no LLM call still uses one expansion


@pytest.mark.parametrize(("method", "ref", "action"), [("worldcoder", "plugin_node:Focus", "focus"),
                                                        ("best-of-n", "scratch_node:scratch", "scratch")])
async def test_baselines_take_a_node_as_their_step(tmp_path, examples_path, monkeypatch, method, ref, action):
    (tmp_path / "scratch_node.py").write_text(
        "async def scratch(ctx):\n"
        "    from fake_llm import VARIANTS\n"
        "    return VARIANTS['weak_force']\n"
        "scratch.needs_parent = False\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with FakeLLMServer(focus_model()) as server:
        await synthesize(cfg(server, budget=3, method=method, nodes=[ref]), tmp_path / "run")
    tree = json.loads((tmp_path / "run" / "tree.json").read_text(encoding="utf-8"))
    assert action in [n["action"] for n in tree["nodes"][1:]]


def test_paper_method_keeps_generate_improve_fix(examples_path):
    from cwm.graph.methods import new_controller
    from cwm.nodes import resolve_node

    extra = (resolve_node("plugin_node:Focus").action(),)
    with pytest.raises(CwmError, match="generate, improve and fix only"):
        new_controller("gif-mcts-paper", 0, None, extra)
    with pytest.raises(CwmError, match="one --node"):
        new_controller("worldcoder", 0, None, (*extra, resolve_node("analyze").action()))


def test_cli_node_flag_runs_the_plugin_and_resume_keeps_it(tmp_path, examples_path, capsys):
    from cwm.cli import main
    from fake_llm import serve_in_thread

    out = tmp_path / "r"
    with serve_in_thread(FakeLLMServer(focus_model())) as server:
        code = main(["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget",
                     "1", "--node", "plugin_node:Focus", "--out", str(out), "--json"])
        assert code == 1  # one call: the near-perfect generate, not solved yet
        assert json.loads((out / "config.json").read_text(encoding="utf-8"))["nodes"] == ["plugin_node:Focus"]
        capsys.readouterr()
        code = main(["synthesize", "--resume", str(out), "--budget", "3", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    tree = json.loads((out / "tree.json").read_text(encoding="utf-8"))
    assert [n["action"] for n in tree["nodes"]] == ["root", "g", "focus"]
