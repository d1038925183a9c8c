"""HTTP for LLM calls: pooled aiohttp sessions owned by their opener, timeouts, retries with full-jitter backoff.

Retry policy: read silence, dropped connections, truncated or malformed bodies, and HTTP 408, 409, 425,
429, 5xx and 529 are retried with exponential backoff and full jitter (``uniform(0, min(cap, base *
2**attempt))``), or after the server's ``Retry-After`` / ``retry-after-ms`` when it sends one. Other
4xx errors surface at once with a message that says what to fix, and so does a server that cannot be
reached at all (connection refused, unknown host): nothing listens there, and waiting will not start it.

Timeouts: ``read_timeout`` bounds silence (no byte for that long). Calls stream by default, so a slow
model that is still writing never trips it and a dead server does; ``call_timeout`` bounds a whole call,
retries included, but not the wait for a free concurrency slot. Cancelling the awaiting task closes the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog

from cwm.agents.llm.types import LLMAuthError, LLMError, LLMRequestError, LLMUnavailable

log = structlog.get_logger("cwm.llm")

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})

CallLimit = contextlib.AbstractAsyncContextManager[Any]
"""A cap on calls in flight shared by several clients: an ``asyncio.Semaphore`` on one event loop, or
anything else entered around a call (``cwm.bench`` shares one across a Ray cluster)."""


class HttpPool:
    """Pooled HTTP connections for LLM calls, owned by whoever opened it and closed by that owner only.

    A host running many runs on one event loop (``cwm serve``, ``cwm bench``) opens one pool and lends it
    to every run's client, so connections are reused and no run's end can cut another run's requests. A
    client without a pool opens a short-lived session per call instead (nothing to close, nothing leaked);
    ``async with client:`` gives it a pool of its own for the block. The session is created on first use,
    in the running loop, and belongs to that loop.
    """

    def __init__(self, *, limit: int = 128, limit_per_host: int = 64) -> None:
        self._limit, self._limit_per_host = limit, limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("this HttpPool was closed by its owner; open a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                               ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an HttpPool serves the event loop that first used it; open one per loop")
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def server_delay(headers: Any) -> float | None:
    """The wait a server asks for, from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("Retry-After")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _Retryable(Exception):
    def __init__(self, why: str, status: int | None = None, delay: float | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.delay = delay


@dataclass
class TransportConfig:
    concurrency: int = 8
    retries: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    """Longest silence while waiting for (more of) a response (``--read-timeout``)."""
    call_timeout: float = 1800.0
    """Whole call, retries and waits included (``--timeout``); generous because streaming already
    detects a dead server by its silence, and slow self-hosted models may write for many minutes."""
    max_server_wait: float = 120.0
    """Longest ``Retry-After`` honoured as is (longer ones are cut to this)."""
    shared_limit: CallLimit | None = None
    """A provider-wide cap shared with other clients (a host running many runs, such as ``cwm serve
    --llm-concurrency`` or ``cwm bench --llm-concurrency``), held in addition to this client's own
    ``concurrency``."""


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or err)[:500]
    return str(err)[:500]


def _fatal(status: int, body: str, label: str, key_env: str | None) -> LLMError:
    msg = _error_message(body)
    if status in (401, 403):
        hint = f"set ${key_env} to a valid key" if key_env else "check the server's API key setting"
        return LLMAuthError(f"{label}: authentication failed ({status}): {msg}", hint=hint, status=status)
    if status == 404:
        return LLMRequestError(f"{label}: model or endpoint not found (404): {msg}",
                               hint="check the model name and the base URL (it usually ends in /v1)", status=status)
    low = msg.lower()
    if "context" in low or "too long" in low or ("maximum" in low and "token" in low) or status == 413:
        return LLMRequestError(f"{label}: the prompt does not fit the model's context window ({status}): {msg}",
                               hint="use a model with a longer context or lower max_tokens", status=status)
    return LLMRequestError(f"{label}: request rejected ({status}): {msg}",
                           hint="check the model name and sampling parameters", status=status)


class Transport:
    """Retrying POSTs for one provider, at most ``concurrency`` in flight."""

    def __init__(self, label: str, key_env: str | None, config: TransportConfig | None = None,
                 rng: random.Random | None = None, http: HttpPool | None = None) -> None:
        self.label = label
        self.key_env = key_env
        self.config = config or TransportConfig()
        self.http = http
        """The pool calls borrow connections from; None: a session per call."""
        self._sem = asyncio.Semaphore(self.config.concurrency)
        self._rng = rng or random.Random()

    def _timeout(self) -> aiohttp.ClientTimeout:
        c = self.config
        return aiohttp.ClientTimeout(total=None, connect=c.connect_timeout, sock_connect=c.connect_timeout,
                                     sock_read=c.read_timeout)

    def backoff(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(self.config.max_server_wait, hint) + self._rng.uniform(0, 0.05)
        return self._rng.uniform(0, min(self.config.backoff_cap, self.config.backoff_base * 2 ** attempt))

    @contextlib.asynccontextmanager
    async def _post(self, url: str, headers: dict[str, str], payload: dict[str, Any]
                    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if self.http is not None:
            async with self.http.session().post(url, json=payload, headers=headers, timeout=self._timeout()) as r:
                yield r
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session, \
                session.post(url, json=payload, headers=headers, timeout=self._timeout()) as r:
            yield r

    async def _attempt_json(self, url: str, headers: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
        async with self._post(url, headers, payload) as r:
            body = await r.text()
            if r.status >= 400:
                raise self._http_error(r.status, body, r.headers)
            return _json_object(body)

    def _http_error(self, status: int, body: str, headers: Any) -> Exception:
        """A retryable error for 429/5xx-like statuses (with the server's requested delay), else a fatal one."""
        if status in RETRYABLE:
            return _Retryable(f"HTTP {status}: {_error_message(body)[:200]}", status, server_delay(headers))
        return _fatal(status, body, self.label, self.key_env)

    async def _attempt_stream(self, url: str, headers: dict[str, str], payload: dict[str, Any],
                              on_event: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """Stream events into ``on_event``; a server that ignores ``stream`` and answers with one JSON body
        gets that body returned instead (so streaming can be the default for every server)."""
        async with self._post(url, headers, payload) as r:
            if r.status >= 400:
                raise self._http_error(r.status, await r.text(), r.headers)
            if "event-stream" not in r.headers.get("Content-Type", "text/event-stream"):
                return _json_object(await r.text())
            finished = False
            async for event in sse_events(r.content.iter_any()):
                if event is None:
                    finished = True
                    break
                if on_event(event):
                    finished = True
                    break
            if not finished:
                raise _Retryable("the stream ended before its final event (truncated)")
            return None

    async def call(self, url: str, headers: dict[str, str], payload: dict[str, Any], *,
                   stream_handler: Callable[[], Callable[[dict[str, Any]], bool]] | None = None
                   ) -> tuple[dict[str, Any] | None, int]:
        """POST with retries; returns the JSON body (or None when streamed into the handler) and attempts."""
        tries = [0]
        async with self._sem, (self.config.shared_limit or contextlib.nullcontext()):
            try:
                async with asyncio.timeout(self.config.call_timeout):
                    return await self._call_loop(url, headers, payload, stream_handler, tries)
            except TimeoutError as exc:
                raise LLMUnavailable(f"{self.label}: giving up: the call took longer than "
                                     f"{self.config.call_timeout:g} s ({tries[0]} attempts)",
                                     hint="raise --timeout for a slow model, or retry later",
                                     attempts=tries[0]) from exc

    def _unreachable(self, exc: Exception, url: str, attempt: int) -> LLMUnavailable | None:
        """Connection refused or an unknown host: fail at once (no retry would help) and say what to check."""
        if not isinstance(exc, aiohttp.ClientConnectorError):
            return None
        host = f"{exc.host}:{exc.port}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return LLMUnavailable(f"{self.label}: cannot resolve the host {exc.host!r} of {url}",
                                  hint="check the host name in --llm and this machine's network/DNS",
                                  attempts=attempt)
        if isinstance(exc.os_error, ConnectionRefusedError):
            return LLMUnavailable(f"{self.label}: connection refused at {host}: nothing is listening there",
                                  hint="start the model server, or fix the host/port in --llm "
                                  "(e.g. openai:MODEL@http://127.0.0.1:8000/v1)", attempts=attempt)
        return None

    def _give_up_hint(self, exc: Exception, status: int | None) -> str:
        if status in (429, 503, 529):
            return "the provider is overloaded or rate-limiting: retry later or lower --concurrency"
        if status is not None:
            return f"the server keeps failing with HTTP {status}: check its logs"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return (f"no connection within {self.config.connect_timeout:g} s: check the host and port in --llm "
                    "and the network")
        if isinstance(exc, TimeoutError):
            return (f"the server sent nothing for {self.config.read_timeout:g} s: a slow model needs a larger "
                    "--read-timeout; a hung server needs a restart")
        return "the server keeps dropping the connection or sending broken replies: check the server"

    async def _call_loop(self, url: str, headers: dict[str, str], payload: dict[str, Any],
                         stream_handler: Callable[[], Callable[[dict[str, Any]], bool]] | None,
                         tries: list[int]) -> tuple[dict[str, Any] | None, int]:
        attempt = 0
        while True:
            attempt += 1
            tries[0] = attempt
            try:
                if stream_handler is None:
                    return await self._attempt_json(url, headers, payload), attempt
                return await self._attempt_stream(url, headers, payload, stream_handler()), attempt
            except (_Retryable, aiohttp.ClientError, TimeoutError) as exc:
                unreachable = self._unreachable(exc, url, attempt)
                if unreachable is not None:
                    raise unreachable from exc
                status = exc.status if isinstance(exc, _Retryable) else None
                why = str(exc) or type(exc).__name__
                if isinstance(exc, TimeoutError) and not str(exc):
                    why = f"no data for {self.config.read_timeout:g} s"
                if attempt > self.config.retries:
                    raise LLMUnavailable(f"{self.label}: giving up after {attempt} attempts: {why}",
                                         hint=self._give_up_hint(exc, status), status=status,
                                         attempts=attempt) from exc
                delay = self.backoff(attempt - 1, exc.delay if isinstance(exc, _Retryable) else None)
                log.info("llm.retry", provider=self.label, attempt=attempt, status=status, why=why[:200],
                         delay_s=round(delay, 3))
                await asyncio.sleep(delay)


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any] | None]:
    """Server-sent events parsed from raw chunks (lines of any length); ``None`` marks ``[DONE]``."""
    buf = b""
    data: list[bytes] = []
    async for chunk in chunks:
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:
            line, buf = buf[:i].rstrip(b"\r"), buf[i + 1:]
            if not line:
                if data:
                    blob, data = b"\n".join(data), []
                    if blob.strip() == b"[DONE]":
                        yield None
                        return
                    try:
                        obj = json.loads(blob)
                    except ValueError as exc:
                        raise _Retryable("malformed JSON in a stream event") from exc
                    if isinstance(obj, dict):
                        yield obj
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip())


def _json_object(body: str) -> dict[str, Any]:
    """The body of a non-streamed answer; anything but a JSON object is retried (a proxy's error page)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _Retryable(f"malformed JSON in the response ({len(body)} bytes)") from exc
    if not isinstance(data, dict):
        raise _Retryable("the response is not a JSON object")
    return data
