"""LLM clients: OpenAI-compatible and Anthropic APIs over aiohttp, the embedded llama.cpp model, caching,
record/replay and cost accounting."""

from cwm.agents.llm.cache import Cassette, ResponseCache, call_key
from cwm.agents.llm.client import Accounting, LLMClient
from cwm.agents.llm.ledger import LedgerTotals, PaidCall, PaidLedger
from cwm.agents.llm.pricing import PriceTable
from cwm.agents.llm.spec import ProviderSpec, parse_provider
from cwm.agents.llm.transport import TransportConfig, close_shared_session
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

__all__ = ["Accounting", "Cassette", "Completion", "LLMAuthError", "LLMClient", "LLMError", "LLMRequestError",
           "LLMUnavailable", "LedgerTotals", "Message", "PaidCall", "PaidLedger", "PriceTable", "ProviderSpec",
           "ResponseCache", "SamplingParams", "ToolCall", "ToolSpec", "TransportConfig", "Usage", "call_key", "close_shared_session",
           "parse_provider"]
