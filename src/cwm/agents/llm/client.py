"""``LLMClient``: the one object agents call. Async, concurrent, cached, accounted, traced.

    client = LLMClient.from_string("openai:gpt-4o", cache=ResponseCache())
    completions = await client.sample(messages, SamplingParams(temperature=1.0), k=4)   # 4 concurrent calls

k samples are k concurrent requests with sample indices 0..k-1 (servers disagree on ``n > 1``), so each
is cached and replayed on its own. Every call emits ``llm.request`` and ``llm.response`` trace events
(metadata only: sizes, tokens, cost, latency; never the key) and is added to ``client.accounting``.

Calls stream by default (server-sent events), so ``read_timeout`` measures the silence of a server that
stopped writing, not the length of a slow answer; servers that ignore ``stream`` still work. A missing
API key for a hosted provider is an error at construction, before any DNS lookup or connection. With a
``PaidLedger`` (a synthesis run has one), every paid reply is on disk before it enters the cache, and
a cache hit on a reply paid for by an interrupted segment is counted as paid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from cwm.agents.llm.cache import Cassette, ResponseCache, call_key
from cwm.agents.llm.ledger import PaidCall, PaidLedger
from cwm.agents.llm.local import local_server
from cwm.agents.llm.pricing import PriceTable
from cwm.agents.llm.providers import ADAPTERS, TOOL_CHOICES, Adapter, OpenAIAdapter, StreamState
from cwm.agents.llm.spec import ProviderSpec, parse_provider
from cwm.agents.llm.transport import HttpPool, Transport, TransportConfig
from cwm.agents.llm.types import Completion, LLMError, Message, SamplingParams, ToolSpec
from cwm.telemetry import traced

log = structlog.get_logger("cwm.llm")


@dataclass
class CallRecord:
    key: str
    model: str
    sample_index: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None: the model has no known price."""
    latency_s: float
    cached: bool
    attempts: int
    estimated_tokens: bool


@dataclass
class Accounting:
    """Totals for a run: paid calls and tokens separately from calls served by the cache or a cassette."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Sum over priced paid calls; ``total_cost`` is the honest figure (None once a call was unpriced)."""
    unpriced_calls: int = 0
    records: list[CallRecord] = field(default_factory=list)

    def add(self, rec: CallRecord) -> None:
        self.records.append(rec)
        if rec.cached:
            self.cached_calls += 1
            return
        self.calls += 1
        self.input_tokens += rec.input_tokens
        self.output_tokens += rec.output_tokens
        if rec.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += rec.cost_usd

    @property
    def total_cost(self) -> float | None:
        return None if self.unpriced_calls else self.cost_usd

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def summary(self) -> dict[str, Any]:
        cost = self.total_cost
        return {"llm_calls": self.calls, "cached_calls": self.cached_calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "tokens": self.tokens,
                "cost_usd": None if cost is None else round(cost, 6), "unpriced_calls": self.unpriced_calls}


class LLMClient:
    def __init__(self, spec: ProviderSpec, *, cache: ResponseCache | None = None, cassette: Cassette | None = None,
                 prices: PriceTable | None = None, transport: TransportConfig | None = None,
                 stream: bool = True, ledger: PaidLedger | None = None, http: HttpPool | None = None) -> None:
        """``http``: a pool lent by the host (its owner closes it). Without one, ``async with client:``
        opens a pool for the block, and calls outside any block use a session each."""
        if cassette is None or cassette.mode != "replay":  # a replay never reaches the provider
            spec.require_key()
        self.spec = spec
        self.cache = cache
        self.cassette = cassette
        self.prices = prices or PriceTable()
        self.stream = stream
        self.ledger = ledger
        self.transport = Transport(spec.label, spec.key_env, transport, http=http)
        self.accounting = Accounting()
        self._adapter: Adapter | None = None
        self._own_http: HttpPool | None = None

    async def __aenter__(self) -> LLMClient:
        if self.transport.http is None or self.transport.http.closed:
            self._own_http = self.transport.http = HttpPool()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool this client opened itself; a pool lent by a host stays open for its owner."""
        own, self._own_http = self._own_http, None
        if own is not None:
            if self.transport.http is own:
                self.transport.http = None
            await own.aclose()

    @classmethod
    def from_string(cls, text: str, **kwargs: Any) -> LLMClient:
        return cls(parse_provider(text), **kwargs)

    async def _get_adapter(self) -> Adapter:
        if self._adapter is None:
            if self.spec.api == "local":
                base = await local_server(self.spec.model).ensure_started()
                self._adapter = OpenAIAdapter(ProviderSpec("local", "openai", "local", base, None), base)
            else:
                self._adapter = ADAPTERS[self.spec.api](self.spec, self.spec.base_url or "")
        return self._adapter

    @traced("cwm.llm.call")
    async def complete(self, messages: list[Message], params: SamplingParams | None = None, *,
                       tools: Sequence[ToolSpec] = (), tool_choice: str = "auto",
                       sample_index: int = 0) -> Completion:
        """One completion; served from the cassette or cache when this exact call was made before.

        With ``tools`` the model may answer with ``Completion.tool_calls`` instead of (or besides) text;
        append ``completion.as_message()`` and one ``Message("tool", result, tool_call_id=call.id,
        name=call.name)`` per call, and complete again. ``tool_choice`` is ``auto``, ``none``,
        ``required`` or the name of the one tool the model must call."""
        params = params or SamplingParams()
        if not messages:
            raise LLMError("a call needs at least one message")
        tools = tuple(tools)
        _check_tools(tools, tool_choice)
        key = call_key(self.spec, messages, params, sample_index, tools, tool_choice)
        what = f"{self.spec.label} sample {sample_index} ({sum(len(m.content) for m in messages)} prompt chars)"
        log.debug("llm.request", provider=self.spec.label, sample=sample_index, key=key[:16],
                  messages=len(messages), prompt_chars=sum(len(m.content) for m in messages))
        t0 = time.perf_counter()
        stored: dict[str, Any] | None = None
        if self.cassette is not None and self.cassette.mode == "replay":
            stored = self.cassette.lookup(key, what)
        elif self.cache is not None:
            stored = self.cache.get(key)
        if stored is not None:
            completion = Completion.from_json(stored, cached=True)
            earlier = self.ledger.claim(key) if self.ledger is not None else None
            if earlier is not None:  # billed in a segment that ended before the search state counted it
                completion.cached = False
                completion.cost_usd = earlier.cost_usd or 0.0
                completion.priced = earlier.cost_usd is not None
        else:
            completion = await self._call(messages, params, tools, tool_choice)
            cost = self.prices.cost(completion.model or self.spec.model, completion.usage.input_tokens,
                                    completion.usage.output_tokens)
            completion.cost_usd, completion.priced = cost or 0.0, cost is not None
            if self.ledger is not None:  # on disk before the cache: a crash in between pays again, visibly
                self.ledger.record(PaidCall(key, completion.model or self.spec.model, completion.usage.input_tokens,
                                            completion.usage.output_tokens, cost))
            if self.cache is not None:
                self.cache.put(key, completion.to_json())
        completion.latency_s = time.perf_counter() - t0
        if self.cassette is not None and self.cassette.mode == "record":
            request: dict[str, Any] = {"provider": self.spec.label, "messages": [m.to_json() for m in messages],
                                       "params": params.to_json(), "sample": sample_index}
            if tools:
                request.update(tools=[t.to_json() for t in tools], tool_choice=tool_choice)
            self.cassette.record(key, request, completion.to_json())
        rec = CallRecord(key, completion.model, sample_index, completion.usage.input_tokens,
                         completion.usage.output_tokens, completion.cost_usd if completion.priced else None,
                         completion.latency_s,
                         completion.cached, completion.attempts, completion.usage.estimated)
        self.accounting.add(rec)
        log.info("llm.response", **{k: v for k, v in asdict(rec).items() if k != "key"}, key=key[:16],
                 provider=self.spec.label, finish_reason=completion.finish_reason, chars=len(completion.text),
                 tool_calls=[c.name for c in completion.tool_calls])
        return completion

    async def _call(self, messages: list[Message], params: SamplingParams, tools: tuple[ToolSpec, ...],
                    tool_choice: str) -> Completion:
        adapter = await self._get_adapter()
        # the embedded server is a managed, health-checked child whose streams carry no token usage:
        # ask it for one body and keep exact token counts
        stream = self.stream and self.spec.api != "local"
        payload = adapter.payload(messages, params, stream, tools, tool_choice)
        if not stream:
            data, attempts = await self.transport.call(adapter.url, adapter.headers(), payload)
            assert data is not None
            completion = adapter.parse(data, messages)
        else:
            state_box: list[StreamState] = []

            def fresh_handler() -> Any:
                state_box.append(StreamState())  # every retry starts a fresh accumulation
                return adapter.stream_handler(state_box[-1])

            data, attempts = await self.transport.call(adapter.url, adapter.headers(), payload,
                                                       stream_handler=fresh_handler)
            # a server that ignored ``stream`` answered with one JSON body
            completion = adapter.parse(data, messages) if data is not None else \
                adapter.from_stream(state_box[-1], messages)
        completion.attempts = attempts
        return completion

    async def sample(self, messages: list[Message], params: SamplingParams | None = None, k: int = 1,
                     *, first_index: int = 0, tools: Sequence[ToolSpec] = (),
                     tool_choice: str = "auto") -> list[Completion]:
        """k completions as k concurrent calls (sample indices first_index..first_index+k-1).

        If one fails, the others are cancelled and the error propagates; completions that finished
        are already in the cache, so a retry does not pay for them again."""
        tasks = [self.complete(messages, params, tools=tools, tool_choice=tool_choice, sample_index=first_index + i)
                 for i in range(k)]
        return list(await asyncio.gather(*tasks))


def _check_tools(tools: tuple[ToolSpec, ...], tool_choice: str) -> None:
    """Mistakes in the tool list are the caller's: say so before any call is made or cached."""
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise LLMError(f"tool names must be unique, got {names}")
    if tool_choice not in TOOL_CHOICES and tool_choice not in names:
        raise LLMError(f"tool_choice {tool_choice!r} is neither one of {', '.join(TOOL_CHOICES)} nor a tool "
                       f"offered ({', '.join(names) or 'none'})")
