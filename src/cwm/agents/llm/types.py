"""Provider-neutral types: what a call asks for and what it returns."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cwm.errors import CwmError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: ``parameters`` is a JSON-schema object describing its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for. ``arguments`` is the parsed JSON object; when the model wrote
    something that is not a JSON object, ``arguments`` is ``{}`` and ``raw_arguments`` keeps its text so
    the caller can send the model an error instead of guessing."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""

    @classmethod
    def parse(cls, id: str, name: str, raw: str) -> ToolCall:
        """A call from the argument text a server sent (empty text means no arguments)."""
        if not raw.strip():
            return cls(id, name, {}, raw)
        try:
            value = json.loads(raw)
        except ValueError:
            return cls(id, name, {}, raw)
        return cls(id, name, value if isinstance(value, dict) else {}, raw)

    @property
    def valid(self) -> bool:
        """False when the model sent arguments that are not a JSON object."""
        if not self.raw_arguments.strip():
            return True
        try:
            return isinstance(json.loads(self.raw_arguments), dict)
        except ValueError:
            return False

    def arguments_text(self) -> str:
        """The arguments as sent back to a server in the conversation history: the model's own text when
        it had one, so the history repeats exactly what the model wrote."""
        return self.raw_arguments or json.dumps(self.arguments, ensure_ascii=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "raw_arguments": self.raw_arguments}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ToolCall:
        args = d.get("arguments")
        return cls(str(d["id"]), str(d["name"]), dict(args) if isinstance(args, dict) else {},
                   str(d.get("raw_arguments", "")))


@dataclass(frozen=True)
class Message:
    """One turn. Assistant turns may carry ``tool_calls``; a ``tool`` turn is the result of the call
    ``tool_call_id`` (of tool ``name``) and its ``content`` is what the tool printed or returned."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Neutral form (cache keys, cassettes). Plain turns keep the two-field shape they always had, so
        keys of calls made without tools did not change when tools were added."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_json() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        return d


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings. Defaults follow the paper's OpenAI runs (temperature 0.6, top_p 0.8)."""

    temperature: float = 0.6
    top_p: float = 0.8
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    """True when the server reported no usage and tokens were estimated from characters."""

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    usage: Usage
    model: str
    provider: str
    cost_usd: float = 0.0
    """USD for this call; 0.0 both when free (cached) and when unpriced: read ``priced`` before trusting it."""
    priced: bool = True
    """False when the model has no known price, so the cost is unknown (reported as null, never as 0)."""
    latency_s: float = 0.0
    cached: bool = False
    """Free for this run: served from the response cache or a cassette. A reply this run paid for in an
    interrupted segment and now serves from its cache is not cached: it was billed (see ``PaidLedger``)."""
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls the model asked for, in its order (empty for a plain text answer)."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "finish_reason": self.finish_reason, "model": self.model,
                             "provider": self.provider, "usage": asdict(self.usage)}
        if self.tool_calls:
            d["tool_calls"] = [c.to_json() for c in self.tool_calls]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], *, cached: bool) -> Completion:
        usage = Usage(**d.get("usage", {}))
        calls = tuple(ToolCall.from_json(c) for c in d.get("tool_calls") or ())
        return cls(text=str(d["text"]), finish_reason=d.get("finish_reason"), usage=usage,
                   model=str(d.get("model", "")), provider=str(d.get("provider", "")), cached=cached,
                   tool_calls=calls)

    def as_message(self) -> Message:
        """The assistant turn to append to the history before sending the tool results back."""
        return Message("assistant", self.text, tool_calls=self.tool_calls)


class LLMError(CwmError):
    """A call failed for a reason the user must fix (or after exhausting retries)."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 attempts: int = 0) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.attempts = attempts
        """HTTP attempts made before giving up (0 when the call never reached the network)."""


class LLMAuthError(LLMError):
    pass


class LLMRequestError(LLMError):
    """400-class errors: bad parameters, context too long, unknown model."""


class LLMUnavailable(LLMError):
    """The provider kept failing (429/5xx/connection) after every retry, or the call timed out."""
