"""GIF-MCTS tree rules the mutation run found unpinned: the seeded draw between equal UCT scores, the
expansion index, the visit-only backup of a buggy child, and the feedback tree's bounded wait for improve
(the stall rule and what resets it)."""

from __future__ import annotations

import itertools

import pytest

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import ExtraAction, FeedbackGIFTree, GIFConfig, GIFTree, Selection

PROG = "\n".join(f"line{i}" for i in range(20))
_serial = itertools.count()


def ok(score: float) -> ExpansionResult:
    return ExpansionResult(f"{PROG}\nv_{next(_serial)} = 1", score, False, feedback={"index": 0})


def bug() -> ExpansionResult:
    return ExpansionResult(f"{PROG}\nbroken_{next(_serial)} = (", 0.0, True, error="SyntaxError")


def _sel(tree: GIFTree) -> Selection:
    sel = tree.select()
    assert sel is not None
    return sel


# --- ties --------------------------------------------------------------------------------------------------


def _tied_tree(seed: int) -> GIFTree:
    """Root -> node 1 (score 0.5, improve prior 0.5): the root's g1 (node 1) and g2 and node 1's g1 and
    i1 all score 0.5 plus the same exploration term, so the next selection is a seeded draw."""
    t = GIFTree(GIFConfig(seed=seed, prior_improve=0.5))
    t.apply(_sel(t), ok(0.5))
    root = t.nodes[0]
    assert t.ucb(root, "g1") == t.ucb(root, "g2")
    assert t.ucb(t.nodes[1], "g1") == t.ucb(t.nodes[1], "i1")
    return t


def test_equal_uct_scores_are_broken_by_a_seeded_draw():
    picks = {seed: (s.parent, s.key) for seed in range(16) for s in [_sel(_tied_tree(seed))]}
    assert set(picks.values()) == {(0, "g2"), (1, "g1"), (1, "i1")}  # every tied action is drawn by some seed
    assert all((s.parent, s.key) == picks[seed] for seed in range(16) for s in [_sel(_tied_tree(seed))])


def test_a_single_best_action_is_taken_whatever_the_seed():
    picks = set()
    for seed in range(8):
        t = GIFTree(GIFConfig(seed=seed))
        t.apply(_sel(t), ok(0.9))  # node 1 (0.9) above the root's g2; at node 1, g (2*0.5+0.9)/3 above i (0.55)
        s = _sel(t)
        picks.add((s.parent, s.key))
    assert picks == {(1, "g1")}


# --- the expansion index -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [GIFTree, FeedbackGIFTree])
def test_selections_are_numbered_by_expansion_and_cancelled_numbers_are_not_reused(kind):
    t = kind(GIFConfig(seed=1))
    a, b = _sel(t), _sel(t)
    assert (a.index, b.index) == (0, 1) and t.expansions == 2
    t.cancel(a)
    c = _sel(t)
    assert c.index == 2
    t.apply(b, ok(0.3))
    t.apply(c, ok(0.4))
    assert _sel(t).index == 3 and t.expansions == 4


def test_a_forced_improve_takes_the_next_expansion_index():
    t = FeedbackGIFTree(GIFConfig(seed=0, stall_patience=1))
    t.apply(_sel(t), ok(0.6))
    t.apply(_sel(t), ok(0.2))  # no new best: stall 1
    forced = _sel(t)
    assert forced.reason == "stall" and forced.index == 2 and t.expansions == 3


# --- the visit-only backup of a buggy child ------------------------------------------------------------------


def test_a_buggy_child_adds_visits_but_not_values_to_its_ancestors():
    t = GIFTree(GIFConfig(seed=0))
    n1 = t.apply(_sel(t), ok(0.6))
    root = t.nodes[0]
    assert (root.visits, root.value_sum, n1.visits, n1.value_sum) == (2, pytest.approx(0.6), 1, pytest.approx(0.6))
    sel = next(s for s in iter(lambda: _sel(t), None) if s.parent == n1.id and s.action_type == "g")
    child = t.apply(sel, bug())
    # each ancestor keeps its mean: the sum grows by the mean, the visits by one
    assert (n1.visits, n1.value_sum) == (2, pytest.approx(1.2))
    assert (root.visits, root.value_sum) == (3, pytest.approx(0.9))
    # the buggy child holds its temporary value (three fixes left: 0.99) for its one visit
    assert (child.visits, child.value_sum, child.value()) == (1, pytest.approx(0.99), pytest.approx(0.99))


def test_a_partial_child_backs_up_its_score_and_a_complete_one_its_reward():
    t = GIFTree(GIFConfig(seed=0, discount=0.5))
    n1 = t.apply(_sel(t), ok(0.6))
    root = t.nodes[0]
    assert (n1.value_sum, root.value_sum) == (pytest.approx(0.6), pytest.approx(0.5 * 0.6))
    done = t.apply(_sel(t), ExpansionResult("x = 1", 0.8, False, feedback={"index": 0}))
    assert done.parent == n1.id and done.complete and done.reward == 0.8
    # complete: 0 at the child, its reward 0.8 at node 1 (reward 0), then 0 + 0.5 * 0.8 at the root
    assert done.value_sum == 0.0 and n1.value_sum == pytest.approx(0.6 + 0.8)
    assert root.value_sum == pytest.approx(0.3 + 0.4)


# --- the feedback tree's stall rule ------------------------------------------------------------------------------


def _stalled(patience: int, worse: int) -> FeedbackGIFTree:
    t = FeedbackGIFTree(GIFConfig(seed=0, stall_patience=patience))
    t.apply(_sel(t), ok(0.6))  # the best: improvable (a failing transition to show, improve untried)
    for _ in range(worse):
        sel = _sel(t)
        assert sel.reason == "uct"
        t.apply(sel, ok(0.1))
    return t


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_the_best_nodes_improve_is_forced_after_patience_expansions_without_a_new_best(patience):
    early = _stalled(patience, patience - 1)
    assert early.stall == patience - 1 and _sel(early).reason == "uct"
    t = _stalled(patience, patience)
    assert t.stall == patience
    # the best improvable node whose improve is neither tried nor in flight (earliest on equal scores)
    untried = [n for n in t.nodes if t.improvable(n) and all(
        cid is None and k not in n.pending for k, cid in n.children.items() if k.startswith("i"))]
    best = max(untried, key=lambda n: (n.score, -n.id))
    forced = _sel(t)
    assert (forced.reason, forced.parent, forced.key) == ("stall", best.id, "i1") and t.stall == 0
    assert _sel(t).reason == "uct"  # the count restarted


def test_a_new_best_resets_the_stall_count():
    t = _stalled(3, 2)
    sel = _sel(t)
    t.apply(sel, ok(0.9))
    assert t.stall == 0
    t.apply(_sel(t), ok(0.05))
    assert t.stall == 1


def test_no_improve_is_forced_when_no_node_is_improvable():
    t = FeedbackGIFTree(GIFConfig(seed=0, stall_patience=1))
    t.apply(_sel(t), ExpansionResult(f"{PROG}\nw = 1", 0.6, False))  # nothing to show: no improve offered
    t.apply(_sel(t), ExpansionResult(f"{PROG}\nw = 2", 0.2, False))
    assert t.stall == 1
    assert _sel(t).reason == "uct"


# --- extra node types ---------------------------------------------------------------------------------------------


def test_an_extra_node_type_is_tried_once_at_the_best_node_offering_it():
    t = FeedbackGIFTree(GIFConfig(seed=0, extra_actions=(ExtraAction("critic", prior=0.0),)))
    t.apply(_sel(t), ok(0.3))  # node 1 offers critic#1 (a healthy program below 1.0)
    assert "critic#1" in t.nodes[1].children
    first = _sel(t)  # UCT would not choose it (prior 0, below the generate and improve predictions)
    assert (first.reason, first.parent, first.key, first.action_type) == ("first-try", 1, "critic#1", "critic")
    t.apply(first, ok(0.1))
    later = [_sel(t) for _ in range(5)]
    assert all(s.reason == "uct" for s in later)  # once only
