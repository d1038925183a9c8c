"""Naming a provider with one string, on the CLI and in config.

``openai:gpt-4o``                               OpenAI, key from OPENAI_API_KEY
``openai:qwen2.5-coder@http://host:8000/v1``    any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...)
``anthropic:claude-sonnet-4-5``                 Anthropic Messages API, key from ANTHROPIC_API_KEY
``vllm:MODEL`` ``ollama:MODEL`` ``lmstudio:MODEL`` ``llamacpp:MODEL``   OpenAI-compatible, default local ports
``local`` / ``local:/path/model.gguf``          the embedded llama.cpp server (a managed subprocess)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from cwm.errors import CwmError

Api = Literal["openai", "anthropic", "local"]

_LOCAL_DEFAULTS = {
    "vllm": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
}
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    """The provider as written before the colon (openai, anthropic, vllm, ollama, local, ...)."""
    api: Api
    model: str
    base_url: str | None
    key_env: str | None
    """Environment variable holding the key; the key itself is never stored here, logged or cached."""
    key_required: bool = False
    """The hosted APIs refuse every call without a key; self-hosted servers usually need none."""

    @property
    def label(self) -> str:
        return f"{self.name}:{self.model}"

    def api_key(self) -> str | None:
        return os.environ.get(self.key_env) if self.key_env else None

    def require_key(self) -> None:
        """Fail before any network activity (no DNS lookup, no connection) when a required key is unset."""
        if self.key_required and self.key_env and not self.api_key():
            from cwm.agents.llm.types import LLMAuthError

            raise LLMAuthError(f"{self.label}: ${self.key_env} is not set",
                               hint=f"export {self.key_env}=... (or use a self-hosted server: "
                               f"{self.name}:{self.model}@http://HOST:PORT/v1)")


def parse_provider(text: str) -> ProviderSpec:
    """Parse a provider string; errors say which forms are accepted."""
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        path = text[len("local:"):] if text.startswith("local:") else ""
        return ProviderSpec("local", "local", path or "default", None, None)
    if ":" not in text:
        raise CwmError(f"provider {text!r} has no model", hint="write PROVIDER:MODEL, e.g. openai:gpt-4o, "
                       "anthropic:claude-sonnet-4-5, ollama:qwen2.5-coder, or local")
    name, rest = text.split(":", 1)
    model, _, url = rest.partition("@")
    if not model:
        raise CwmError(f"provider {text!r} has an empty model name")
    if url and not url.startswith(("http://", "https://")):
        raise CwmError(f"provider {text!r}: base URL {url!r} must start with http:// or https://")
    name = name.lower()
    if name == "openai":
        return ProviderSpec(name, "openai", model, url or "https://api.openai.com/v1",
                            "OPENAI_API_KEY" if not url else "CWM_LLM_API_KEY", key_required=not url)
    if name == "anthropic":
        return ProviderSpec(name, "anthropic", model, url or "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY",
                            key_required=not url)
    if name in _LOCAL_DEFAULTS:
        return ProviderSpec(name, "openai", model, url or _LOCAL_DEFAULTS[name], "CWM_LLM_API_KEY")
    raise CwmError(f"unknown provider {name!r} in {text!r}",
                   hint="use openai, anthropic, vllm, ollama, lmstudio, llamacpp or local")
