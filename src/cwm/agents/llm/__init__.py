"""LLM clients: OpenAI-compatible and Anthropic APIs over aiohttp, the embedded llama.cpp model, caching,
record/replay and cost accounting.

Names are resolved on first use (PEP 562), so importing ``cwm.agents.llm.spec`` (the provider registry,
which the CLI reads to build its help) does not pull in aiohttp and the client stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cwm.agents.llm.cache import Cassette, ResponseCache, call_key
    from cwm.agents.llm.client import Accounting, LLMClient
    from cwm.agents.llm.ledger import LedgerTotals, PaidCall, PaidLedger
    from cwm.agents.llm.limits import ProviderLimits
    from cwm.agents.llm.pricing import PriceTable
    from cwm.agents.llm.spec import (
        ProviderDefaults,
        ProviderSpec,
        parse_provider,
        provider_names,
        register_provider,
        unregister_provider,
    )
    from cwm.agents.llm.transport import CallLimit, HttpPool, TransportConfig
    from cwm.agents.llm.types import (
        Completion,
        LLMAuthError,
        LLMError,
        LLMRequestError,
        LLMUnavailable,
        Message,
        SamplingParams,
        ToolCall,
        ToolSpec,
        Usage,
    )

_HOMES = {
    "cache": ["Cassette", "ResponseCache", "call_key"],
    "client": ["Accounting", "LLMClient"],
    "ledger": ["LedgerTotals", "PaidCall", "PaidLedger"],
    "pricing": ["PriceTable"],
    "spec": ["ProviderDefaults", "ProviderSpec", "parse_provider", "provider_names", "register_provider",
             "unregister_provider"],
    "limits": ["ProviderLimits"],
    "transport": ["CallLimit", "HttpPool", "TransportConfig"],
    "types": ["Completion", "LLMAuthError", "LLMError", "LLMRequestError", "LLMUnavailable", "Message",
              "SamplingParams", "ToolCall", "ToolSpec", "Usage"],
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = ["Accounting", "CallLimit", "Cassette", "Completion", "HttpPool", "LLMAuthError", "LLMClient", "LLMError",
           "LLMRequestError", "LLMUnavailable", "LedgerTotals", "Message", "PaidCall", "PaidLedger", "PriceTable",
           "ProviderDefaults", "ProviderLimits", "ProviderSpec", "ResponseCache", "SamplingParams", "ToolCall",
           "ToolSpec", "TransportConfig", "Usage", "call_key", "parse_provider", "provider_names",
           "register_provider", "unregister_provider"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
