"""A scripted LLM server on loopback that speaks the OpenAI chat-completions and Anthropic Messages APIs.

Tests, demos and benchmarks point the real client at it: the same code path as production, with answers,
delays and faults chosen by a script. Each incoming call takes the next action of the script (or the
``default`` when the script is used up, or calls ``script(request)`` when the script is a function).
Both wire APIs answer with one JSON body, or with server-sent events when the request asks to stream
(unless ``streaming=False``: a server that ignores ``stream``). A ``Reply`` with ``chunk_delay`` is a slow
model: it streams its text in ``chunks`` pieces with that pause before each (one pause before a
non-streamed body per piece), which is what the client's read and whole-call timeouts are tested on.
A ``Reply`` with ``tool_calls`` answers with tool calls in the API's own format (OpenAI ``tool_calls`` with
arguments as a JSON string, streamed in pieces; Anthropic ``tool_use`` blocks, streamed as
``input_json_delta``); an argument given as a string is sent verbatim, so a test can send invalid JSON.
Every request body is kept in ``requests``, so tests can read the tools offered and the results sent back.

    async with FakeLLMServer([Fail(429, retry_after=0.1), Reply("```python\\n...```")]) as server:
        client = LLMClient.from_string(f"openai:fake@{server.base_url}")
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    text: str
    usage: tuple[int, int] | None = (10, 5)
    delay: float = 0.0
    finish_reason: str = "stop"
    chunk_delay: float = 0.0
    """Slow mode: seconds of silence before each streamed piece of text."""
    chunks: int = 2
    """Pieces the text is streamed in."""
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = ()
    """(tool name, arguments) the model calls; a string is the arguments text exactly as sent."""

    def calls(self, anthropic: bool) -> list[tuple[str, str, str]]:
        """(id, name, arguments text) of each scripted call, with ids in the API's style."""
        prefix = "toolu_fake" if anthropic else "call_fake"
        return [(f"{prefix}{i}", name, args if isinstance(args, str) else json.dumps(args))
                for i, (name, args) in enumerate(self.tool_calls)]

    def finish(self, anthropic: bool) -> str:
        if self.tool_calls and self.finish_reason == "stop":
            return "tool_use" if anthropic else "tool_calls"
        if anthropic:
            return {"stop": "end_turn", "length": "max_tokens"}.get(self.finish_reason, self.finish_reason)
        return self.finish_reason


@dataclass
class Fail:
    status: int
    message: str = "scripted failure"
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0


@dataclass
class Drop:
    """Close the connection without answering."""

    delay: float = 0.0


@dataclass
class Malformed:
    """Answer 200 with a body that is not JSON."""


@dataclass
class Truncate:
    """Stream part of the answer, then close the connection before the final event."""

    text: str = "partial answer"


Action = Reply | Fail | Drop | Malformed | Truncate


@dataclass
class Rules:
    """A scripted model that answers by what the prompt says: the first rule whose needles all occur in
    the last message wins, else ``default``. Use it as a ``FakeLLMServer`` script, e.g. a model that
    returns the right program only when shown its wrong one with a failing transition."""

    rules: list[tuple[tuple[str, ...], Action]]
    default: Action

    def __call__(self, body: dict[str, Any]) -> Action:
        messages = body.get("messages") or [{}]
        last = messages[-1].get("content")
        text = last if isinstance(last, str) else json.dumps(last)
        for needles, action in self.rules:
            if all(n in text for n in needles):
                return action
        return self.default


@dataclass
class FakeLLMServer:
    script: list[Action] | Callable[[dict[str, Any]], Action] = field(default_factory=list)
    default: Action | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    disconnects: int = 0
    answered: int = 0
    """Replies written completely (what a provider would bill)."""
    streaming: bool = True
    """False: ignore ``stream`` in requests and always answer with one JSON body."""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/messages", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def offered_tools(self, i: int = -1) -> list[str]:
        """Names of the tools request ``i`` offered, whichever API it used."""
        return [str(t.get("function", t).get("name")) for t in self.requests[i]["body"].get("tools") or []]

    def tool_results(self, i: int = -1) -> list[tuple[str, str]]:
        """(call id, result text) of every tool result request ``i`` sent back, whichever API it used."""
        out = []
        for m in self.requests[i]["body"].get("messages") or []:
            if m.get("role") == "tool":
                out.append((str(m.get("tool_call_id")), str(m.get("content"))))
            elif isinstance(m.get("content"), list):
                out += [(str(b.get("tool_use_id")), str(b.get("content"))) for b in m["content"]
                        if isinstance(b, dict) and b.get("type") == "tool_result"]
        return out

    def _next(self, body: dict[str, Any]) -> Action:
        if callable(self.script):
            return self.script(body)
        if self.script:
            return self.script.pop(0)
        if self.default is not None:
            return self.default
        return Reply("no script left")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._serve(request)
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.in_flight -= 1

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        anthropic = request.path.endswith("/messages")
        self.requests.append({"path": request.path, "body": body, "headers": dict(request.headers)})
        action = self._next(body)
        await asyncio.sleep(getattr(action, "delay", 0.0))
        if isinstance(action, Fail):
            headers = {}
            if action.retry_after is not None:
                headers["Retry-After"] = str(action.retry_after)
            if action.retry_after_ms is not None:
                headers["retry-after-ms"] = str(action.retry_after_ms)
            return web.json_response({"error": {"message": action.message, "type": "scripted"}},
                                     status=action.status, headers=headers)
        if isinstance(action, Drop):
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if isinstance(action, Malformed):
            return web.Response(text='{"choices": [ {"message": ', content_type="application/json")
        stream = bool(body.get("stream")) and self.streaming
        if isinstance(action, Truncate):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(_sse(_first_chunk(anthropic, action.text)))
            assert request.transport is not None
            request.transport.close()
            return resp
        assert isinstance(action, Reply)
        model = str(body.get("model", "fake"))
        if not stream:
            await asyncio.sleep(action.chunk_delay * action.chunks)  # a slow model that sends nothing meanwhile
            payload = json.dumps(_full(anthropic, action, model)).encode()
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload)
        else:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for event in _stream_events(anthropic, action, model):
                if action.chunk_delay and _carries_text(event):
                    await asyncio.sleep(action.chunk_delay)
                await resp.write(_sse(event))
        await resp.write_eof()
        self.answered += 1
        return resp


def _sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


def _full(anthropic: bool, a: Reply, model: str) -> dict[str, Any]:
    if anthropic:
        content: list[dict[str, Any]] = [{"type": "text", "text": a.text}] if a.text or not a.tool_calls else []
        content += [{"type": "tool_use", "id": i, "name": n, "input": _input_object(t)} for i, n, t in a.calls(True)]
        out: dict[str, Any] = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                               "content": content, "stop_reason": a.finish(True)}
        if a.usage:
            out["usage"] = {"input_tokens": a.usage[0], "output_tokens": a.usage[1]}
        return out
    message: dict[str, Any] = {"role": "assistant", "content": a.text if a.text or not a.tool_calls else None}
    if a.tool_calls:
        message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": t}}
                                 for i, n, t in a.calls(False)]
    out = {"id": "chatcmpl-fake", "object": "chat.completion", "model": model,
           "choices": [{"index": 0, "message": message, "finish_reason": a.finish(False)}]}
    if a.usage:
        out["usage"] = {"prompt_tokens": a.usage[0], "completion_tokens": a.usage[1],
                        "total_tokens": sum(a.usage)}
    return out


def _input_object(text: str) -> Any:
    """Anthropic sends tool input as an object; invalid JSON from the script goes out as a bare string
    (a malformed reply, like the broken argument text OpenAI-style servers can produce)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _halves(text: str) -> list[str]:
    """A text in two stream pieces (so a client must join them), or one piece when it is short."""
    cut = len(text) // 2
    return [text[:cut], text[cut:]] if cut else [text]


def _first_chunk(anthropic: bool, text: str) -> dict[str, Any]:
    if anthropic:
        return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _carries_text(event: dict[str, Any] | str) -> bool:
    if isinstance(event, str):
        return False
    if event.get("type") == "content_block_delta":
        return bool((event.get("delta") or {}).get("type") == "text_delta")
    return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])


def _stream_events(anthropic: bool, a: Reply, model: str) -> list[dict[str, Any] | str]:
    n = max(1, a.chunks)
    step = -(-len(a.text) // n) or 1
    pieces = [a.text[i:i + step] for i in range(0, len(a.text), step)] or [""]
    if anthropic:
        return _anthropic_events(a, model, pieces)
    chunks: list[dict[str, Any] | str] = [] if not a.text and a.tool_calls else [
        {"model": model, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    for n, (call_id, name, args) in enumerate(a.calls(False)):
        first = {"index": n, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append({"model": model, "choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
        chunks += [{"model": model, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": n, "function": {"arguments": piece}}]}}]} for piece in _halves(args)]
    chunks.append({"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": a.finish(False)}]})
    if a.usage:
        chunks.append({"model": model, "choices": [], "usage": {"prompt_tokens": a.usage[0],
                                                                 "completion_tokens": a.usage[1]}})
    chunks.append("[DONE]")
    return chunks


def _anthropic_events(a: Reply, model: str, pieces: list[str]) -> list[dict[str, Any] | str]:
    events: list[dict[str, Any] | str] = [
        {"type": "message_start", "message": {"model": model, "usage": {
            "input_tokens": a.usage[0] if a.usage else None}}}]
    index = 0
    if a.text or not a.tool_calls:
        events += [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
              for p in pieces),
            {"type": "content_block_stop", "index": 0}]
        index = 1
    for call_id, name, args in a.calls(True):
        events.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}})
        events += [{"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}} for piece in _halves(args)]
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    events += [{"type": "message_delta", "delta": {"stop_reason": a.finish(True)},
                "usage": {"output_tokens": a.usage[1] if a.usage else None}},
               {"type": "message_stop"}]
    return events
