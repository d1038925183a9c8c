"""The search's stop rules pinned at their boundaries: each limit stops the search once reached, not before."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cwm.graph.search import Budget, _stop_reason

RUNNING = SimpleNamespace(solved=lambda: False)
SOLVED = SimpleNamespace(solved=lambda: True)


def test_solved_wins_over_every_limit():
    state = {"calls": 10, "tokens": 10**9, "cost_usd": 1e9, "elapsed_s": 1e9}
    budget = Budget(calls=1, max_tokens=1, max_cost_usd=0.01, max_seconds=1.0)
    assert _stop_reason(state, SOLVED, budget) == "solved"  # type: ignore[arg-type]
    assert _stop_reason({}, SOLVED, Budget(calls=5)) == "solved"  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "limit", "reason", "below", "at"), [
    ("calls", {"calls": 4}, "budget", 3, 4),
    ("tokens", {"max_tokens": 1000}, "token limit", 999, 1000),
    ("cost_usd", {"max_cost_usd": 0.5}, "cost limit", 0.49, 0.5),
    ("elapsed_s", {"max_seconds": 60.0}, "time limit", 59.9, 60.0),
])
def test_each_limit_stops_when_reached(field, limit, reason, below, at):
    budget = Budget(**{"calls": 100, **limit})
    assert _stop_reason({field: below}, RUNNING, budget) is None  # type: ignore[arg-type]
    assert _stop_reason({field: at}, RUNNING, budget) == reason  # type: ignore[arg-type]
    assert _stop_reason({field: at * 2}, RUNNING, budget) == reason  # type: ignore[arg-type]


def test_unset_limits_never_stop_and_missing_counters_are_zero():
    budget = Budget(calls=1)
    state = {"tokens": 10**12, "cost_usd": 1e12, "elapsed_s": 1e12}
    assert _stop_reason(state, RUNNING, budget) is None  # type: ignore[arg-type]
    assert _stop_reason({}, RUNNING, budget) is None  # type: ignore[arg-type]
    assert _stop_reason({}, RUNNING, Budget(calls=0)) == "budget"  # type: ignore[arg-type]
    full = Budget(calls=3, max_tokens=10, max_cost_usd=1.0, max_seconds=5.0)
    assert _stop_reason({}, RUNNING, full) is None  # type: ignore[arg-type]


def test_the_call_budget_is_checked_before_the_other_limits():
    state = {"calls": 3, "tokens": 50, "cost_usd": 2.0, "elapsed_s": 9.0}
    full = Budget(calls=3, max_tokens=10, max_cost_usd=1.0, max_seconds=5.0)
    assert _stop_reason(state, RUNNING, full) == "budget"  # type: ignore[arg-type]
    assert _stop_reason({**state, "calls": 2}, RUNNING, full) == "token limit"  # type: ignore[arg-type]
    assert _stop_reason({**state, "calls": 2, "tokens": 0}, RUNNING, full) == "cost limit"  # type: ignore[arg-type]
    assert _stop_reason({"elapsed_s": 9.0}, RUNNING, full) == "time limit"  # type: ignore[arg-type]


def test_a_fresh_search_is_under_the_smallest_limits():
    tight = Budget(calls=1, max_tokens=1, max_cost_usd=1e-9, max_seconds=1.0)
    assert _stop_reason({}, RUNNING, tight) is None  # type: ignore[arg-type]
