"""Property tests of the GIF-MCTS trees through their public API (select / apply / cancel).

Hypothesis drives any sequence of selections, expansions (good, partial, buggy, repeated programs) and
cancellations, either one at a time or with several selections in flight (virtual loss), and checks the
bookkeeping after every step:

* every node's visits = 1 + the expansions applied below it (each backup adds one visit per node on
  its path), so the root's visits = applied expansions + 1;
* every node's virtual count = the in-flight selections whose path runs through it, and the pending
  map holds exactly the in-flight (parent, key) pairs; both return to zero once nothing is in flight;
* value sums are finite and non-negative, and a pruned node carries none.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import FeedbackGIFTree, GIFConfig, GIFTree, Selection

TREES = {"paper": GIFTree, "feedback": FeedbackGIFTree}
PROG = "\n".join(f"line{i}" for i in range(12))

op = st.one_of(
    st.tuples(st.just("select")),
    st.tuples(st.just("apply"), st.integers(0, 7), st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]),
              st.sampled_from(["ok", "ok", "bug", "short", "repeat"])),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
)


def examples(n: int) -> int:
    """Hypothesis examples per property; scripts/mutation.sh lowers it (CWM_HYPOTHESIS_EXAMPLES) per mutant."""
    return int(os.environ.get("CWM_HYPOTHESIS_EXAMPLES", n))


def result(kind: str, score: float, serial: int) -> ExpansionResult:
    if kind == "bug":
        return ExpansionResult(f"{PROG}\nbroken_{serial} = (", 0.0, True, error="SyntaxError")
    if kind == "short":  # complete at depth 1: the node gets a reward and offers improve only
        return ExpansionResult(f"x = {serial}", score, False, feedback={"index": 0})
    if kind == "repeat":  # the same program every time: a duplicate after the first
        return ExpansionResult(PROG, 0.5, False, feedback={"index": 0})
    return ExpansionResult(f"{PROG}\nv_{serial} = 1", score, False, feedback={"index": 0})


def check(tree: GIFTree, pending: list[Selection], applied: int) -> None:
    nodes = tree.nodes
    below = [0] * len(nodes)
    for n in nodes[1:]:
        p = n.parent
        while p is not None:
            below[p] += 1
            p = nodes[p].parent
    for n in nodes:
        assert n.visits == 1 + below[n.id], (n.id, n.visits, below[n.id])
        assert math.isfinite(n.value_sum) and n.value_sum >= 0.0
        if n.pruned and n.id != 0:
            assert n.value_sum == 0.0
        on_path = sum(n.id in s.path for s in pending)
        assert n.virtual == on_path, (n.id, n.virtual, on_path)
        want: dict[str, int] = {}
        for s in pending:
            if s.parent == n.id:
                want[s.key] = want.get(s.key, 0) + 1
        assert n.pending == want
    assert nodes[0].visits == applied + 1 and len(nodes) == applied + 1
    assert tree.in_flight() == len(pending)


def run_ops(tree: GIFTree, ops: list[tuple[Any, ...]], max_in_flight: int) -> None:
    pending: list[Selection] = []
    applied = 0
    for serial, o in enumerate(ops):
        if o[0] == "select":
            if len(pending) >= max_in_flight:
                continue
            sel = tree.select()
            if sel is None:
                continue
            parent = tree.nodes[sel.parent]
            assert parent.children.get(sel.key, "missing") is None  # an unexpanded action
            assert sel.path[0] == 0 and sel.path[-1] == sel.parent
            pending.append(sel)
        elif pending:
            sel = pending.pop(o[1] % len(pending))
            if o[0] == "apply":
                child = tree.apply(sel, result(o[3], o[2], serial))
                assert child.parent == sel.parent and tree.nodes[sel.parent].children[sel.key] == child.id
                applied += 1
            else:
                tree.cancel(sel)
        check(tree, pending, applied)
    for sel in pending:
        tree.cancel(sel)
    check(tree, [], applied)
    assert all(n.virtual == 0 and not n.pending for n in tree.nodes)
    best = tree.best_node
    if applied:
        assert best is not None and best.score == max(n.score for n in tree.nodes[1:])


@pytest.mark.parametrize("kind", TREES)
@settings(max_examples=examples(40), deadline=None)
@given(ops=st.lists(op, max_size=40), seed=st.integers(0, 3))
def test_property_one_selection_at_a_time(kind, ops, seed):
    run_ops(TREES[kind](GIFConfig(seed=seed)), ops, max_in_flight=1)


@pytest.mark.parametrize("kind", TREES)
@settings(max_examples=examples(40), deadline=None)
@given(ops=st.lists(op, max_size=40), seed=st.integers(0, 3), width=st.integers(2, 6))
def test_property_many_selections_in_flight(kind, ops, seed, width):
    run_ops(TREES[kind](GIFConfig(seed=seed)), ops, max_in_flight=width)


@pytest.mark.parametrize("kind", TREES)
@settings(max_examples=examples(15), deadline=None)
@given(ops=st.lists(op, max_size=30), seed=st.integers(0, 3))
def test_property_round_trip_through_to_dict_keeps_the_counts(kind, ops, seed):
    tree = TREES[kind](GIFConfig(seed=seed))
    run_ops(tree, ops, max_in_flight=1)
    again = TREES[kind].from_dict(tree.to_dict())
    assert [(n.visits, n.value_sum, n.virtual) for n in again.nodes] == \
        [(n.visits, n.value_sum, n.virtual) for n in tree.nodes]
    sel_a, sel_b = tree.select(), again.select()
    assert (sel_a is None) == (sel_b is None)
    if sel_a is not None and sel_b is not None:
        assert (sel_a.parent, sel_a.key, sel_a.path) == (sel_b.parent, sel_b.key, sel_b.path)


@pytest.mark.parametrize("kind", TREES)
def test_virtual_loss_spreads_concurrent_selections(kind):
    """Two selections in flight at once never pick the same fresh action twice at the root."""
    tree = TREES[kind](GIFConfig())
    a, b = tree.select(), tree.select()
    assert a is not None and b is not None
    assert (a.parent, a.key) != (b.parent, b.key)
    assert tree.nodes[0].virtual == 2 and tree.in_flight() == 2
    tree.cancel(a)
    tree.cancel(b)
    assert tree.nodes[0].virtual == 0 and tree.in_flight() == 0 and tree.nodes[0].pending == {}


@pytest.mark.parametrize("kind", TREES)
def test_a_child_records_its_expansion(kind):
    tree = TREES[kind](GIFConfig(seed=0))
    sel = tree.select()
    assert sel is not None and tree.selections == 1
    prog = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5"
    res = ExpansionResult(prog, 0.25, False, heldout=0.5, feedback={"index": 2}, error=None)
    child = tree.apply(sel, res)
    assert (child.parent, child.key, child.depth, child.action) == (0, sel.key, 1, "g")
    assert (child.program, child.score, child.heldout, child.feedback) == (prog, 0.25, 0.5, {"index": 2})
    assert child.state_code == "a = 1\nb = 2" and not child.complete  # L = 2 lines of 5
    assert child.failures == [{"index": 2}] and child.fingerprint is not None and not child.was_bug
    sel2 = next(s for s in iter(tree.select, None) if s.parent == child.id)
    grand = tree.apply(sel2, ExpansionResult(prog, 0.3, False))
    assert grand.state_code == "a = 1\nb = 2\nc = 3\nd = 4" and grand.depth == 2  # the parent's 2 lines + 2
    assert grand.duplicate_of == child.id and grand.score == 0.25  # the same program: its first score
    assert tree.selections >= 2


@pytest.mark.parametrize("kind", TREES)
def test_completeness_boundary_and_missing_programs(kind):
    tree = TREES[kind](GIFConfig(seed=0))
    exact = tree.apply(tree.select(), ExpansionResult("x = 1\ny = 2", 0.5, False))  # type: ignore[arg-type]
    assert exact.complete and exact.reward == 0.5  # exactly L lines: the whole program is in the node
    broken = tree.apply(tree.select(), ExpansionResult(None, 0.0, True, error="SyntaxError: x"))  # type: ignore[arg-type]
    assert broken.state_code == "" and broken.was_bug and broken.error == "SyntaxError: x"


def test_selection_scores_are_rounded_to_six_digits():
    tree = GIFTree(GIFConfig(seed=0))
    tree.apply(tree.select(), ExpansionResult(PROG + "\nz = 1", 0.6, False))  # type: ignore[arg-type]
    u, v, e = tree.ucb(tree.nodes[0], "g1")  # before the selection adds its virtual visit
    sel = tree.select()
    assert sel is not None and tree.selections == 2
    assert sel.scores["0:g1"] == [round(u, 6), round(v, 6), round(e, 6)] != [u, v, e]
