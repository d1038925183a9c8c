"""Request and response shapes of the two wire APIs: OpenAI-compatible chat completions and Anthropic
Messages. Each adapter turns neutral messages into a payload and a reply (JSON or stream) into a
``Completion``; nothing else in cwm knows a vendor's format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cwm.agents.llm.spec import ProviderSpec
from cwm.agents.llm.types import Completion, LLMUnavailable, Message, SamplingParams, Usage


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _completion(spec: ProviderSpec, text: str, finish: Any, tokens: tuple[Any, Any] | None, model: str,
                messages: list[Message], raw: dict[str, Any]) -> Completion:
    """A Completion; ``tokens`` is (input, output) as the server reported them, or None to estimate."""
    if tokens is not None:
        u = Usage(int(tokens[0] or 0), int(tokens[1] or 0))
    else:
        u = Usage(sum(_estimate_tokens(m.content) for m in messages), _estimate_tokens(text), estimated=True)
    return Completion(text=text, finish_reason=None if finish is None else str(finish), usage=u, model=model,
                      provider=spec.name, raw=raw)


@dataclass
class StreamState:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""


class OpenAIAdapter:
    """OpenAI-compatible ``/chat/completions`` (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)."""

    def __init__(self, spec: ProviderSpec, base_url: str) -> None:
        self.spec = spec
        self.url = base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = self.spec.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def payload(self, messages: list[Message], params: SamplingParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model, "messages": [m.to_json() for m in messages],
            "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, data: dict[str, Any], messages: list[Message]) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMUnavailable(f"{self.spec.label}: the response has no choices[0].message") from exc
        return self._completion(str(text), choice.get("finish_reason"), data.get("usage"),
                                str(data.get("model") or self.spec.model), messages, data)

    def _completion(self, text: str, finish: Any, usage: Any, model: str, messages: list[Message],
                    raw: dict[str, Any]) -> Completion:
        tokens = (usage.get("prompt_tokens"), usage.get("completion_tokens")) \
            if isinstance(usage, dict) and "prompt_tokens" in usage else None
        return _completion(self.spec, text, finish, tokens, model, messages, raw)

    def stream_handler(self, state: StreamState) -> Callable[[dict[str, Any]], bool]:
        def on_event(ev: dict[str, Any]) -> bool:
            state.model = str(ev.get("model") or state.model)
            if isinstance(ev.get("usage"), dict):
                state.usage = ev["usage"]
            for ch in ev.get("choices") or []:
                delta = ch.get("delta") or {}
                if delta.get("content"):
                    state.parts.append(str(delta["content"]))
                if ch.get("finish_reason"):
                    state.finish_reason = str(ch["finish_reason"])
            return False  # OpenAI streams end with [DONE]

        return on_event

    def from_stream(self, state: StreamState, messages: list[Message]) -> Completion:
        return self._completion("".join(state.parts), state.finish_reason, state.usage or None,
                                state.model or self.spec.model, messages, {})


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

    def payload(self, messages: list[Message], params: SamplingParams, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.spec.model, "max_tokens": params.max_tokens,
            "messages": [m.to_json() for m in messages if m.role != "system"],
            "temperature": params.temperature, "top_p": params.top_p,
        }
        if system:
            body["system"] = system
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if stream:
            body["stream"] = True
        return body

    def parse(self, data: dict[str, Any], messages: list[Message]) -> Completion:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise LLMUnavailable(f"{self.spec.label}: the response has no content blocks")
        text = "".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        return self._completion(text, data.get("stop_reason"), usage, str(data.get("model") or self.spec.model),
                                messages, data)

    def _completion(self, text: str, finish: Any, usage: dict[str, Any], model: str, messages: list[Message],
                    raw: dict[str, Any]) -> Completion:
        tokens = (usage.get("input_tokens"), usage.get("output_tokens")) \
            if "input_tokens" in usage or "output_tokens" in usage else None
        return _completion(self.spec, text, finish, tokens, model, messages, raw)

    def stream_handler(self, state: StreamState) -> Callable[[dict[str, Any]], bool]:
        def on_event(ev: dict[str, Any]) -> bool:
            kind = ev.get("type")
            if kind == "message_start":
                msg = ev.get("message") or {}
                state.model = str(msg.get("model") or state.model)
                state.usage.update(msg.get("usage") or {})
            elif kind == "content_block_delta":
                delta = ev.get("delta") or {}
                if delta.get("type") == "text_delta":
                    state.parts.append(str(delta.get("text", "")))
            elif kind == "message_delta":
                state.finish_reason = (ev.get("delta") or {}).get("stop_reason") or state.finish_reason
                state.usage.update({k: v for k, v in (ev.get("usage") or {}).items() if v is not None})
            elif kind == "error":
                raise LLMUnavailable(f"{self.spec.label}: stream error: {ev.get('error')}")
            return kind == "message_stop"

        return on_event

    def from_stream(self, state: StreamState, messages: list[Message]) -> Completion:
        return self._completion("".join(state.parts), state.finish_reason, state.usage,
                                state.model or self.spec.model, messages, {})


Adapter = OpenAIAdapter | AnthropicAdapter
