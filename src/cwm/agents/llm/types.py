"""Provider-neutral types: what a call asks for and what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cwm.errors import CwmError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


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

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason, "model": self.model,
                "provider": self.provider, "usage": asdict(self.usage)}

    @classmethod
    def from_json(cls, d: dict[str, Any], *, cached: bool) -> Completion:
        usage = Usage(**d.get("usage", {}))
        return cls(text=str(d["text"]), finish_reason=d.get("finish_reason"), usage=usage,
                   model=str(d.get("model", "")), provider=str(d.get("provider", "")), cached=cached)


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
