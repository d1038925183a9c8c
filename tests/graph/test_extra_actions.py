"""Node types beyond generate/improve/fix in the feedback tree: keys, priors, own predictors, first tries,
checkpoints; the paper tree and older checkpoints are unaffected."""

from __future__ import annotations

import json

from test_feedback_tree import FAIL, distinct, ok

from cwm.agents.results import ExpansionResult
from cwm.graph.tree import (
    ExtraAction,
    FeedbackGIFTree,
    GIFConfig,
    GIFTree,
    first_key,
    key_type,
    next_key,
)


def tree(*extra: ExtraAction) -> FeedbackGIFTree:
    return FeedbackGIFTree(GIFConfig(seed=1, extra_actions=extra))


def test_keys_of_builtin_and_named_types():
    assert [key_type(k) for k in ("g1", "i12", "f3", "analyze#1", "my-node#40")] == [
        "g", "i", "f", "analyze", "my-node"]
    assert [next_key(k) for k in ("g9", "analyze#9")] == ["g10", "analyze#10"]
    assert (first_key("i"), first_key("focus")) == ("i1", "focus#1")


def test_a_rewriting_node_is_offered_with_improve_and_tried_first():
    t = tree(ExtraAction("analyze", prior=0.5, prior_gain=0.2))
    assert t.nodes[0].children == {"g1": None}  # it needs a program to work on
    a = t.apply(t.select(), ok(0.6))
    assert set(a.children) == {"g1", "i1", "analyze#1"}
    sel = t.select()
    assert (sel.parent, sel.key, sel.action_type, sel.reason) == (a.id, "analyze#1", "analyze", "first-try")
    assert "analyze#2" in a.children  # widened like any action
    child = t.apply(sel, ok(0.9))
    assert child.action == "analyze"
    # its own gain statistics moved (one prior pseudo-sample of 0.2, then +0.3); improve's did not
    assert t.mean_gain("analyze") == (0.2 + 0.3) / 2 and t.mean_gain("i") == t.config.prior_gain_improve
    # tried once: from now on it competes by UCT, never forced again
    assert all(s.reason != "first-try" for s in (t.select(), t.select()))


def test_an_untried_rewrite_is_predicted_from_its_parent():
    t = tree(ExtraAction("analyze", prior_gain=0.2))
    a = t.apply(t.select(), ok(0.6))
    assert t.predict(a, "analyze") == 0.6 + 0.2


def test_a_from_scratch_node_sits_at_the_root_and_uses_the_linear_predictor():
    t = tree(ExtraAction("sketch", prior=0.7, needs_parent=False))
    assert set(t.nodes[0].children) == {"g1", "sketch#1"}
    sel = t.select()
    assert (sel.key, sel.reason) == ("sketch#1", "first-try")
    assert t.global_value("sketch") == 0.7
    t.apply(sel, ok(0.3))
    assert t.global_count["sketch"] == t.config.prior_count + 1  # trained like generate
    assert "sketch#1" not in t.nodes[1].children  # not offered below the root


def test_nothing_to_rewrite_no_offer():
    t = tree(ExtraAction("analyze"))
    solved = t.apply(t.select(), ok(1.0, failures=[]))
    assert "analyze#1" not in solved.children
    t2 = tree(ExtraAction("analyze"))
    bug = t2.apply(t2.select(), ExpansionResult(distinct(), 0.0, True, error="NameError"))
    assert set(bug.children) == {"f1", "analyze#1"}  # a node can analyze a traceback too
    dup_tree = tree(ExtraAction("analyze"))
    prog = distinct()
    dup_tree.apply(dup_tree.select(), ok(0.5, program=prog))
    dup = dup_tree.apply(dup_tree.select(), ok(0.0, program=prog))
    assert dup.duplicate_of is not None and dup.children == {}


def test_checkpoint_round_trip_and_older_checkpoints():
    t = tree(ExtraAction("analyze", prior_gain=0.3))
    t.apply(t.select(), ok(0.5))
    t.apply(t.select(), ok(0.7))
    d = json.loads(json.dumps(t.to_dict()))
    back = FeedbackGIFTree.from_dict(d)
    assert json.loads(json.dumps(back.to_dict())) == d
    assert back.config.extra_actions == (ExtraAction("analyze", 0.5, 0.3, True),)
    assert back.select().index == t.select().index
    # a checkpoint written before node types existed has no extra_actions: it loads with none
    old = FeedbackGIFTree()
    old.apply(old.select(), ok(0.5))
    od = json.loads(json.dumps(old.to_dict()))
    del od["config"]["extra_actions"]
    loaded = FeedbackGIFTree.from_dict(od)
    assert loaded.config.extra_actions == () and set(loaded.gain_sum) == {"g", "i", "f"}


def test_the_paper_tree_is_unchanged():
    t = GIFTree()
    assert set(t.predictors) == {"g", "i", "f"} and t.nodes[0].children == {"g1": None}
    node = t.apply(t.select(), ok(0.5, failures=[FAIL]))
    assert all(key_type(k) in "gif" for k in node.children)
