"""The real LLM client against a scripted loopback server (both APIs): answers, faults, cache, cassettes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import structlog

from cwm.agents.llm import (
    Cassette,
    LLMAuthError,
    LLMClient,
    LLMError,
    LLMRequestError,
    LLMUnavailable,
    Message,
    PriceTable,
    ResponseCache,
    SamplingParams,
    TransportConfig,
)
from cwm.agents.llm.fake_server import Drop, Fail, FakeLLMServer, Malformed, Reply, Truncate

MSGS = [Message("system", "You write Python."), Message("user", "Write a CartPole model.")]
FAST = TransportConfig(retries=3, backoff_base=0.01, backoff_cap=0.05, read_timeout=5, call_timeout=10)


def client(server: FakeLLMServer, api: str = "openai", **kw) -> LLMClient:
    kw.setdefault("transport", FAST)
    return LLMClient.from_string(f"{api}:fake-model@{server.base_url}", **kw)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_answers_and_usage(api, stream, monkeypatch):
    monkeypatch.setenv("CWM_LLM_API_KEY" if api == "openai" else "ANTHROPIC_API_KEY", "sk-secret-123")
    async with FakeLLMServer([Reply("class Environment: pass", usage=(120, 30))]) as server:
        c = client(server, api, stream=stream)
        out = await c.complete(MSGS, SamplingParams(temperature=0.3, top_p=0.9, max_tokens=77))
    assert out.text == "class Environment: pass"
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.estimated) == (120, 30, False)
    body, headers = server.requests[0]["body"], server.requests[0]["headers"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 77 and body["temperature"] == 0.3
    if api == "anthropic":
        assert body["system"] == "You write Python." and [m["role"] for m in body["messages"]] == ["user"]
        assert headers["x-api-key"] == "sk-secret-123" and headers["anthropic-version"]
    else:
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert headers["Authorization"] == "Bearer sk-secret-123"
    assert c.accounting.calls == 1 and c.accounting.tokens == 150


async def test_missing_usage_is_estimated():
    async with FakeLLMServer([Reply("x" * 400, usage=None)]) as server:
        out = await client(server).complete(MSGS)
    assert out.usage.estimated and out.usage.output_tokens == 100


async def test_retry_after_is_honoured():
    async with FakeLLMServer([Fail(429, retry_after=0.3), Fail(429, retry_after_ms=100), Reply("ok")]) as server:
        t0 = time.monotonic()
        out = await client(server).complete(MSGS)
        elapsed = time.monotonic() - t0
    assert out.text == "ok" and out.attempts == 3
    assert elapsed >= 0.4


@pytest.mark.parametrize("fault", [Fail(500), Fail(503), Fail(529), Drop(), Malformed()],
                         ids=["500", "503", "529-overloaded", "dropped", "malformed-json"])
async def test_transient_faults_are_retried(fault):
    async with FakeLLMServer([fault, fault, Reply("ok")]) as server:
        out = await client(server).complete(MSGS)
    assert out.text == "ok" and out.attempts == 3 and len(server.requests) == 3


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_truncated_stream_is_retried(api):
    async with FakeLLMServer([Truncate("class Env"), Reply("class Environment: pass")]) as server:
        out = await client(server, api, stream=True).complete(MSGS)
    assert out.text == "class Environment: pass" and out.attempts == 2


async def test_retries_run_out_with_a_clear_error():
    async with FakeLLMServer(default=Fail(503, "overloaded")) as server:
        with pytest.raises(LLMUnavailable, match=r"giving up after 4 attempts: HTTP 503"):
            await client(server).complete(MSGS)
    assert len(server.requests) == 4


@pytest.mark.parametrize(("fault", "error", "needle"), [
    (Fail(401, "invalid x-api-key"), LLMAuthError, "authentication failed"),
    (Fail(400, "This model's maximum context length is 8192 tokens"), LLMRequestError, "context window"),
    (Fail(404, "model 'gpt-9' not found"), LLMRequestError, "not found"),
    (Fail(422, "temperature must be <= 2"), LLMRequestError, "request rejected"),
])
async def test_non_retryable_errors_surface_at_once(fault, error, needle, monkeypatch):
    monkeypatch.setenv("CWM_LLM_API_KEY", "sk-do-not-print")
    async with FakeLLMServer([fault]) as server:
        with pytest.raises(error, match=needle) as info:
            await client(server).complete(MSGS)
    assert len(server.requests) == 1
    assert "sk-do-not-print" not in str(info.value)
    assert info.value.hint


async def test_concurrency_limit_per_provider():
    async with FakeLLMServer(default=Reply("ok", delay=0.1)) as server:
        c = client(server, transport=TransportConfig(concurrency=3, call_timeout=10))
        outs = await c.sample(MSGS, k=9)
    assert len(outs) == 9 and server.max_in_flight == 3


async def test_k_samples_are_concurrent_distinct_calls():
    async with FakeLLMServer(default=Reply("ok", delay=0.2)) as server:
        outs = await client(server).sample(MSGS, SamplingParams(temperature=1.0), k=4)
    assert len(outs) == 4 and len(server.requests) == 4
    assert server.max_in_flight == 4  # concurrent, not one after another


async def test_cache_replays_paid_calls(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    async with FakeLLMServer(default=Reply("answer", usage=(50, 20))) as server:
        first = await client(server, cache=cache).sample(MSGS, k=2)
        again = client(server, cache=cache)
        second = await again.sample(MSGS, k=3)
    assert [c.cached for c in first] == [False, False]
    assert [c.cached for c in second] == [True, True, False]  # sample 2 is a new call
    assert len(server.requests) == 3
    assert again.accounting.cached_calls == 2 and again.accounting.calls == 1
    different = SamplingParams(temperature=0.1)
    from cwm.agents.llm import call_key
    assert call_key(again.spec, MSGS, different, 0) != call_key(again.spec, MSGS, SamplingParams(), 0)


async def test_cassette_record_then_replay_without_a_server(tmp_path):
    path = tmp_path / "run.jsonl"
    async with FakeLLMServer([Reply("one"), Reply("two")]) as server:
        rec = client(server, cassette=Cassette(path, "record"))
        recorded = [c.text for c in await rec.sample(MSGS, k=2)]
        url = server.base_url
    replay = LLMClient.from_string(f"openai:fake-model@{url}", cassette=Cassette(path, "replay"), transport=FAST)
    replayed = [c.text for c in await replay.sample(MSGS, k=2)]
    assert replayed == recorded and all(c.cached for c in replay.accounting.records)
    with pytest.raises(LLMError, match="no recorded response"):
        await replay.complete([Message("user", "something new")])


async def test_cancellation_closes_the_request():
    async with FakeLLMServer(default=Reply("slow", delay=5)) as server:
        task = asyncio.create_task(client(server).complete(MSGS))
        while not server.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if server.disconnects:
                break
            await asyncio.sleep(0.01)
    assert server.disconnects == 1


async def test_whole_call_timeout():
    async with FakeLLMServer(default=Reply("slow", delay=3)) as server:
        c = client(server, transport=TransportConfig(retries=0, call_timeout=0.3))
        with pytest.raises(LLMUnavailable, match=r"took longer than 0\.3 s") as info:
            await c.complete(MSGS)
    assert info.value.attempts == 1 and "--timeout" in (info.value.hint or "")


async def test_read_silence_timeout_is_retried():
    async with FakeLLMServer([Reply("late", delay=1.0), Reply("fast")]) as server:
        c = client(server, transport=TransportConfig(retries=2, backoff_base=0.01, read_timeout=0.3))
        out = await c.complete(MSGS)
    assert out.text == "fast" and out.attempts == 2


async def test_cost_accounting_with_a_price_table(tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text('{"fake-model": [2.0, 8.0]}', encoding="utf-8")
    async with FakeLLMServer(default=Reply("x", usage=(1_000_000, 500_000))) as server:
        c = client(server, prices=PriceTable.from_file(prices))
        await c.sample(MSGS, k=2)
    assert c.accounting.cost_usd == pytest.approx(2 * (2.0 + 4.0))
    assert c.accounting.summary()["tokens"] == 3_000_000


async def test_trace_events_carry_metadata_but_no_key(monkeypatch):
    monkeypatch.setenv("CWM_LLM_API_KEY", "sk-never-logged")
    async with FakeLLMServer([Fail(429, retry_after=0), Reply("ok")]) as server:
        with structlog.testing.capture_logs() as events:
            await client(server).complete(MSGS)
    names = [e["event"] for e in events]
    assert "llm.retry" in names and "llm.response" in names
    assert "sk-never-logged" not in repr(events)
    resp = next(e for e in events if e["event"] == "llm.response")
    assert resp["input_tokens"] == 10 and resp["cached"] is False


def test_cli_ask_over_loopback(capsys, tmp_path):
    """`cwm ask` through the real CLI path: two concurrent samples, then a replay from the cassette."""
    from cwm.cli import main
    from fake_llm import serve_in_thread

    cassette = tmp_path / "c.jsonl"
    with serve_in_thread(FakeLLMServer(default=Reply("pong", usage=(3, 1)))) as server:
        url = server.base_url
        argv = ["ask", "ping", "--llm", f"openai:fake@{url}", "-k", "2", "--json", "--no-cache",
                "--record", str(cassette)]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert [c["text"] for c in out["completions"]] == ["pong", "pong"] and out["llm_calls"] == 2
    assert main(["ask", "ping", "--llm", f"openai:fake@{url}", "-k", "2", "--json", "--replay", str(cassette)]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["llm_calls"] == 0 and replayed["cached_calls"] == 2
    assert main(["ask", "ping", "--llm", "nope:x"]) == 2
