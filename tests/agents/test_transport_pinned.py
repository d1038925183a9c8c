"""LLM transport and cache pinned to exact values: Retry-After parsing and its cap, backoff bounds, retry
counts and waits against a loopback aiohttp server, and which inputs change a cache key."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from cwm.agents.llm import transport as tr
from cwm.agents.llm.cache import KEY_VERSION, ResponseCache, cache_root, call_key, default_cache_dir
from cwm.agents.llm.spec import ProviderSpec
from cwm.agents.llm.transport import RETRYABLE, Transport, TransportConfig, server_delay
from cwm.agents.llm.types import LLMError, LLMUnavailable, Message, SamplingParams

# --- Retry-After ------------------------------------------------------------------------------------------------


def test_retry_after_in_seconds_and_milliseconds():
    assert server_delay({"Retry-After": "7"}) == 7.0
    assert server_delay({"Retry-After": "0.25"}) == 0.25
    assert server_delay({"Retry-After": "-3"}) == 0.0
    assert server_delay({"retry-after-ms": "1500"}) == 1.5
    assert server_delay({"retry-after-ms": "-5"}) == 0.0
    # the millisecond header wins over the seconds header; a malformed one falls back to it
    assert server_delay({"retry-after-ms": "200", "Retry-After": "9"}) == 0.2
    assert server_delay({"retry-after-ms": "soon", "Retry-After": "9"}) == 9.0
    assert server_delay({}) is None
    assert server_delay({"Retry-After": "whenever"}) is None


def test_retry_after_as_an_http_date():
    when = datetime.fromtimestamp(time.time() + 30, tz=UTC)
    delay = server_delay({"Retry-After": format_datetime(when, usegmt=True)})
    assert delay is not None and 27.0 < delay <= 30.0
    past = datetime.fromtimestamp(time.time() - 300, tz=UTC)
    assert server_delay({"Retry-After": format_datetime(past, usegmt=True)}) == 0.0


def test_backoff_honours_the_server_up_to_the_cap():
    t = Transport("p", None, TransportConfig(max_server_wait=10.0), rng=random.Random(0))
    for _ in range(20):
        assert 3.0 <= t.backoff(0, 3.0) <= 3.05
        assert 10.0 <= t.backoff(5, 500.0) <= 10.05  # a server asking for 500 s waits 10
        assert 0.0 <= t.backoff(2, 0.0) <= 0.05


def test_backoff_without_a_hint_is_full_jitter_exponential_and_capped():
    cfg = TransportConfig(backoff_base=0.5, backoff_cap=3.0)
    t = Transport("p", None, cfg, rng=random.Random(1))
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (8, 3.0)]:
        waits = [t.backoff(attempt, None) for _ in range(400)]
        assert min(waits) >= 0.0 and max(waits) <= ceiling
        assert max(waits) > 0.9 * ceiling  # full jitter: spreads over the whole range
        assert min(waits) < 0.1 * ceiling


def test_transport_defaults():
    c = TransportConfig()
    assert (c.retries, c.backoff_base, c.backoff_cap, c.max_server_wait) == (6, 0.5, 30.0, 120.0)
    assert {408, 409, 425, 429, 500, 502, 503, 504, 529} == RETRYABLE


# --- retries against a loopback server ---------------------------------------------------------------------------


class Script:
    """Replies in order; the last one repeats."""

    def __init__(self, replies: list[tuple[int, dict[str, str], str]]) -> None:
        self.replies = replies
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        status, headers, body = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return web.Response(status=status, headers=headers, text=body)


@pytest.fixture
async def serve():
    runners: list[web.AppRunner] = []

    async def start(script: Script) -> str:
        app = web.Application()
        app.router.add_post("/v1", script.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for r in runners:
        await r.cleanup()


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """Record the transport's sleeps instead of sleeping."""
    seen: list[float] = []
    real_sleep = tr.asyncio.sleep

    async def fake_sleep(delay: float, *a: Any, **k: Any) -> None:
        seen.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(tr.asyncio, "sleep", fake_sleep)
    return seen


OK = (200, {}, '{"answer": 1}')


async def test_retry_after_seconds_then_success(serve, waits):
    script = Script([(429, {"Retry-After": "4"}, "slow down"), (503, {"retry-after-ms": "250"}, "busy"), OK])
    url = await serve(script)
    t = Transport("p", None, TransportConfig(retries=3), rng=random.Random(0))
    body, attempts = await t.call(url, {}, {"q": 1})
    assert body == {"answer": 1} and attempts == 3 and script.hits == 3
    assert len(waits) == 2
    assert 4.0 <= waits[0] <= 4.05 and 0.25 <= waits[1] <= 0.30


async def test_retry_after_is_capped(serve, waits):
    url = await serve(Script([(429, {"Retry-After": "3600"}, ""), OK]))
    t = Transport("p", None, TransportConfig(max_server_wait=2.0), rng=random.Random(0))
    await t.call(url, {}, {})
    assert len(waits) == 1 and 2.0 <= waits[0] <= 2.05


async def test_retries_run_out_after_exactly_retries_plus_one_attempts(serve, waits):
    script = Script([(500, {}, '{"error": {"message": "kaput"}}')])
    url = await serve(script)
    t = Transport("p", None, TransportConfig(retries=2, backoff_base=0.5, backoff_cap=30.0),
                  rng=random.Random(0))
    with pytest.raises(LLMUnavailable, match="giving up after 3 attempts: HTTP 500: kaput") as exc:
        await t.call(url, {}, {})
    assert exc.value.attempts == 3 and exc.value.status == 500 and script.hits == 3
    assert len(waits) == 2 and 0 <= waits[0] <= 0.5 and 0 <= waits[1] <= 1.0
    assert "check its logs" in (exc.value.hint or "")


async def test_rate_limit_give_up_hint(serve, waits):
    url = await serve(Script([(429, {}, "")]))
    with pytest.raises(LLMUnavailable) as exc:
        await Transport("p", None, TransportConfig(retries=0)).call(url, {}, {})
    assert exc.value.attempts == 1 and waits == []
    assert "rate-limiting" in (exc.value.hint or "")


async def test_malformed_json_is_retried(serve, waits):
    script = Script([(200, {}, "{not json"), (200, {}, "[1, 2]"), OK])
    url = await serve(script)
    body, attempts = await Transport("p", None, rng=random.Random(0)).call(url, {}, {})
    assert body == {"answer": 1} and attempts == 3 and len(waits) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
async def test_client_errors_are_not_retried(serve, waits, status):
    script = Script([(status, {}, '{"error": {"message": "no"}}'), OK])
    url = await serve(script)
    with pytest.raises(LLMError) as exc:
        await Transport("p", "KEY", rng=random.Random(0)).call(url, {}, {})
    assert not isinstance(exc.value, LLMUnavailable)
    assert exc.value.status == status and script.hits == 1 and waits == []


async def test_connection_refused_fails_at_once(waits):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = Transport("p", None, TransportConfig(retries=5))
    with pytest.raises(LLMUnavailable, match="connection refused") as exc:
        await t.call(f"http://127.0.0.1:{port}/v1", {}, {})
    assert exc.value.attempts == 1 and waits == []


# --- cache keys --------------------------------------------------------------------------------------------------

SPEC = ProviderSpec(name="openai", api="openai", model="gpt-x", base_url="http://127.0.0.1:1/v1", key_env="K")
MSGS = [Message("system", "be brief"), Message("user", "hello")]
PARAMS = SamplingParams(temperature=0.6, top_p=0.8, max_tokens=100)


def test_cache_key_changes_with_everything_that_decides_the_answer():
    base = call_key(SPEC, MSGS, PARAMS, 0)
    assert base == call_key(SPEC, list(MSGS), SamplingParams(temperature=0.6, top_p=0.8, max_tokens=100), 0)
    variants = [
        call_key(ProviderSpec("openai", "openai", "gpt-y", SPEC.base_url, "K"), MSGS, PARAMS, 0),
        call_key(ProviderSpec("vllm", "openai", "gpt-x", SPEC.base_url, "K"), MSGS, PARAMS, 0),
        call_key(ProviderSpec("openai", "anthropic", "gpt-x", SPEC.base_url, "K"), MSGS, PARAMS, 0),
        call_key(ProviderSpec("openai", "openai", "gpt-x", "http://127.0.0.1:2/v1", "K"), MSGS, PARAMS, 0),
        call_key(SPEC, MSGS, SamplingParams(temperature=1.0, top_p=0.8, max_tokens=100), 0),
        call_key(SPEC, MSGS, SamplingParams(temperature=0.6, top_p=0.9, max_tokens=100), 0),
        call_key(SPEC, MSGS, SamplingParams(temperature=0.6, top_p=0.8, max_tokens=101), 0),
        call_key(SPEC, MSGS, SamplingParams(temperature=0.6, top_p=0.8, max_tokens=100, stop=("x",)), 0),
        call_key(SPEC, [MSGS[0], Message("user", "hello!")], PARAMS, 0),
        call_key(SPEC, [Message("user", "be brief"), MSGS[1]], PARAMS, 0),
        call_key(SPEC, MSGS[1:], PARAMS, 0),
        call_key(SPEC, list(reversed(MSGS)), PARAMS, 0),
        call_key(SPEC, MSGS, PARAMS, 1),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert len(base) == 64 and int(base, 16) >= 0


def test_cache_key_ignores_the_api_key_variable():
    other = ProviderSpec("openai", "openai", "gpt-x", SPEC.base_url, "OTHER_KEY", key_required=True)
    assert call_key(other, MSGS, PARAMS, 0) == call_key(SPEC, MSGS, PARAMS, 0)
    assert KEY_VERSION == 1


def test_cache_root_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" and default_cache_dir() == tmp_path / "c" / "llm"
    monkeypatch.delenv("CWM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "cwm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_root() == tmp_path / "h" / ".cache" / "cwm"
    cache = ResponseCache(tmp_path / "r")
    key = call_key(SPEC, MSGS, PARAMS, 0)
    assert cache.get(key) is None
    cache.put(key, {"text": "hi", "n": 1})
    assert (tmp_path / "r" / key[:2] / f"{key}.json").is_file()
    assert cache.get(key) == {"text": "hi", "n": 1}
    (tmp_path / "r" / key[:2] / f"{key}.json").write_text('{"no_text": 1}')
    assert cache.get(key) is None
    (tmp_path / "r" / key[:2] / f"{key}.json").write_text("{broken")
    assert cache.get(key) is None
    assert ResponseCache().dir == tmp_path / "h" / ".cache" / "cwm" / "llm"


def test_cache_key_format_is_stable():
    """The key is sha256 of this exact JSON (sorted keys, raw UTF-8): changing it orphans every cached reply."""
    import hashlib
    import json

    msgs = [Message("system", "be brief"), Message("user", "héllo — ok")]
    blob = json.dumps({"sample": 2, "params": {"temperature": 0.6, "top_p": 0.8, "max_tokens": 100, "stop": []},
                       "messages": [{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": "héllo — ok"}],
                       "base_url": "http://127.0.0.1:1/v1", "model": "gpt-x", "api": "openai", "provider": "openai",
                       "v": 1}, sort_keys=True, ensure_ascii=False)
    assert call_key(SPEC, msgs, SamplingParams(temperature=0.6, top_p=0.8, max_tokens=100), 2) == \
        hashlib.sha256(blob.encode()).hexdigest()


def test_cache_writes_raw_utf8_and_rewrites_in_place(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "ab" + "0" * 62
    cache.put(key, {"text": "première"})
    cache.put(key, {"text": "deuxième"})  # the directory exists by now
    path = tmp_path / "ab" / f"{key}.json"
    assert "deuxième".encode() in path.read_bytes()
    assert [p.name for p in (tmp_path / "ab").iterdir()] == [f"{key}.json"]  # no temporary file left


def test_an_unreadable_cache_entry_is_logged(tmp_path):
    from structlog.testing import capture_logs

    cache = ResponseCache(tmp_path)
    key = "cd" + "1" * 62
    (tmp_path / "cd").mkdir()
    (tmp_path / "cd" / f"{key}.json").write_text("{broken")
    with capture_logs() as logs:
        assert cache.get(key) is None
    assert len(logs) == 1 and logs[0]["event"] == "llm.cache_unreadable"
    assert logs[0]["path"] == str(tmp_path / "cd" / f"{key}.json") and "Expecting" in logs[0]["error"]


async def test_retry_waits_follow_the_seeded_full_jitter_sequence(serve, waits):
    url = await serve(Script([(502, {}, "")]))
    t = Transport("p", None, TransportConfig(retries=3, backoff_base=0.5, backoff_cap=1.5), rng=random.Random(5))
    with pytest.raises(LLMUnavailable):
        await t.call(url, {}, {})
    ref = random.Random(5)
    assert waits == [ref.uniform(0, 0.5), ref.uniform(0, 1.0), ref.uniform(0, 1.5)]  # base·2^k, capped


async def test_each_retry_is_logged_with_its_reason_and_wait(serve, waits):
    from structlog.testing import capture_logs

    url = await serve(Script([(429, {"Retry-After": "2"}, "x" * 500), OK]))
    with capture_logs() as logs:
        await Transport("prov:m", None, rng=random.Random(0)).call(url, {}, {})
    retry = [e for e in logs if e["event"] == "llm.retry"]
    assert len(retry) == 1
    e = retry[0]
    assert (e["provider"], e["attempt"], e["status"]) == ("prov:m", 1, 429)
    assert e["why"] == ("HTTP 429: " + "x" * 500)[:200]
    assert e["delay_s"] == round(waits[0], 3) and e["delay_s"] != round(waits[0], 4)


async def test_a_silent_server_gives_up_with_the_read_timeout_hint():
    async def stall(request: web.Request) -> web.Response:
        await tr.asyncio.sleep(2.0)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_post("/v1", stall)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        with pytest.raises(LLMUnavailable) as exc:
            await Transport("p", None, TransportConfig(retries=0, read_timeout=0.2)).call(url, {}, {})
    finally:
        await runner.cleanup()
    assert "--read-timeout" in (exc.value.hint or "") and "0.2 s" in (exc.value.hint or "")
    # the client's own reason is kept; "no data for N s" stands in only for a timeout without one
    assert str(exc.value).startswith("p: giving up after 1 attempts: Timeout on reading data")
    assert exc.value.attempts == 1


def test_cache_entries_are_written_through_a_hidden_file_beside_them(tmp_path, monkeypatch):
    """Atomic: a temporary file in the same directory (same filesystem), renamed over the entry."""
    import os

    moves: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        moves.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    key = "ef" + "2" * 62
    ResponseCache(tmp_path).put(key, {"text": "t"})
    (src, dst), = moves
    assert dst == str(tmp_path / "ef" / f"{key}.json")
    assert os.path.dirname(src) == str(tmp_path / "ef") and os.path.basename(src).startswith(".tmp-")


def test_cache_keys_with_tools():
    import hashlib
    import json

    from cwm.agents.llm.types import ToolSpec

    run = ToolSpec("run", "run code", {"type": "object", "properties": {"code": {"type": "string"}}})
    plain = call_key(SPEC, MSGS, PARAMS, 0)
    with_tool = call_key(SPEC, MSGS, PARAMS, 0, tools=[run])
    assert call_key(SPEC, MSGS, PARAMS, 0, tools=()) == plain  # no tools: the key of a plain call
    assert with_tool == call_key(SPEC, MSGS, PARAMS, 0, tools=[run], tool_choice="auto")
    other = ToolSpec("run", "run code", {"type": "object"})
    variants = {with_tool, call_key(SPEC, MSGS, PARAMS, 0, tools=[other]),
                call_key(SPEC, MSGS, PARAMS, 0, tools=[run], tool_choice="required"), plain}
    assert len(variants) == 4
    blob = json.dumps({"v": 1, "provider": "openai", "api": "openai", "model": "gpt-x",
                       "base_url": "http://127.0.0.1:1/v1", "messages": [m.to_json() for m in MSGS],
                       "params": PARAMS.to_json(), "sample": 0, "tools": [run.to_json()], "tool_choice": "auto"},
                      sort_keys=True, ensure_ascii=False)
    assert with_tool == hashlib.sha256(blob.encode()).hexdigest()
