"""GIF-MCTS tree mechanics, exactly: selection scores, value predictors, widening, bug chains, backprop."""

from __future__ import annotations

import itertools
import math

import pytest

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import GIFConfig, GIFTree, ValuePredictor

PROG = "\n".join(f"line{i}" for i in range(20))  # long enough never to be complete at shallow depths
_serial = itertools.count()


def distinct() -> str:
    """A program no other node has (equal programs are duplicates and take the first one's score)."""
    return f"{PROG}\nvariant_{next(_serial)} = 1"


def ok(score: float, program: str | None = None) -> ExpansionResult:
    return ExpansionResult(program or distinct(), score, False, feedback={"index": 0})


def bug(program: str | None = None) -> ExpansionResult:
    return ExpansionResult(program or distinct(), 0.0, True, error="NameError")


def test_root_offers_only_generate_and_first_choice_is_by_value():
    t = GIFTree()
    sel = t.select()
    assert (sel.parent, sel.key, sel.action_type) == (0, "g1", "g")
    assert set(t.nodes[0].children) == {"g1", "g2"}  # widening on choosing a new action
    # ln(1) = 0 at the fresh root: exploration term 0, value = generate prior 0.5
    assert sel.scores["0:g1"] == [0.5, 0.5, 0.0]


def test_expansion_backprop_and_lines_per_node():
    t = GIFTree()
    sel = t.select()
    child = t.apply(sel, ok(0.6))
    assert child.state_code == "line0\nline1"  # exactly L = 2 lines (fix of the official off-by-one)
    assert set(child.children) == {"g1", "i1"}
    assert (child.visits, child.value()) == (1, 0.6)
    root = t.nodes[0]
    assert root.visits == 2 and root.value_sum == pytest.approx(0.6)
    assert t.best == child.id
    # a grandchild keeps the parent's 2 lines plus 2 more
    t2 = t.apply(t.select(), ok(0.7))
    assert t2.state_code.count("\n") + 1 in (2, 4)


def test_ucb_formula_for_visited_and_unvisited_children():
    t = GIFTree()
    t.apply(t.select(), ok(0.6))           # node 1 under g1
    root = t.nodes[0]
    c, eps = 0.1, 1.0
    _u, v, e = t.ucb(root, "g1")
    assert v == pytest.approx(0.6)
    assert e == pytest.approx(c * math.sqrt(math.log(2) / (1 + eps)))
    _u2, v2, e2 = t.ucb(root, "g2")        # unvisited: same-type count = 2 - 1 = 1
    assert e2 == pytest.approx(c * math.sqrt(math.log(2) / (1 + eps)))
    # predicted value: local value of expanded g siblings is 0.6, global = (0.5*2 + 0.6)/3
    v_g = (0.5 * 2 + 0.6) / 3
    pred = t.predictors["g"].predict(v_g, 0.6)
    assert v2 == pytest.approx(pred)


def test_value_predictor_sgd_matches_hand_computation():
    p = ValuePredictor(0.5, 0.5, 3)
    assert p.predict(0.4, None) == 0.4
    loss = p.update(0.4, None, 1.0)  # no local value: weights unused, step counter still advances
    assert loss == pytest.approx(0.36) and (p.w_g, p.w_l, p.n) == (0.5, 0.5, 4)
    pred = p.predict(0.2, 0.8)
    assert pred == pytest.approx(0.5)
    p.update(0.2, 0.8, 1.0)
    # d/dw_g of (pred - 1)^2 = 2 (pred - 1) w_l (v_g - v_l) / (w_g + w_l)^2 = 2(-0.5)(0.5)(-0.6)/1 = 0.3
    assert p.w_g == pytest.approx(0.5 - 0.3 / 4)
    assert p.w_l == pytest.approx(0.5 + 0.3 / 4)


def test_local_value_excludes_the_new_child():
    t = GIFTree()
    t.apply(t.select(), ok(0.6))
    # second generate at the root: the predictor is trained with v_L over the existing sibling only
    t.nodes[0].visits = 5  # make exploration irrelevant for the choice below
    sel = next(s for s in iter(t.select, None) if s.parent == 0)
    t.apply(sel, ok(0.2))
    entry = t.predictor_log[-1]
    assert entry["v_l"] == pytest.approx(0.6) and entry["target"] == 0.2


def test_buggy_child_gets_the_temporary_value_and_a_single_fix_action():
    t = GIFTree()
    child = t.apply(t.select(), bug())
    assert child.children == {"f1": None} and child.fixes_left == 3
    assert child.value() == pytest.approx(0.99)
    assert t.nodes[0].value_sum == 0.0  # temporary values never reach the ancestors


def test_fix_chain_decays_then_prunes_after_three_failures():
    t = GIFTree(GIFConfig(allow_generate=False))  # the root's g1 is then its only action: fixes must follow
    b = t.apply(t.select(), bug())
    values = []
    for expected_left in (2, 1, 0):
        sel = t.select()
        assert sel.action_type == "f"
        f = t.apply(sel, bug())
        assert f.fixes_left == expected_left
        values.append(t.nodes[b.id].value())
    assert values[0] == pytest.approx(0.66) and values[1] == pytest.approx(0.33)
    assert t.nodes[b.id].pruned and t.nodes[b.id].value_sum == 0.0
    # the pruned chain is never selected again: nothing is left to select
    assert t.select() is None


def test_successful_fix_gives_the_chain_the_fixed_value():
    t = GIFTree()
    b = t.apply(t.select(), bug())
    f = t.apply(t.select(), ok(0.8))
    assert f.action == "f"
    assert t.nodes[b.id].value() == pytest.approx(0.8) and not t.nodes[b.id].bug


def test_complete_program_gets_improve_only():
    t = GIFTree()
    child = t.apply(t.select(), ok(0.5, program="import numpy"))
    assert child.complete and child.reward == 0.5 and child.children == {"i1": None}
    assert child.value_sum == 0.0  # value 0, reward carried to ancestors
    assert t.nodes[0].value_sum == pytest.approx(0.5)


def test_best_keeps_the_earliest_on_ties_and_solved_stops():
    t = GIFTree()
    a = t.apply(t.select(), ok(0.5))
    t.apply(t.select(), ok(0.5))
    assert t.best == a.id
    t.apply(t.select(), ok(1.0))
    assert t.solved()


def test_virtual_loss_spreads_concurrent_selections():
    t = GIFTree()
    t.apply(t.select(), ok(0.6))
    t.apply(t.select(), ok(0.5))
    picks = [t.select() for _ in range(4)]
    keys = {(p.parent, p.key) for p in picks if p is not None}
    assert len(keys) == len([p for p in picks if p is not None])  # never the same action twice in flight
    assert t.in_flight() == len(keys)
    for p in picks:
        if p is not None:
            t.apply(p, ok(0.1))
    assert t.in_flight() == 0 and all(n.virtual == 0 for n in t.nodes)


def test_bug_node_is_not_selected_twice_while_its_fix_is_in_flight():
    t = GIFTree()
    t.apply(t.select(), bug())
    first = t.select()
    assert first.action_type == "f"
    second = t.select()
    assert second is None or (second.parent, second.key) != (first.parent, first.key)


def test_round_trip_preserves_the_search_exactly():
    t = GIFTree(GIFConfig(seed=3))
    for score in (0.3, 0.6, 0.2):
        t.apply(t.select(), ok(score))
    t.apply(t.select(), bug())
    again = GIFTree.from_dict(t.to_dict())
    for _ in range(5):
        s1, s2 = t.select(), again.select()
        assert (s1.parent, s1.key, s1.scores) == (s2.parent, s2.key, s2.scores)
        same = ok(0.4)
        t.apply(s1, same)
        again.apply(s2, same)
    assert t.to_dict() == again.to_dict()


def test_seeded_tie_breaks_are_reproducible_and_seed_dependent():
    def run(seed: int) -> list[tuple[int, str]]:
        t = GIFTree(GIFConfig(seed=seed))
        out = []
        for _ in range(8):
            s = t.select()
            out.append((s.parent, s.key))
            t.apply(s, ok(0.5))
        return out

    assert run(1) == run(1)
