"""Provider failures a user meets first: nothing listening, no API key, slow or silent servers, unknown prices,
and the paid-call ledger that keeps billing honest across a crash. Loopback fake server only."""

from __future__ import annotations

import json
import socket

import pytest

from cwm.agents.llm import (
    LLMAuthError,
    LLMClient,
    LLMUnavailable,
    Message,
    PaidCall,
    PaidLedger,
    PriceTable,
    ResponseCache,
    TransportConfig,
)
from cwm.agents.llm.fake_server import FakeLLMServer, Reply

MSGS = [Message("user", "Write a CartPole model.")]
QUICK = TransportConfig(retries=6, backoff_base=0.01, backoff_cap=0.05, read_timeout=5, call_timeout=30)


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every DNS lookup and connection the code under test attempts."""
    attempts: list[str] = []

    def refuse_lookup(host, *a, **kw):
        attempts.append(f"getaddrinfo {host}")
        raise OSError("network use in a test that must not touch the network")

    real_connect = socket.socket.connect

    def refuse_connect(self, addr):
        attempts.append(f"connect {addr}")
        return real_connect(self, addr)

    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    return attempts


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_connection_refused_fails_on_the_first_attempt(api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    c = LLMClient.from_string(f"{api}:m@http://127.0.0.1:{closed_port()}/v1", transport=QUICK)
    with pytest.raises(LLMUnavailable, match="connection refused") as info:
        await c.complete(MSGS)
    assert info.value.attempts == 1  # no retries, no backoff: nothing listens there
    assert "overload" not in str(info.value)
    assert "--llm" in (info.value.hint or "")


@pytest.mark.parametrize(("provider", "var"), [("openai:gpt-4o", "OPENAI_API_KEY"),
                                                ("anthropic:claude-sonnet-4", "ANTHROPIC_API_KEY")])
def test_missing_key_is_reported_before_any_network(provider, var, monkeypatch, no_network):
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(LLMAuthError, match=rf"\${var} is not set"):
        LLMClient.from_string(provider)
    assert no_network == []


@pytest.mark.parametrize(("argv", "var"), [
    (["ask", "hi", "--llm", "openai:gpt-4o"], "OPENAI_API_KEY"),
    (["synthesize", "--env", "CartPole-v1", "--llm", "anthropic:claude-sonnet-4"], "ANTHROPIC_API_KEY"),
])
def test_cli_missing_key_exits_2_without_network(argv, var, monkeypatch, no_network, tmp_path, capsys):
    from cwm.cli import main

    monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "run")
    assert main([*argv, "--out", out] if argv[0] == "synthesize" else argv) == 2
    assert f"${var} is not set" in capsys.readouterr().err
    assert no_network == []
    assert not (tmp_path / "run").exists()


def test_keys_are_optional_for_self_hosted_servers(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CWM_LLM_API_KEY", raising=False)
    LLMClient.from_string("openai:qwen@http://127.0.0.1:1/v1")
    LLMClient.from_string("ollama:qwen2.5-coder")


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_streaming_keeps_a_slow_model_alive(api):
    """Five pieces 0.3 s apart: 1.5 s in all, longer than the 1 s read timeout, yet never 1 s silent."""
    slow = Reply("class Environment:\n    pass\n", chunk_delay=0.3, chunks=5)
    async with FakeLLMServer([slow]) as server:
        c = LLMClient.from_string(f"{api}:m@{server.base_url}",
                                  transport=TransportConfig(retries=0, read_timeout=1.0, call_timeout=30))
        out = await c.complete(MSGS)
    assert out.text == slow.text and out.attempts == 1
    assert server.requests[0]["body"]["stream"] is True  # streaming is the default


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_read_timeout_catches_a_silent_server(api):
    """Unstreamed, the same slow model is 1.5 s of silence: the read timeout ends the attempt."""
    slow = Reply("class Environment: pass", chunk_delay=0.3, chunks=5)
    async with FakeLLMServer(default=slow) as server:
        c = LLMClient.from_string(f"{api}:m@{server.base_url}", stream=False,
                                  transport=TransportConfig(retries=1, backoff_base=0.01, read_timeout=0.5,
                                                            call_timeout=30))
        with pytest.raises(LLMUnavailable, match="giving up after 2 attempts") as info:
            await c.complete(MSGS)
    assert "--read-timeout" in (info.value.hint or "") and info.value.attempts == 2
    assert server.answered == 0


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_whole_call_timeout_bounds_a_streaming_call(api):
    slow = Reply("class Environment: pass", chunk_delay=0.3, chunks=20)
    async with FakeLLMServer([slow]) as server:
        c = LLMClient.from_string(f"{api}:m@{server.base_url}",
                                  transport=TransportConfig(retries=0, read_timeout=5, call_timeout=0.8))
        with pytest.raises(LLMUnavailable, match=r"took longer than 0\.8 s") as info:
            await c.complete(MSGS)
    assert "--timeout" in (info.value.hint or "")
    assert server.answered == 0


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_server_that_ignores_stream_still_works(api):
    async with FakeLLMServer([Reply("plain json", usage=(7, 3))], streaming=False) as server:
        out = await LLMClient.from_string(f"{api}:m@{server.base_url}", transport=QUICK).complete(MSGS)
    assert out.text == "plain json" and (out.usage.input_tokens, out.usage.output_tokens) == (7, 3)


async def test_unknown_price_is_unknown_not_zero():
    async with FakeLLMServer(default=Reply("x", usage=(1000, 1000))) as server:
        unpriced = LLMClient.from_string(f"openai:my-local-model@{server.base_url}", transport=QUICK)
        out = await unpriced.complete(MSGS)
        priced = LLMClient.from_string(f"openai:my-local-model@{server.base_url}", transport=QUICK,
                                       prices=PriceTable({"my-local": (1.0, 2.0)}))
        await priced.complete(MSGS)
    assert not out.priced
    assert unpriced.accounting.summary()["cost_usd"] is None
    assert unpriced.accounting.summary()["unpriced_calls"] == 1
    assert priced.accounting.summary()["cost_usd"] == pytest.approx(0.003)


def test_cli_ask_reports_unknown_cost_as_null(capsys):
    from cwm.cli import main
    from fake_llm import serve_in_thread

    with serve_in_thread(FakeLLMServer(default=Reply("pong"))) as server:
        assert main(["ask", "ping", "--llm", f"openai:m@{server.base_url}", "--no-cache", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_usd"] is None and out["completions"][0]["cost_usd"] is None


def test_cli_ask_connection_refused_exits_1(capsys):
    from cwm.cli import main

    assert main(["ask", "ping", "--llm", f"openai:m@http://127.0.0.1:{closed_port()}/v1", "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "connection refused" in err and "overload" not in err


def test_ledger_claims_each_earlier_payment_once(tmp_path):
    path = tmp_path / "ledger.jsonl"
    first = PaidLedger(path)
    first.record(PaidCall("k1", "m", 10, 5, 0.5))
    first.record(PaidCall("k2", "m", 20, 5, None))
    assert first.claim("k1") is None  # this process already counted its own payment
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"key": "k3", "input_')  # a line cut by SIGKILL
    again = PaidLedger(path)
    assert again.claim("k1") == PaidCall("k1", "m", 10, 5, 0.5)
    assert again.claim("k1") is None and again.claim("nope") is None
    totals = again.totals()
    assert (totals.calls, totals.tokens, totals.cost_usd, totals.unpriced_calls) == (2, 40, None, 1)


async def test_a_reply_paid_before_a_crash_counts_as_paid_on_resume(tmp_path):
    """A reply billed and cached, whose search state never reached the checkpoint, is paid, not free."""
    cache, ledger_path = ResponseCache(tmp_path / "cache"), tmp_path / "ledger.jsonl"
    prices = PriceTable({"m": (1.0, 1.0)})
    async with FakeLLMServer(default=Reply("answer", usage=(500_000, 500_000))) as server:
        before = LLMClient.from_string(f"openai:m@{server.base_url}", cache=cache, prices=prices,
                                       ledger=PaidLedger(ledger_path), transport=QUICK)
        await before.complete(MSGS, sample_index=3)
        # the process dies here; the resumed run asks the same call again
        after = LLMClient.from_string(f"openai:m@{server.base_url}", cache=cache, prices=prices,
                                      ledger=PaidLedger(ledger_path), transport=QUICK)
        replayed = await after.complete(MSGS, sample_index=3)
        once_more = await after.complete(MSGS, sample_index=3)
    assert server.answered == 1
    assert not replayed.cached and replayed.cost_usd == pytest.approx(1.0)
    assert once_more.cached and once_more.cost_usd == 0.0
    assert after.accounting.calls == 1 and after.accounting.cached_calls == 1
    assert PaidLedger(ledger_path).totals().calls == 1
