"""The paid-call ledger: what a run was billed for, across interruptions.

A run's response cache makes a resumed run replay the replies it already received instead of paying
again. But a reply that arrived just before a crash was billed, and the search state that would have
counted it was never checkpointed; on resume the same call is served from the cache and would look free
(16 billed calls reported as 12, and ``--max-cost`` under-counting by as much). The ledger closes that
gap: every paid reply is appended here (and flushed to disk) *before* it enters the cache, so

- a cache hit whose key the ledger holds, and that this process has not yet accounted for, is reported
  as paid (once per payment the ledger records), with the recorded tokens and cost;
- the run's totals (calls, tokens, cost) are the ledger's, which no crash can shrink.

A reply paid for but lost before it reached the cache is paid again on resume and recorded twice: that
is what the provider billed. One JSON object per line: key, model, input/output tokens, cost (null when
the model has no known price).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("cwm.llm")


@dataclass(frozen=True)
class PaidCall:
    key: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when the model had no known price."""


@dataclass(frozen=True)
class LedgerTotals:
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None as soon as one paid call had no known price: the total is then unknown, not a lower bound."""
    unpriced_calls: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        return {"llm_calls": self.calls, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens": self.tokens, "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
                "unpriced_calls": self.unpriced_calls}


class PaidLedger:
    """Append-only JSON-lines file of paid calls; thread-safe, survives SIGKILL up to the last flushed line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._calls: list[PaidCall] = []
        self._by_key: dict[str, list[PaidCall]] = {}
        self._accounted: Counter[str] = Counter()
        """Payments per key already reported as paid by this process."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for n, line in enumerate(lines, 1):
            try:
                d = json.loads(line)
                call = PaidCall(str(d["key"]), str(d.get("model", "")), int(d["input_tokens"]),
                                int(d["output_tokens"]), None if d.get("cost_usd") is None else float(d["cost_usd"]))
            except (ValueError, KeyError, TypeError):
                # a line cut by a crash mid-write is the only expected damage; it was never acknowledged
                log.warning("llm.ledger_line_skipped", path=str(self.path), line=n)
                continue
            self._add(call)

    def _add(self, call: PaidCall) -> None:
        self._calls.append(call)
        self._by_key.setdefault(call.key, []).append(call)

    def record(self, call: PaidCall) -> None:
        """Write one payment to disk (flushed and fsynced) and count it as accounted for by this process."""
        line = json.dumps(asdict(call)) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._add(call)
            self._accounted[call.key] += 1

    def claim(self, key: str) -> PaidCall | None:
        """A payment for ``key`` made by an earlier segment and not yet reported by this process, or None."""
        with self._lock:
            paid = self._by_key.get(key, [])
            n = self._accounted[key]
            if n >= len(paid):
                return None
            self._accounted[key] = n + 1
            return paid[n]

    def totals(self) -> LedgerTotals:
        with self._lock:
            calls = list(self._calls)
        unpriced = sum(1 for c in calls if c.cost_usd is None)
        cost = None if unpriced else sum(c.cost_usd or 0.0 for c in calls)
        return LedgerTotals(len(calls), sum(c.input_tokens for c in calls), sum(c.output_tokens for c in calls),
                            cost, unpriced)
