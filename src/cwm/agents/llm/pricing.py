"""Cost accounting: USD per million input and output tokens, by model name prefix.

The built-in table is a convenience with list prices as published by the providers (check them: prices
change); pass your own JSON file ``{"model-prefix": [input_per_mtok, output_per_mtok], ...}`` to
override. A model with no entry (local and self-hosted models included) has an unknown cost: ``cost``
returns None and reports show null, never 0, so a budget in USD is never silently unenforced. Give such
a model a price (``{"local": [0, 0]}`` for free) to use ``--max-cost`` with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from cwm.errors import CwmError

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


class PriceTable:
    def __init__(self, prices: dict[str, tuple[float, float]] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            prices = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise CwmError(f"price table {str(path)!r} is unreadable: {exc}",
                           hint='write {"model-prefix": [usd_per_mtok_in, usd_per_mtok_out]}') from exc
        table = cls()
        table.prices.update(prices)
        return table

    def lookup(self, model: str) -> tuple[float, float] | None:
        best = max((p for p in self.prices if model.startswith(p)), key=len, default=None)
        return self.prices[best] if best is not None else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for one call, or None when the model has no known price."""
        price = self.lookup(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
