"""WorldCoder* and best-of-N controllers pinned: Beta posteriors after a scripted sequence of scores,
Thompson sampling's preference, the action chosen per program, best tracking and persistence."""

from __future__ import annotations

import pytest

from cwm.agents.results import ExpansionResult
from cwm.graph.baselines import BestOfN, WorldCoderSearch


def res(score: float, name: str, *, bug: bool = False) -> ExpansionResult:
    return ExpansionResult(f"def step():\n    return {name!r}\n", score, bug, feedback={"index": 0},
                           error="NameError" if bug else None)


def test_worldcoder_posterior_after_a_scripted_sequence():
    wc = WorldCoderSearch(seed=0, c=5.0)
    seed_sel = wc.select()
    assert seed_sel is not None and (seed_sel.parent, seed_sel.action_type) == (0, "g")
    assert wc.select() is None  # refinements wait for the seed program
    n1 = wc.apply(seed_sel, res(0.4, "a"))
    assert (wc.alpha[n1.id], wc.beta[n1.id]) == pytest.approx((3.0, 4.0))  # 1 + 5r, 1 + 5(1 - r)
    sel = wc.select()
    assert sel is not None and (sel.parent, sel.action_type) == (n1.id, "i")  # the only program
    n2 = wc.apply(sel, res(0.7, "b"))
    assert (wc.alpha[n2.id], wc.beta[n2.id]) == pytest.approx((4.5, 2.5))
    assert (wc.alpha[n1.id], wc.beta[n1.id]) == pytest.approx((3.0, 5.0))  # not fully correct: a failure
    # a fully correct refinement is a success for whichever program it refined
    sel = wc.select()
    assert sel is not None
    before = (wc.alpha[sel.parent], wc.beta[sel.parent])
    n3 = wc.apply(sel, res(1.0, "c"))
    assert (wc.alpha[sel.parent], wc.beta[sel.parent]) == pytest.approx((before[0] + 1, before[1]))
    assert (wc.alpha[n3.id], wc.beta[n3.id]) == pytest.approx((6.0, 1.0))
    assert wc.best == n3.id and wc.solved()
    assert [n.visits for n in wc.nodes] == [1, 1, 1, 1]
    assert [n.value_sum for n in wc.nodes] == [0.0, 0.4, 0.7, 1.0]


def test_worldcoder_c_scales_the_prior():
    wc = WorldCoderSearch(seed=0, c=2.0)
    n1 = wc.apply(wc.select(), res(0.25, "a"))
    assert (wc.alpha[n1.id], wc.beta[n1.id]) == pytest.approx((1.5, 2.5))


def test_worldcoder_fixes_buggy_programs_and_improves_others():
    wc = WorldCoderSearch(seed=1)
    n1 = wc.apply(wc.select(), res(0.0, "a", bug=True))
    sel = wc.select()
    assert sel is not None and (sel.parent, sel.action_type, sel.key) == (n1.id, "f", "f2")
    wc.apply(sel, res(0.3, "b"))
    assert n1.bug and wc.beta[n1.id] == pytest.approx(1 + 5 + 1)


def test_thompson_sampling_prefers_the_better_posterior():
    wc = WorldCoderSearch(seed=3)
    good = wc.apply(wc.select(), res(0.6, "good"))
    sel = wc.select()
    assert sel is not None
    bad = wc.apply(sel, res(0.3, "bad"))
    # Beta(4, 3 + 1 failure) against Beta(2.5, 4.5): the good one wins about 70 % of the draws
    assert (wc.alpha[good.id], wc.beta[good.id], wc.alpha[bad.id], wc.beta[bad.id]) == (4.0, 4.0, 2.5, 4.5)
    picks = []
    for _ in range(200):
        s = wc.select()
        assert s is not None
        picks.append(s.parent)
        wc.cancel(s)
    assert 110 < picks.count(good.id) < 190 and picks.count(good.id) + picks.count(bad.id) == 200
    assert wc.in_flight() == 0


def test_worldcoder_selection_is_seeded():
    def picks(seed: int) -> list[int]:
        wc = WorldCoderSearch(seed=seed)
        a = wc.apply(wc.select(), res(0.5, "a"))
        sel = wc.select()
        assert sel is not None and sel.parent == a.id
        wc.apply(sel, res(0.5, "b"))
        out = []
        for _ in range(40):
            s = wc.select()
            assert s is not None
            out.append(s.parent)
            wc.cancel(s)
        return out

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    assert set(picks(7)) == {1, 2}


def test_worldcoder_round_trip_keeps_posteriors_and_the_next_choice():
    wc = WorldCoderSearch(seed=4, c=3.0)
    wc.apply(wc.select(), res(0.2, "a"))
    sel = wc.select()
    assert sel is not None
    wc.apply(sel, res(0.6, "b"))
    again = WorldCoderSearch.from_dict(wc.to_dict())
    assert (again.c, again.alpha, again.beta, again.seed) == (3.0, wc.alpha, wc.beta, 4)
    a, b = wc.select(), again.select()
    assert a is not None and b is not None and (a.parent, a.key) == (b.parent, b.key)


def test_best_of_n_generates_from_the_root_and_keeps_the_first_best():
    bo = BestOfN(seed=0)
    sels = [bo.select() for _ in range(3)]
    assert all(s is not None and (s.parent, s.action_type) == (0, "g") for s in sels)
    assert [s.key for s in sels if s is not None] == ["g1", "g2", "g3"]
    assert bo.in_flight() == 3
    scores = [0.5, 0.8, 0.8]
    nodes = [bo.apply(s, res(sc, f"p{i}")) for i, (s, sc) in enumerate(zip(sels, scores, strict=True)) if s]
    assert bo.best == nodes[1].id and bo.best_node is nodes[1] and not bo.solved()
    assert bo.in_flight() == 0
    bo.cancel(bo.select())  # type: ignore[arg-type]
    assert bo.in_flight() == 0
    last = bo.apply(bo.select(), res(1.0, "p9"))  # type: ignore[arg-type]
    assert bo.best == last.id and bo.solved()
    again = BestOfN.from_dict(bo.to_dict())
    assert again.best == bo.best and len(again.nodes) == 5 and again.expansions == bo.expansions


def test_a_repeated_program_takes_the_first_ones_score():
    bo = BestOfN(seed=0)
    first = bo.apply(bo.select(), res(0.6, "same"))  # type: ignore[arg-type]
    again = bo.apply(bo.select(), ExpansionResult(first.program, 0.0, False))  # type: ignore[arg-type]
    assert again.duplicate_of == first.id and again.score == 0.6
    assert bo.best == first.id


def test_flat_children_record_the_expansion():
    wc = WorldCoderSearch(seed=0)
    r = ExpansionResult("def step():\n    pass\n", 0.25, True, heldout=0.5, feedback={"index": 3}, error="E")
    child = wc.apply(wc.select(), r)  # type: ignore[arg-type]
    assert (child.id, child.parent, child.action, child.key, child.depth) == (1, 0, "g", "g1", 1)
    assert (child.program, child.state_code, child.score, child.heldout) == (r.program, r.program, 0.25, 0.5)
    assert (child.bug, child.was_bug, child.complete, child.error, child.feedback) == (True, True, True, "E",
                                                                                       {"index": 3})
    assert (child.visits, child.value_sum, child.duplicate_of) == (1, 0.25, None)
    assert child.fingerprint is not None and wc.known == {child.fingerprint: 1}
    assert wc.nodes[0].children == {"g1": 1}
    sel = wc.select()
    assert sel is not None and sel.path == [1]
    grand = wc.apply(sel, res(0.5, "b"))
    assert (grand.depth, grand.parent, grand.action) == (2, 1, "f")
    again = WorldCoderSearch.from_dict(wc.to_dict())
    assert again.known == wc.known and again.in_flight() == 0 and again.selections == wc.selections
    pending = wc.select()
    assert pending is not None and WorldCoderSearch.from_dict(wc.to_dict()).in_flight() == 1


def test_persisted_form_and_options():
    wc = WorldCoderSearch(seed=2, refine="improve")
    d = wc.to_dict()
    assert (d["kind"], d["version"], d["seed"], d["refine"]) == ("worldcoder", WorldCoderSearch.version, 2, "improve")
    assert "refine" not in WorldCoderSearch(seed=2).to_dict()
    assert WorldCoderSearch.from_dict(d).refine == "improve"
    bo = BestOfN(seed=3, sample="s")
    d = bo.to_dict()
    assert (d["kind"], d["sample"]) == ("best-of-n", "s") and "sample" not in BestOfN(seed=3).to_dict()
    back = BestOfN.from_dict(d)
    assert (back.seed, back.sample) == (3, "s")
    del d["pending"]  # written by older versions without it
    assert BestOfN.from_dict(d).in_flight() == 0


def test_selections_are_counted_one_per_call_and_default_seed_is_zero():
    bo = BestOfN()
    for _ in range(3):
        bo.select()
    assert bo.selections == 3 and bo.seed == 0
    wc = WorldCoderSearch()
    assert wc.seed == 0
    wc.apply(wc.select(), res(0.5, "a"))  # type: ignore[arg-type]
    for _ in range(4):
        wc.cancel(wc.select())  # type: ignore[arg-type]
    assert wc.selections == 5


def test_root_selection_indices_and_failures():
    bo = BestOfN(seed=0)
    root = bo.nodes[0]
    assert (root.id, root.parent, root.action, root.key, root.visits) == (0, None, "root", "", 1)
    assert bo.selections == 0
    first, second = bo.select(), bo.select()
    assert first is not None and second is not None
    assert (first.index, second.index) == (0, 1)  # the LLM sample index of each expansion
    child = bo.apply(first, ExpansionResult(None, 0.0, True, feedback={"index": 4}))
    assert child.state_code == "" and child.program is None and None not in bo.known
    assert child.failures == [{"index": 4}]


def test_a_cancelled_seed_generation_still_counts_as_a_selection():
    wc = WorldCoderSearch(seed=0)
    wc.cancel(wc.select())  # type: ignore[arg-type]
    wc.select()
    assert wc.selections == 2
