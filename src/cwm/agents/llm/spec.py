"""Naming a provider with one string, on the CLI and in config.

``openai:gpt-4o``                               OpenAI, key from OPENAI_API_KEY
``openai:qwen2.5-coder@http://host:8000/v1``    any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...)
``anthropic:claude-sonnet-4-5``                 Anthropic Messages API, key from ANTHROPIC_API_KEY
``vllm:MODEL`` ``ollama:MODEL`` ``lmstudio:MODEL`` ``llamacpp:MODEL``   OpenAI-compatible, default local ports
``local`` / ``local:/path/model.gguf``          the embedded llama.cpp server (a managed subprocess)

Each name before the colon is a registration (``register_provider``, the way gymnasium's ``register`` /
``make`` work): a ``ProviderDefaults`` record for a server that speaks one of the two wire APIs, or a
factory for anything else. ``provider_names()`` is what the CLI offers and what errors list. Installed
packages add names through the entry-point group ``cwm.providers`` (entry-point name = provider name,
object = a ``ProviderDefaults`` or a factory), read the first time a name is not found: scanning entry
points costs a third of a second, which every CLI start would otherwise pay.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cwm.errors import CwmError

Api = Literal["openai", "anthropic", "local"]


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


ProviderFactory = Callable[[str, str], ProviderSpec]
"""``(name, rest)`` -> spec, where ``rest`` is the text after ``NAME:`` (empty when there is none)."""


@dataclass(frozen=True)
class ProviderDefaults:
    """A provider reached over one of the wire APIs: where it listens by default and which environment
    variable holds its key. ``NAME:MODEL@URL`` overrides the URL (then ``url_key_env`` names the key, and
    a key is never required: a self-hosted server behind a hosted API's format usually has none)."""

    api: Api
    base_url: str
    key_env: str | None = "CWM_LLM_API_KEY"
    key_required: bool = False
    url_key_env: str | None = "CWM_LLM_API_KEY"

    def __call__(self, name: str, rest: str) -> ProviderSpec:
        model, _, url = rest.partition("@")
        if not model:
            raise CwmError(f"provider '{name}:{rest}' has an empty model name", hint=_FORMS)
        if url and not url.startswith(("http://", "https://")):
            raise CwmError(f"provider '{name}:{rest}': base URL {url!r} must start with http:// or https://")
        if url:
            return ProviderSpec(name, self.api, model, url, self.url_key_env)
        return ProviderSpec(name, self.api, model, self.base_url, self.key_env, key_required=self.key_required)


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    factory: ProviderFactory
    model_optional: bool
    """True when the bare name is accepted (``local``); otherwise ``NAME`` alone is an error."""
    summary: str


_FORMS = ("write PROVIDER:MODEL, e.g. openai:gpt-4o, anthropic:claude-sonnet-4-5, ollama:qwen2.5-coder, "
          "openai:MODEL@http://HOST:PORT/v1, or local")
_REGISTRY: dict[str, ProviderEntry] = {}
"""Name -> registration. Process-wide like gymnasium's registry: it holds declarations, never run state."""
ENTRY_POINT_GROUP = "cwm.providers"
_PLUGINS = {"loaded": False}


def register_provider(name: str, factory: ProviderFactory | ProviderDefaults, *, summary: str = "",
                      model_optional: bool = False, override: bool = False) -> None:
    """Make ``NAME:MODEL`` (or ``NAME`` alone when ``model_optional``) a provider string.

        register_provider("together", ProviderDefaults("openai", "https://api.together.xyz/v1",
                                                       "TOGETHER_API_KEY", key_required=True))

    Registering a taken name is an error unless ``override`` (so two plugins cannot silently fight)."""
    key = name.strip().lower()
    if not key or ":" in key or "@" in key:
        raise CwmError(f"provider name {name!r} must be non-empty and contain neither ':' nor '@'")
    if key in _REGISTRY and not override:
        raise CwmError(f"provider {key!r} is already registered", hint="pass override=True to replace it")
    _REGISTRY[key] = ProviderEntry(key, factory, model_optional, summary)


def unregister_provider(name: str) -> None:
    """Remove a registration (tests, plugins being unloaded); unknown names are ignored."""
    _REGISTRY.pop(name.strip().lower(), None)


def load_provider_plugins() -> list[str]:
    """Register the providers installed packages declare (once per process); returns the names added.
    A plugin that fails to load or declares a taken name is an error naming the plugin."""
    _PLUGINS["loaded"] = True
    added = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.lower() in _REGISTRY:
            continue  # registered by an import already (or a built-in the plugin may not replace)
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must say which one it is
            raise CwmError(f"provider plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not callable(obj):
            raise CwmError(f"provider plugin {ep.name!r} ({ep.value}) is neither ProviderDefaults nor a factory")
        register_provider(ep.name, obj, summary=f"plugin {ep.value}")
        added.append(ep.name.lower())
    return added


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def provider_entries() -> list[ProviderEntry]:
    return [_REGISTRY[n] for n in provider_names()]


def parse_provider(text: str) -> ProviderSpec:
    """Parse a provider string; errors say which forms and names are accepted."""
    text = text.strip()
    name, colon, rest = text.partition(":")
    entry = _REGISTRY.get(name.lower())
    if entry is None and not _PLUGINS["loaded"]:
        load_provider_plugins()
        entry = _REGISTRY.get(name.lower())
    if not colon and (entry is None or not entry.model_optional):
        raise CwmError(f"provider {text!r} has no model", hint=_FORMS)
    if entry is None:
        raise CwmError(f"unknown provider {name.lower()!r} in {text!r}",
                       hint=f"use one of: {', '.join(provider_names())}")
    return entry.factory(entry.name, rest)


def _local(name: str, rest: str) -> ProviderSpec:
    return ProviderSpec(name, "local", rest or "default", None, None)


register_provider("openai", ProviderDefaults("openai", "https://api.openai.com/v1", "OPENAI_API_KEY",
                                             key_required=True),
                  summary="OpenAI, key from $OPENAI_API_KEY; with @URL any OpenAI-compatible server")
register_provider("anthropic", ProviderDefaults("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY",
                                                key_required=True, url_key_env="ANTHROPIC_API_KEY"),
                  summary="Anthropic Messages API, key from $ANTHROPIC_API_KEY")
register_provider("vllm", ProviderDefaults("openai", "http://127.0.0.1:8000/v1"), summary="vLLM on :8000")
register_provider("ollama", ProviderDefaults("openai", "http://127.0.0.1:11434/v1"), summary="Ollama on :11434")
register_provider("lmstudio", ProviderDefaults("openai", "http://127.0.0.1:1234/v1"), summary="LM Studio on :1234")
register_provider("llamacpp", ProviderDefaults("openai", "http://127.0.0.1:8080/v1"),
                  summary="llama.cpp server on :8080")
register_provider("local", _local, model_optional=True,
                  summary="the embedded llama.cpp server (local or local:/path/model.gguf)")
