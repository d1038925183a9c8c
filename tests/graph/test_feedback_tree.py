"""The feedback tree (method gif-mcts): improve predicted from the parent's score and measured gains, the
bounded wait for improve, duplicates as zero-gain outcomes, no improve without a showable failure."""

from __future__ import annotations

import itertools

import pytest

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import FeedbackGIFTree, GIFConfig, GIFTree, Selection

PROG = "\n".join(f"line{i} = {i}" for i in range(20))
_serial = itertools.count()
FAIL = {"index": 3, "state": [0.0], "action": 0, "expected": {}, "predicted": {}, "mismatch": ["reward"]}


def distinct() -> str:
    return f"{PROG}\nvariant_{next(_serial)} = 1"


def ok(score: float, program: str | None = None, failures: list | None = None) -> ExpansionResult:
    shown = [FAIL] if failures is None else failures
    return ExpansionResult(program or distinct(), score, False, feedback=shown[0] if shown else None,
                           failures=shown)


def pick(t: FeedbackGIFTree | GIFTree, parent: int, action: str) -> Selection:
    """A selection of the untried ``action`` at ``parent``, booked the way ``select`` books one (in-flight
    mark, virtual loss, widening), for tests that need a particular expansion."""
    node = t.nodes[parent]
    key = next(k for k, cid in node.children.items() if k[0] == action and cid is None and k not in node.pending)
    path = [parent]
    while t.nodes[path[0]].parent is not None:
        path.insert(0, t.nodes[path[0]].parent)
    t._widen(node, key)
    sel = Selection(parent, key, action, path, t.expansions)
    t.expansions += 1
    t._add_virtual(sel)
    return sel


def test_untried_improve_is_predicted_from_its_parent_and_measured_gains():
    t = FeedbackGIFTree()
    a = t.apply(t.select(), ok(0.8))
    # no improve measured yet: parent's score + the prior gain (one pseudo-sample)
    assert t.predict(a, "i") == pytest.approx(0.8 + 0.05)
    assert t.ucb(a, "i1")[1] == pytest.approx(0.85)
    sel = t.select()
    assert (sel.parent, sel.action_type) == (a.id, "i")  # beats the generate predictor (global mean 0.6)
    b = t.apply(sel, ok(0.7))  # this improve lost 0.1
    assert t.mean_gain("i") == pytest.approx((0.05 - 0.1) / 2)
    # a's next improve: a's own gains blended with the run's mean (one pseudo-sample)
    assert t.expected_gain(a, "i") == pytest.approx((-0.1 + t.mean_gain("i")) / 2)
    assert t.predict(b, "i") == pytest.approx(0.7 + t.mean_gain("i"))  # b has no improve child of its own


def test_improves_that_hurt_send_the_search_back_to_generate():
    t = FeedbackGIFTree(GIFConfig(stall_patience=100))
    a = t.apply(t.select(), ok(0.6))
    for _ in range(3):
        t.apply(pick(t, a.id, "i"), ok(0.1))  # every improve loses 0.5
    assert t.predict(a, "i") < t.predict(a, "g")
    sel = t.select()
    assert sel.action_type == "g"


def test_paper_tree_never_improves_a_high_scoring_generate():
    """The issue's finding, as a unit: generates at 0.98 keep winning against the improve prior."""
    t = GIFTree()
    for _ in range(6):
        sel = t.select()
        assert sel.action_type == "g"
        t.apply(sel, ok(0.98))


def test_bounded_wait_forces_the_best_untried_improve():
    # improves predicted far below generates (a strongly negative prior gain): UCT alone would not pick one
    t = FeedbackGIFTree(GIFConfig(prior_gain_improve=-1.0, prior_gain_count=50, stall_patience=2))
    a = t.apply(t.select(), ok(0.5))
    assert t.stall == 0
    chosen = []
    for _ in range(8):
        sel = t.select()
        chosen.append((sel.action_type, sel.reason, sel.parent))
        t.apply(sel, ok(0.4))  # nothing raises the best
    forced = [c for c in chosen if c[1] == "stall"]
    # forced after every 2 expansions without a new best, never twice in a row, best node first
    assert [c[1] for c in chosen[:3]] == ["uct", "uct", "stall"] and chosen[2] == ("i", "stall", a.id)
    assert all(c[0] == "i" for c in forced) and len(forced) >= 2
    assert len({c[2] for c in forced}) == len(forced)  # each node forced at most once
    assert all(not (x[1] == y[1] == "stall") for x, y in itertools.pairwise(chosen))


def test_a_new_best_restarts_the_wait():
    t = FeedbackGIFTree(GIFConfig(prior_gain_improve=-1.0, prior_gain_count=50, stall_patience=2))
    t.apply(t.select(), ok(0.5))
    t.apply(t.select(), ok(0.4))
    assert t.stall == 1
    t.apply(t.select(), ok(0.9))
    assert t.stall == 0 and t.select().reason == "uct"


def test_a_duplicate_is_a_zero_gain_outcome_with_no_actions():
    t = FeedbackGIFTree()
    a = t.apply(t.select(), ok(0.8, program=PROG))
    root_value, a_value = t.nodes[0].value(real=True), a.value(real=True)
    sel = pick(t, a.id, "i")
    d = t.apply(sel, ExpansionResult(PROG.replace(" = ", "=") + "\n# same program, other layout\n", 0.0, False,
                                     duplicate_of=None))
    assert d.duplicate_of == a.id and d.score == 0.8 and d.failures == a.failures  # copied, not re-scored
    assert d.children == {} and t.best == a.id
    assert t.gain_sum["i"] == pytest.approx(0.05) and t.gain_count["i"] == 2  # gain 0 recorded
    # ancestors only gain a visit: their means are unchanged
    assert t.nodes[0].value(real=True) == pytest.approx(root_value) and a.value(real=True) == pytest.approx(a_value)
    # a duplicate named by the agent (not scored there) takes its original's numbers the same way
    e = t.apply(pick(t, a.id, "i"), ExpansionResult(PROG, 0.0, False, duplicate_of=a.id))
    assert (e.duplicate_of, e.score) == (a.id, 0.8)


def test_concurrent_duplicates_are_recognised_when_applied():
    t = FeedbackGIFTree()
    s1, s2 = t.select(), t.select()
    assert s1.key != s2.key
    first = t.apply(s1, ok(0.7, program=PROG))
    second = t.apply(s2, ok(0.7, program="# comment\n" + PROG))
    assert second.duplicate_of == first.id and first.duplicate_of is None


def test_duplicate_generate_trains_the_generate_predictor_with_zero_gain():
    t = FeedbackGIFTree()
    t.apply(t.select(), ok(0.9, program=PROG))
    t.nodes[0].visits = 100  # keep exploring the root
    sel = pick(t, 0, "g")
    t.apply(sel, ExpansionResult(PROG, 0.0, False))
    assert t.predictor_log[-1]["target"] == 0.0  # the root's own score: nothing gained


def test_no_improve_without_a_failure_it_may_show():
    t = FeedbackGIFTree()
    a = t.apply(t.select(), ok(0.95, failures=[]))  # wrong only on transitions the audit marked inconsistent
    assert set(a.children) == {"g1"}
    p = GIFTree()
    b = p.apply(p.select(), ok(0.95, failures=[]))
    assert set(b.children) == {"g1", "i1"}  # the paper tree is unchanged


def test_feedback_tree_round_trip_preserves_the_search():
    t = FeedbackGIFTree(GIFConfig(seed=5))
    for score in (0.3, 0.6, 0.2):
        t.apply(t.select(), ok(score))
    again = FeedbackGIFTree.from_dict(t.to_dict())
    for _ in range(5):
        s1, s2 = t.select(), again.select()
        assert (s1.parent, s1.key, s1.reason) == (s2.parent, s2.key, s2.reason)
        same = ok(0.4)
        t.apply(s1, same)
        again.apply(s2, same)
    assert t.to_dict() == again.to_dict()
