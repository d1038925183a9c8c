"""One cap on LLM calls in flight per provider, shared by every run a host runs (``--llm-concurrency``).

A run's own ``--concurrency`` bounds its calls; a host running many runs at once (``cwm serve``, ``cwm
bench --parallel``) must also keep the provider's total under its rate limit, whatever the number of runs.
Providers are told apart by name and base URL, so two local servers get a cap each while every run
calling ``openai:gpt-4o`` shares one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cwm.agents.llm.spec import parse_provider
from cwm.agents.llm.transport import CallLimit


def provider_key(llm: str) -> str:
    """What identifies one rate limit: the provider's name and where it is served."""
    spec = parse_provider(llm)
    return f"{spec.name}@{spec.base_url or ''}"


class ProviderLimits:
    """``for_llm(llm)`` returns the cap shared by every client of that provider (None: no cap).

    ``make`` builds a cap of a given size; by default an ``asyncio.Semaphore``, valid on the one event
    loop the host runs its clients on. A host spread over processes passes a distributed one instead.
    """

    def __init__(self, per_provider: int | None,
                 make: Callable[[str, int], CallLimit] | None = None) -> None:
        if per_provider is not None and per_provider < 1:
            raise ValueError("a provider's call limit must be at least 1")
        self.per_provider = per_provider
        self._make = make or (lambda _key, n: asyncio.Semaphore(n))
        self._limits: dict[str, CallLimit] = {}

    def for_llm(self, llm: str) -> CallLimit | None:
        if self.per_provider is None:
            return None
        key = provider_key(llm)
        if key not in self._limits:
            self._limits[key] = self._make(key, self.per_provider)
        return self._limits[key]
