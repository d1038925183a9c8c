"""Optional OpenTelemetry spans: one per LLM call, sandbox evaluation and expansion, tagged with the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cwm import telemetry
from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.graph.run import RunConfig, synthesize
from fake_llm import fenced

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra")


@pytest.fixture
def spans() -> Iterator[object]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider)
    yield exporter
    telemetry.disable()


async def test_a_search_emits_spans_per_call_evaluation_and_expansion(spans: object, tmp_path: Path) -> None:
    async with FakeLLMServer([fenced("wrong_reward"), fenced("good", improve=True)]) as llm:
        summary = await synthesize(RunConfig(env="CartPole-v1", llm=f"openai:fake@{llm.base_url}", budget=4),
                                   tmp_path / "run")
    finished = spans.get_finished_spans()  # type: ignore[attr-defined]
    names = [s.name for s in finished]
    assert names.count("cwm.llm.call") == summary["llm_calls"] == 2
    assert names.count("cwm.expand") == 2
    assert names.count("cwm.sandbox.evaluate") >= 2  # feedback and held-out scoring of each program
    assert {s.attributes["cwm.run_id"] for s in finished} == {summary["run_id"]}
    # LLM calls and evaluations happen inside their expansion's span
    expand_ids = {s.context.span_id for s in finished if s.name == "cwm.expand"}
    assert all(s.parent is not None and s.parent.span_id in expand_ids
               for s in finished if s.name == "cwm.llm.call")


async def test_spans_are_off_by_default(tmp_path: Path) -> None:
    assert telemetry._state.tracer is None
