"""The Python API does what the CLI does: check, search and plan, end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import cwm.api as cwm_api
from cwm.agents.llm.fake_server import FakeLLMServer
from fake_llm import fenced

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def test_check_search_and_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))
    code = (EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8")
    report = await cwm_api.check(code, "CartPole-v1")
    assert report.passed and report.accuracy == 1.0
    wrong = await cwm_api.check(code.replace("1.0, done", "0.5, done"), "CartPole-v1", max_failures=2)
    assert not wrong.passed and len(wrong.failures) == 2

    async with FakeLLMServer([fenced("wrong_reward"), fenced("good", improve=True)]) as llm:
        summary = await cwm_api.synthesize("CartPole-v1", f"openai:fake@{llm.base_url}", out=tmp_path / "run",
                                           budget=4, describe="docs")
    assert summary["accuracy"] == 1.0 and summary["stop"] == "solved" and summary["llm_calls"] == 2

    result = await cwm_api.plan("CartPole-v1", str(tmp_path / "run"), episodes=1, max_steps=5, simulations=4)
    assert result["returns"] == [5.0] and result["planner"] == "mcts"


async def test_searches_hosted_together_share_a_pool_and_a_provider_cap(tmp_path: Path) -> None:
    from cwm.agents.llm import HttpPool, ProviderLimits

    reply = fenced("weak_force")
    reply.delay = 0.3
    async with FakeLLMServer(default=reply) as llm, HttpPool() as pool:
        limits = ProviderLimits(1)
        summaries = await asyncio.gather(*(
            cwm_api.synthesize("CartPole-v1", f"openai:fake@{llm.base_url}", out=tmp_path / f"run{i}", budget=2,
                               http=pool, limits=limits) for i in range(3)))
        assert not pool.closed  # lent, not closed by the searches
    assert [s["llm_calls"] for s in summaries] == [2, 2, 2]
    assert llm.max_in_flight == 1 and len(llm.requests) == 6
