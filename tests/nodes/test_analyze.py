"""The analyze node over the scripted server's tool calls (both wire APIs): results, errors, limits, budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.graph.run import RunConfig, synthesize
from fake_llm import fenced


def analyst(turns: list[list[tuple[str, dict | str]]]):
    """Generate writes the near-perfect program; the analyze node's turns call the given tools, then (or
    whenever tools are not offered) it answers with the correct program."""
    state = {"turn": 0}

    def script(body: dict) -> Reply:
        if not body.get("tools"):
            text = json.dumps(body["messages"][-1])
            return fenced("good") if "corrected program" in text or "Current program" in text else \
                fenced("terminal_reward")
        k = state["turn"]
        state["turn"] += 1
        if k < len(turns):
            return Reply("Let me look.", tool_calls=turns[k])
        return fenced("good")

    return script


def events(run: Path, name: str) -> list[dict]:
    out = [json.loads(x) for x in (run / "trace.jsonl").read_text(encoding="utf-8").splitlines()]
    return [e for e in out if e["event"] == name]


def results(server: FakeLLMServer, i: int) -> list[str]:
    return [text for _id, text in server.tool_results(i)]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_analyze_calls_tools_gets_errors_back_and_fixes(tmp_path, api):
    turns = [[("run_analysis", {"code": "print(sorted(set(reward[done].tolist())))"}), ("no_such_tool", {})],
             [("show_transitions", "{not json")]]
    run = tmp_path / "run"
    async with FakeLLMServer(analyst(turns)) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"{api}:fake@{server.base_url}", budget=8,
                                             nodes=["analyze"]), run)
    tree = json.loads((run / "tree.json").read_text(encoding="utf-8"))
    assert [n["action"] for n in tree["nodes"]] == ["root", "g", "analyze"]
    assert tree["nodes"][2]["score"] == 1.0 and summary["stop"] == "solved"
    assert summary["search_calls"] == 4  # generate, then three analyze turns
    assert set(server.offered_tools(1)) == {"check_program", "run_analysis", "show_transitions", "describe_env"}
    second = results(server, 2)
    assert second[0].strip() == "[1.0]" and second[1].startswith("error: KeyError")
    assert "not a JSON object" in results(server, 3)[-1]
    calls = events(run, "tool.call")
    assert [(c["tool"], c["ok"]) for c in calls] == [("run_analysis", True), ("no_such_tool", False),
                                                      ("show_transitions", False)]
    assert all(c["run_id"] == summary["run_id"] and c["node"] == "analyze" for c in calls)
    saved = json.loads((run / "llm" / "000001.json").read_text(encoding="utf-8"))
    assert saved["node"] == "analyze" and len(saved["turns"]) == 3 and saved["tool_calls"] == 2


async def test_analyze_turns_stop_at_the_node_limit(tmp_path):
    endless = [[("describe_env", {})]] * 50
    run = tmp_path / "run"
    async with FakeLLMServer(analyst(endless)) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=20,
                                             nodes=["analyze"]), run)
        requests = [r["body"] for r in server.requests]
    # analyze: 5 turns with tools, the 6th (its limit) asks for the program without tools
    assert [bool(r.get("tools")) for r in requests[1:7]] == [True] * 5 + [False]
    assert "You have used your tool calls" in json.dumps(requests[6]["messages"][-1])
    assert summary["search_calls"] == 7 and summary["stop"] == "solved"


async def test_analyze_turns_count_against_the_run_budget(tmp_path):
    run = tmp_path / "run"
    async with FakeLLMServer(analyst([[("describe_env", {})]] * 50)) as server:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=3,
                                             nodes=["analyze"]), run)
        requests = [r["body"] for r in server.requests]
    assert len(requests) == 3 and summary["search_calls"] == 3  # 1 generate + 2 analyze turns, no more
    assert [bool(r.get("tools")) for r in requests] == [False, True, False]


async def test_analyze_tool_calls_have_their_own_limit(tmp_path):
    five = [("describe_env", {})] * 5
    run = tmp_path / "run"
    async with FakeLLMServer(analyst([five] * 10)) as server:
        await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=20,
                                   nodes=["analyze"]), run)
        requests = [r["body"] for r in server.requests]
    calls = events(run, "tool.call")
    assert sum(c["ok"] for c in calls) == 8  # the analyze node's limit
    assert [c.get("refused", "")[:23] for c in calls if not c["ok"]] == ["tool call limit reached"] * 2
    assert results(server, 3)[-2:] == ["error: tool call limit reached; write the program now"] * 2
    assert not requests[3].get("tools")  # limit used up: the next turn asks for the program
