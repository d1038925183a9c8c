"""Who owns the HTTP connections: a host's pool outlives every run it lends it to, a client closes only
what it opened, and runs on one loop never cut each other's calls (a cut call is retried and billed twice)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cwm.agents.llm import HttpPool, LLMClient, Message, ProviderLimits, TransportConfig
from cwm.agents.llm.fake_server import FakeLLMServer, Reply
from cwm.agents.llm.limits import provider_key
from cwm.graph.run import RunConfig, make_client, synthesize
from fake_llm import fenced

MSGS = [Message("user", "hello")]


def _client(server: FakeLLMServer, **kw) -> LLMClient:
    return LLMClient.from_string(f"openai:fake@{server.base_url}", transport=TransportConfig(retries=0), **kw)


async def test_a_lent_pool_survives_the_clients_that_borrow_it():
    async with FakeLLMServer(default=Reply("ok")) as server, HttpPool() as pool:
        for _ in range(3):
            async with _client(server, http=pool) as c:
                assert (await c.complete(MSGS)).text == "ok"
            assert not pool.closed and c.transport.http is pool
        session = pool.session()
        assert not session.closed
    assert pool.closed and session.closed


async def test_a_client_closes_the_pool_it_opened_and_nothing_else():
    async with FakeLLMServer(default=Reply("ok")) as server:
        c = _client(server)
        assert c.transport.http is None  # outside a block: one session per call, nothing to leak
        assert (await c.complete(MSGS)).text == "ok"
        async with c:
            own = c.transport.http
            assert own is not None
            await c.complete(MSGS, sample_index=1)
            session = own.session()
        assert own.closed and session.closed and c.transport.http is None
        assert (await c.complete(MSGS, sample_index=2)).text == "ok"  # usable again afterwards


async def test_one_run_ending_never_cuts_another_runs_call():
    """Two clients on one pool: the first closes while the second's slow call is in flight."""
    async with FakeLLMServer([Reply("fast"), Reply("slow", delay=0.5)]) as server, HttpPool() as pool:
        first, second = _client(server, http=pool), _client(server, http=pool)
        await first.complete(MSGS)
        slow = asyncio.create_task(second.complete(MSGS))
        await asyncio.sleep(0.1)
        await first.aclose()
        assert (await slow).text == "slow"
        assert len(server.requests) == 2 and server.disconnects == 0


async def test_a_pool_belongs_to_one_event_loop():
    errors: list[BaseException] = []

    async def use() -> None:
        pool.session()

    def other_loop() -> None:
        try:
            asyncio.run(use())
        except RuntimeError as exc:
            errors.append(exc)

    async with HttpPool() as pool:
        pool.session()
        t = threading.Thread(target=other_loop)
        t.start()
        await asyncio.to_thread(t.join)
    assert errors and "event loop" in str(errors[0])


async def test_a_closed_pool_refuses_new_calls():
    pool = HttpPool()
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        pool.session()


async def test_provider_limits_share_one_cap_per_provider_and_base_url():
    limits = ProviderLimits(2)
    a = limits.for_llm("openai:gpt-4o@http://127.0.0.1:1/v1")
    assert a is limits.for_llm("openai:other-model@http://127.0.0.1:1/v1")  # same server, same cap
    assert a is not limits.for_llm("openai:gpt-4o@http://127.0.0.1:2/v1")
    assert ProviderLimits(None).for_llm("openai:gpt-4o@http://127.0.0.1:1/v1") is None
    assert provider_key("openai:m@http://127.0.0.1:1/v1") == "openai@http://127.0.0.1:1/v1"
    with pytest.raises(ValueError):
        ProviderLimits(0)


async def test_a_shared_limit_caps_calls_across_clients():
    async with FakeLLMServer(default=Reply("ok", delay=0.2)) as server, HttpPool() as pool:
        cap = ProviderLimits(2).for_llm(f"openai:fake@{server.base_url}")
        clients = [LLMClient.from_string(f"openai:fake@{server.base_url}", http=pool,
                                         transport=TransportConfig(concurrency=4, shared_limit=cap))
                   for _ in range(3)]
        await asyncio.gather(*(c.sample(MSGS, k=3) for c in clients))
        assert len(server.requests) == 9 and server.max_in_flight == 2


async def test_synthesize_takes_an_injected_client_and_leaves_its_pool_open(tmp_path):
    async with FakeLLMServer(default=fenced("good")) as server, HttpPool() as pool:
        runs = []
        for i in range(2):
            cfg = RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=1)
            client = make_client(cfg, tmp_path / f"run{i}", http=pool)
            runs.append(synthesize(cfg, tmp_path / f"run{i}", client=client))
        summaries = await asyncio.gather(*runs)
        assert [s["accuracy"] for s in summaries] == [1.0, 1.0]
        assert not pool.closed and not pool.session().closed
        assert server.disconnects == 0 and len(server.requests) == 2


async def test_a_runs_llm_concurrency_caps_its_calls_whatever_its_expansions(tmp_path):
    """Three expansions in flight on slow replies: uncapped the server sees them overlap; with
    llm_concurrency=1 (``--llm-concurrency 1``) it never sees two calls at once."""
    seen = {}
    for cap in (None, 1):
        reply = fenced("weak_force")
        reply.delay = 0.3
        async with FakeLLMServer(default=reply) as server:
            cfg = RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=3, concurrency=3,
                            llm_concurrency=cap)
            summary = await synthesize(cfg, tmp_path / f"run{cap}")
            assert summary["llm_calls"] == 3
            seen[cap] = server.max_in_flight
    assert seen[None] >= 2 and seen[1] == 1
