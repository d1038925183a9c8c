"""Request and response shapes of the two wire APIs: OpenAI-compatible chat completions and Anthropic
Messages. Each adapter turns neutral messages (and tools) into a payload and a reply (JSON or stream) into
a ``Completion``; nothing else in cwm knows a vendor's format.

Tool calling, side by side:

=====================  ===============================================  ==========================================
                       OpenAI chat completions                          Anthropic Messages
=====================  ===============================================  ==========================================
tools offered          ``{"type": "function", "function": {name,        ``{name, description, input_schema}``
                       description, parameters}}``
the model calls        ``message.tool_calls[i].function.arguments``     ``content`` block ``tool_use`` with
                       (a JSON *string*), finish ``tool_calls``         ``input`` (an object), stop ``tool_use``
streamed               ``delta.tool_calls[{index, id, function:         ``content_block_start`` (``tool_use``), then
                       {name, arguments piece}}]``                      ``input_json_delta.partial_json`` pieces
the result goes back   ``{"role": "tool", "tool_call_id", content}``    user ``tool_result`` blocks (one user turn
                                                                        for consecutive results)
=====================  ===============================================  ==========================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cwm.agents.llm.spec import ProviderSpec
from cwm.agents.llm.types import Completion, LLMUnavailable, Message, SamplingParams, ToolCall, ToolSpec, Usage

TOOL_CHOICES = ("auto", "none", "required")
"""Neutral ``tool_choice`` values; any other value names the one tool the model must call."""


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _message_chars(m: Message) -> str:
    return m.content + "".join(c.name + c.arguments_text() for c in m.tool_calls)


def _completion(spec: ProviderSpec, text: str, finish: Any, tokens: tuple[Any, Any] | None, model: str,
                messages: list[Message], raw: dict[str, Any], calls: tuple[ToolCall, ...] = ()) -> Completion:
    """A Completion; ``tokens`` is (input, output) as the server reported them, or None to estimate."""
    if tokens is not None:
        u = Usage(int(tokens[0] or 0), int(tokens[1] or 0))
    else:
        out = text + "".join(c.name + c.arguments_text() for c in calls)
        u = Usage(sum(_estimate_tokens(_message_chars(m)) for m in messages), _estimate_tokens(out), estimated=True)
    return Completion(text=text, finish_reason=None if finish is None else str(finish), usage=u, model=model,
                      provider=spec.name, raw=raw, tool_calls=calls)


@dataclass
class _PendingCall:
    """A tool call being assembled from stream pieces."""

    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def done(self) -> ToolCall:
        return ToolCall.parse(self.id, self.name, "".join(self.parts))


@dataclass
class StreamState:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    """Tool calls in arrival order (OpenAI) or by content block index (Anthropic)."""
    slots: dict[int, int] = field(default_factory=dict)
    """OpenAI ``tool_calls[].index`` -> key in ``calls`` of the call it currently continues."""

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(self.calls[i].done() for i in sorted(self.calls))


def _openai_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        return {"role": "assistant", "content": m.content or None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_text()}}
            for c in m.tool_calls]}
    return {"role": m.role, "content": m.content}


def _openai_tool_choice(choice: str) -> Any:
    return choice if choice in TOOL_CHOICES else {"type": "function", "function": {"name": choice}}


class OpenAIAdapter:
    """OpenAI-compatible ``/chat/completions`` (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)."""

    def __init__(self, spec: ProviderSpec, base_url: str) -> None:
        self.spec = spec
        self.url = base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = self.spec.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def payload(self, messages: list[Message], params: SamplingParams, stream: bool,
                tools: Sequence[ToolSpec] = (), tool_choice: str = "auto") -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model, "messages": [_openai_message(m) for m in messages],
            "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}} for t in tools]
            body["tool_choice"] = _openai_tool_choice(tool_choice)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, data: dict[str, Any], messages: list[Message]) -> Completion:
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            calls = tuple(ToolCall.parse(str(c.get("id") or f"call_{i}"), str(c["function"]["name"]),
                                         _arguments_text(c["function"].get("arguments")))
                          for i, c in enumerate(message.get("tool_calls") or []))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMUnavailable(f"{self.spec.label}: the response has no choices[0].message") from exc
        return self._completion(str(text), choice.get("finish_reason"), data.get("usage"),
                                str(data.get("model") or self.spec.model), messages, data, calls)

    def _completion(self, text: str, finish: Any, usage: Any, model: str, messages: list[Message],
                    raw: dict[str, Any], calls: tuple[ToolCall, ...] = ()) -> Completion:
        tokens = (usage.get("prompt_tokens"), usage.get("completion_tokens")) \
            if isinstance(usage, dict) and "prompt_tokens" in usage else None
        return _completion(self.spec, text, finish, tokens, model, messages, raw, calls)

    def stream_handler(self, state: StreamState) -> Callable[[dict[str, Any]], bool]:
        def on_event(ev: dict[str, Any]) -> bool:
            state.model = str(ev.get("model") or state.model)
            if isinstance(ev.get("usage"), dict):
                state.usage = ev["usage"]
            for ch in ev.get("choices") or []:
                delta = ch.get("delta") or {}
                if delta.get("content"):
                    state.parts.append(str(delta["content"]))
                for piece in delta.get("tool_calls") or []:
                    # the id and name come with a call's first piece, the arguments text in later ones
                    pending = _openai_slot(state, piece)
                    fn = piece.get("function") or {}
                    pending.id = str(piece.get("id") or pending.id)
                    pending.name = str(fn.get("name") or pending.name)
                    if fn.get("arguments"):
                        pending.parts.append(str(fn["arguments"]))
                if ch.get("finish_reason"):
                    state.finish_reason = str(ch["finish_reason"])
            return False  # OpenAI streams end with [DONE]

        return on_event

    def from_stream(self, state: StreamState, messages: list[Message]) -> Completion:
        return self._completion("".join(state.parts), state.finish_reason, state.usage or None,
                                state.model or self.spec.model, messages, {}, state.tool_calls())


def _openai_slot(state: StreamState, piece: dict[str, Any]) -> _PendingCall:
    """The call a ``tool_calls`` piece belongs to. Some servers (Ollama) give every call of a parallel batch
    index 0 and tell them apart only by id, so a new id at a taken index opens a new call."""
    index = int(piece.get("index", 0))
    slot = state.slots.get(index)
    new_id = str(piece.get("id") or "")
    if slot is None or (new_id and state.calls[slot].id and state.calls[slot].id != new_id):
        slot = len(state.calls)
        state.slots[index] = slot
        state.calls[slot] = _PendingCall()
    return state.calls[slot]


def _arguments_text(value: Any) -> str:
    """OpenAI sends arguments as a JSON string; some compatible servers send the object itself."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _anthropic_messages(messages: list[Message], tools_offered: bool) -> list[dict[str, Any]]:
    """Neutral turns as Anthropic turns: tool calls become ``tool_use`` blocks of the assistant turn, and
    tool results ``tool_result`` blocks of one user turn (a user text right after them joins that turn,
    since the API wants user and assistant turns to alternate).

    The API refuses ``tool_use``/``tool_result`` blocks in a request that offers no tools (HTTP 400,
    anthropics/anthropic-sdk-python#494), yet "now answer without tools" is a normal last turn of a tool
    loop (OpenAI accepts it). Without tools, the calls and results are therefore written as text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content} \
                if tools_offered else {"type": "text", "text": f"[result of {m.name or m.tool_call_id}]\n{m.content}"}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            if tools_offered:
                blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                           for c in m.tool_calls]
            else:
                blocks += [{"type": "text", "text": f"[called {c.name}({c.arguments_text()})]"} for c in m.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        elif m.role == "user" and out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
            out[-1]["content"].append({"type": "text", "text": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _anthropic_tool_choice(choice: str) -> dict[str, Any]:
    if choice == "required":
        return {"type": "any"}
    if choice in TOOL_CHOICES:
        return {"type": choice}
    return {"type": "tool", "name": choice}


class AnthropicAdapter:
    """Anthropic Messages API: ``system`` is a top-level field and ``max_tokens`` is required."""

    VERSION = "2023-06-01"

    def __init__(self, spec: ProviderSpec, base_url: str) -> None:
        self.spec = spec
        self.url = base_url.rstrip("/") + "/messages"

    def headers(self) -> dict[str, str]:
        h = {"anthropic-version": self.VERSION}
        key = self.spec.api_key()
        if key:
            h["x-api-key"] = key
        return h

    def payload(self, messages: list[Message], params: SamplingParams, stream: bool,
                tools: Sequence[ToolSpec] = (), tool_choice: str = "auto") -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.spec.model, "max_tokens": params.max_tokens,
            "messages": _anthropic_messages(messages, bool(tools)),
            "temperature": params.temperature, "top_p": params.top_p,
        }
        if system:
            body["system"] = system
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if tools:
            body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                             for t in tools]
            body["tool_choice"] = _anthropic_tool_choice(tool_choice)
        if stream:
            body["stream"] = True
        return body

    def parse(self, data: dict[str, Any], messages: list[Message]) -> Completion:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise LLMUnavailable(f"{self.spec.label}: the response has no content blocks")
        blocks = [b for b in blocks if isinstance(b, dict)]
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        calls = tuple(_anthropic_call(b, i) for i, b in enumerate(blocks) if b.get("type") == "tool_use")
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        return self._completion(text, data.get("stop_reason"), usage, str(data.get("model") or self.spec.model),
                                messages, data, calls)

    def _completion(self, text: str, finish: Any, usage: dict[str, Any], model: str, messages: list[Message],
                    raw: dict[str, Any], calls: tuple[ToolCall, ...] = ()) -> Completion:
        tokens = (usage.get("input_tokens"), usage.get("output_tokens")) \
            if "input_tokens" in usage or "output_tokens" in usage else None
        return _completion(self.spec, text, finish, tokens, model, messages, raw, calls)

    def stream_handler(self, state: StreamState) -> Callable[[dict[str, Any]], bool]:
        def on_event(ev: dict[str, Any]) -> bool:
            kind = ev.get("type")
            if kind == "message_start":
                msg = ev.get("message") or {}
                state.model = str(msg.get("model") or state.model)
                state.usage.update(msg.get("usage") or {})
            elif kind == "content_block_start":
                block = ev.get("content_block") or {}
                if block.get("type") == "tool_use":  # its input arrives as input_json_delta pieces
                    pending = _PendingCall(str(block.get("id") or ""), str(block.get("name") or ""))
                    if block.get("input"):  # a server that sends the whole input up front
                        pending.parts.append(json.dumps(block["input"], ensure_ascii=False))
                    state.calls[int(ev.get("index", len(state.calls)))] = pending
            elif kind == "content_block_delta":
                delta = ev.get("delta") or {}
                if delta.get("type") == "text_delta":
                    state.parts.append(str(delta.get("text", "")))
                elif delta.get("type") == "input_json_delta":
                    pending = state.calls.setdefault(int(ev.get("index", 0)), _PendingCall())
                    pending.parts.append(str(delta.get("partial_json", "")))
            elif kind == "message_delta":
                state.finish_reason = (ev.get("delta") or {}).get("stop_reason") or state.finish_reason
                state.usage.update({k: v for k, v in (ev.get("usage") or {}).items() if v is not None})
            elif kind == "error":
                raise LLMUnavailable(f"{self.spec.label}: stream error: {ev.get('error')}")
            return kind == "message_stop"

        return on_event

    def from_stream(self, state: StreamState, messages: list[Message]) -> Completion:
        return self._completion("".join(state.parts), state.finish_reason, state.usage,
                                state.model or self.spec.model, messages, {}, state.tool_calls())


def _anthropic_call(block: dict[str, Any], index: int) -> ToolCall:
    value = block.get("input")
    raw = value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)
    return ToolCall.parse(str(block.get("id") or f"toolu_{index}"), str(block.get("name") or ""), raw)


Adapter = OpenAIAdapter | AnthropicAdapter
ADAPTERS: dict[str, Callable[[ProviderSpec, str], Adapter]] = {"openai": OpenAIAdapter,
                                                                "anthropic": AnthropicAdapter}
"""Wire API name -> adapter class (``ProviderSpec.api``); the embedded ``local`` server speaks OpenAI's."""
