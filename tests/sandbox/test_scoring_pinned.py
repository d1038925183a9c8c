"""The scorer's rules pinned at their boundaries, plus hypothesis properties over states of any dtype/shape.

Hand-made datasets (no environment, no sandbox): each test knows the exact credit it expects.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cwm.envs.dataset import Dataset
from cwm.sandbox.scoring import ATOL, METRICS, RTOL, score_all, score_transition


def examples(n: int) -> int:
    """Hypothesis examples per property; scripts/mutation.sh lowers it (CWM_HYPOTHESIS_EXAMPLES) per mutant."""
    return int(os.environ.get("CWM_HYPOTHESIS_EXAMPLES", n))



def make_ds(next_states: Any, rewards: Any, *, terminated: Any = None, truncated: Any = None,
            state_kind: str = "array") -> Dataset:
    nxt = np.asarray(next_states)
    n = len(nxt)
    return Dataset(env_id="Hand-v0", state=nxt.copy(), action=np.zeros(n, dtype=np.int64), next_state=nxt,
                   reward=np.asarray(rewards, dtype=np.float32),
                   terminated=np.asarray(terminated if terminated is not None else [False] * n, dtype=bool),
                   truncated=np.asarray(truncated if truncated is not None else [False] * n, dtype=bool),
                   trajectory=np.zeros(n, dtype=np.int32), step=np.arange(n, dtype=np.int32),
                   state_kind=state_kind, action_kind="int")  # type: ignore[arg-type]


def pred(ds: Dataset, i: int, **change: Any) -> dict[str, Any]:
    s = np.asarray(ds.next_state[i])
    p: dict[str, Any] = {"s": s.astype(np.float64).ravel().tolist(), "shape": list(s.shape),
                         "r": float(ds.reward[i]), "d": bool(ds.terminated[i])}
    p.update(change)
    return p


def with_element(ds: Dataset, i: int, k: int, value: float) -> dict[str, Any]:
    flat = np.asarray(ds.next_state[i], dtype=np.float64).ravel().tolist()
    flat[k] = value
    return pred(ds, i, s=flat)


# --- tolerances at the boundary ------------------------------------------------------------------------------


def test_tolerances_are_1e_5():
    assert (RTOL, ATOL) == (1e-5, 1e-5)
    assert METRICS == ("cwm", "official")


@pytest.mark.parametrize("x", [0.0, 1.0, -3.5, 250.0])
def test_state_tolerance_just_inside_and_just_outside(x):
    ds = make_ds([[x, 2.0]], [0.0])
    tol = ATOL + RTOL * abs(x)
    inside = score_transition(ds, 0, with_element(ds, 0, 0, x + 0.9 * tol))
    outside = score_transition(ds, 0, with_element(ds, 0, 0, x + 1.1 * tol))
    below = score_transition(ds, 0, with_element(ds, 0, 0, x - 1.1 * tol))
    assert inside.correct and inside.credit == 1.0
    assert not outside.correct and outside.mismatch == ["next_state"]
    assert outside.credit == pytest.approx((0.5 + 1 + 1) / 3)
    assert below.mismatch == ["next_state"]


def test_state_tolerance_is_relative_to_the_recorded_value():
    # 1e4 recorded: tol = 1e-5 + 0.1; a predicted 1e4 + 0.09 matches though |Δ| ≫ atol
    ds = make_ds([[1e4]], [0.0])
    assert score_transition(ds, 0, with_element(ds, 0, 0, 1e4 + 0.09)).correct
    assert not score_transition(ds, 0, with_element(ds, 0, 0, 1e4 + 0.11)).correct
    # and relative to the *recorded* value, not the prediction: recorded 0, predicted 2e-5 is outside
    zero = make_ds([[0.0]], [0.0])
    assert not score_transition(zero, 0, with_element(zero, 0, 0, 2e-5)).correct


@pytest.mark.parametrize("r", [0.0, 1.0, -7.25, 1000.0])
def test_reward_tolerance_just_inside_and_just_outside(r):
    ds = make_ds([[0.0]], [r])
    tol = ATOL + RTOL * abs(r)
    assert score_transition(ds, 0, pred(ds, 0, r=r + 0.9 * tol)).correct
    assert score_transition(ds, 0, pred(ds, 0, r=r - 0.9 * tol)).correct
    out = score_transition(ds, 0, pred(ds, 0, r=r + 1.5 * tol))
    assert out.mismatch == ["reward"] and out.credit == pytest.approx(2 / 3)
    assert score_transition(ds, 0, pred(ds, 0, r=r - 1.5 * tol)).mismatch == ["reward"]
    # the official metric wants the widened float32 exactly
    assert score_transition(ds, 0, pred(ds, 0, r=float(np.float32(r))), "official").correct
    assert not score_transition(ds, 0, pred(ds, 0, r=r + 0.5 * tol), "official").correct


def test_integer_states_compare_exactly():
    ds = make_ds(np.array([[3, 4]], dtype=np.int64), [0.0])
    assert not score_transition(ds, 0, pred(ds, 0, s=[3.00001, 4.0])).correct
    assert score_transition(ds, 0, pred(ds, 0, s=[3, 4])).correct
    scalar = make_ds(np.array([5], dtype=np.int64), [0.0], state_kind="int")
    assert score_transition(scalar, 0, pred(scalar, 0, s=[5], shape=[])).correct
    assert score_transition(scalar, 0, pred(scalar, 0, s=[6], shape=[])).mismatch == ["next_state"]
    # a scalar state is all or nothing: two values where one is expected score 0, not 1/2
    t = score_transition(scalar, 0, pred(scalar, 0, s=[5, 5], shape=[2]))
    assert t.credit == pytest.approx(2 / 3)


# --- which parts count ------------------------------------------------------------------------------------------


def test_truncated_transitions_do_not_score_done_unless_official():
    ds = make_ds([[1.0]], [1.0], truncated=[True])
    t = score_transition(ds, 0, pred(ds, 0, d=False))
    assert t.correct and t.credit == 1.0
    t = score_transition(ds, 0, pred(ds, 0, d=True))
    assert t.correct  # done is not scored at all on a truncated step
    off = score_transition(ds, 0, pred(ds, 0, d=False), "official")
    assert off.mismatch == ["done"] and off.credit == pytest.approx(0.5)
    assert score_transition(ds, 0, pred(ds, 0, d=True), "official").credit == 1.0
    # official = terminated or truncated: state is not scored there, so reward and done are half each
    assert score_transition(ds, 0, pred(ds, 0, d=True, s=[9.0]), "official").correct


def test_terminal_transitions_do_not_score_the_next_state():
    ds = make_ds([[1.0]], [1.0], terminated=[True])
    t = score_transition(ds, 0, pred(ds, 0, s=[99.0]))
    assert t.correct and t.credit == 1.0
    t = score_transition(ds, 0, pred(ds, 0, d=False))
    assert t.mismatch == ["done"] and t.credit == pytest.approx(0.5)


def test_done_must_be_a_real_bool():
    ds = make_ds([[1.0]], [1.0])
    assert score_transition(ds, 0, pred(ds, 0, d=0)).mismatch == ["done"]
    assert score_transition(ds, 0, pred(ds, 0, d=True)).mismatch == ["done"]
    assert score_transition(ds, 0, pred(ds, 0, d=False)).correct


def test_errors_and_missing_predictions_score_zero():
    ds = make_ds([[1.0]], [1.0])
    err = score_transition(ds, 0, {"error": {"kind": "runtime", "message": "boom"}})
    assert (err.credit, err.correct, err.mismatch) == (0.0, False, ["exception"])
    assert err.error == {"kind": "runtime", "message": "boom"} and err.predicted is None
    for missing in (None, [1.0], {"error": None}):
        t = score_transition(ds, 0, missing)
        assert (t.credit, t.mismatch, t.error) == (0.0, ["missing"], None)


def test_malformed_states_are_mismatches():
    ds = make_ds([[1.0, 2.0]], [0.0])
    for bad in ({"s": [1.0, 2.0], "shape": [3]}, {"s": [1.0, 2.0], "shape": [True, 2]},
                {"s": [1.0, 2.0], "shape": [-2, -1]}, {"s": "12", "shape": [2]}, {"s": [1.0, 2.0], "shape": 2},
                {"s": [1.0, 2.0], "shape": [2, 1]}):
        t = score_transition(ds, 0, pred(ds, 0, **bad))
        assert t.mismatch == ["next_state"], bad
        assert t.credit == pytest.approx(2 / 3)
    # one non-number among numbers: only that element is wrong
    assert score_transition(ds, 0, pred(ds, 0, s=[1.0, "x"])).credit == pytest.approx((0.5 + 2) / 3)
    assert score_transition(ds, 0, pred(ds, 0, s=[1.0, False])).credit == pytest.approx((0.5 + 2) / 3)
    t = score_transition(ds, 0, pred(ds, 0, s=[1.0, 2]))  # an int where a float was recorded is fine
    assert t.correct and t.predicted == {"next_state": [1.0, 2.0], "reward": 0.0, "done": False}


def test_oversized_predictions_are_refused():
    ds = make_ds([[1.0]], [0.0])
    t = score_transition(ds, 0, pred(ds, 0, s=[1.0] * 1_000_001, shape=[1_000_001]))
    assert t.mismatch == ["next_state"] and t.predicted is not None and t.predicted["next_state"] is None


def test_empty_state_counts_as_right():
    ds = make_ds(np.zeros((1, 0)), [0.0])
    assert score_transition(ds, 0, pred(ds, 0, s=[], shape=[0])).credit == 1.0


# --- aggregation -----------------------------------------------------------------------------------------------


def test_reward_classes_weigh_the_same():
    # rewards 0, 0, 0, 1: the three 0-reward transitions are one class, the 1-reward transition another
    ds = make_ds([[0.0]] * 4, [0.0, 0.0, 0.0, 1.0])
    preds = [pred(ds, i) for i in range(4)]
    preds[3] = pred(ds, 3, r=5.0)  # the lone class: credit 2/3
    s = score_all(ds, preds)
    assert s.accuracy == pytest.approx((1.0 + 2 / 3) / 2)
    assert s.strict_accuracy == pytest.approx(0.75)
    preds = [pred(ds, i) for i in range(4)]
    preds[0] = pred(ds, 0, r=5.0)
    assert score_all(ds, preds).accuracy == pytest.approx(((2 / 3 + 2) / 3 + 1.0) / 2)


def test_short_prediction_lists_count_the_rest_as_missing():
    ds = make_ds([[0.0]] * 2, [0.0, 0.0])
    s = score_all(ds, [pred(ds, 0)])
    assert s.accuracy == pytest.approx(0.5) and s.per_transition[1].mismatch == ["missing"]


def test_one_exception_zeroes_the_official_score_only():
    ds = make_ds([[0.0]] * 4, [0.0, 0.0, 1.0, 1.0])
    preds: list[Any] = [pred(ds, i) for i in range(4)]
    preds[1] = {"error": {"kind": "runtime", "message": "x"}}
    cwm = score_all(ds, preds)
    assert cwm.accuracy == pytest.approx((0.5 + 1.0) / 2) and cwm.strict_accuracy == pytest.approx(0.75)
    off = score_all(ds, preds, "official")
    assert (off.accuracy, off.strict_accuracy) == (0.0, 0.0) and len(off.per_transition) == 4
    preds[1] = None  # missing, not raised: the official metric does not zero the program for it
    assert score_all(ds, preds, "official").accuracy == pytest.approx(0.75)


# --- properties ----------------------------------------------------------------------------------------------

dtypes = st.sampled_from([np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8])
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _states(dtype: Any, shape: tuple[int, ...]) -> st.SearchStrategy[Any]:
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(-1e6, 1e6, allow_nan=False, width=32 if dtype == np.float32 else 64)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(int(info.min), -10**6), min(int(info.max), 10**6))
    return hnp.arrays(dtype, (2, *shape), elements=elements)


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    dtype = draw(dtypes)
    states = draw(_states(dtype, draw(shapes)))
    rewards = draw(st.lists(st.floats(-1e4, 1e4, width=32), min_size=2, max_size=2))
    return make_ds(states, rewards, terminated=draw(st.lists(st.booleans(), min_size=2, max_size=2)))


@settings(max_examples=examples(60), deadline=None)
@given(datasets(), st.sampled_from(METRICS))
def test_property_a_perfect_prediction_scores_one(ds, metric):
    s = score_all(ds, [pred(ds, i) for i in range(len(ds))], metric)
    assert s.accuracy == 1.0 and s.strict_accuracy == 1.0
    assert all(t.correct and t.mismatch == [] for t in s.per_transition)


@settings(max_examples=examples(60), deadline=None)
@given(datasets(), st.data())
def test_property_any_state_change_beyond_tolerance_is_caught(ds, data):
    i = 0
    ds.terminated[i] = False  # the next state is scored only on non-terminal steps
    flat = np.asarray(ds.next_state[i], dtype=np.float64).ravel()
    k = data.draw(st.integers(0, flat.size - 1))
    sign = data.draw(st.sampled_from([-1.0, 1.0]))
    if ds.discrete_state:
        step = float(data.draw(st.integers(1, 1000)))
    else:
        step = (ATOL + RTOL * abs(flat[k])) * data.draw(st.floats(1.01, 1e3))
    t = score_transition(ds, i, with_element(ds, i, k, float(flat[k]) + sign * step))
    assert not t.correct and t.mismatch == ["next_state"]
    assert t.credit == pytest.approx((1 - 1 / flat.size + 2) / 3)


@settings(max_examples=examples(60), deadline=None)
@given(datasets(), st.data())
def test_property_float_changes_within_tolerance_pass(ds, data):
    if ds.discrete_state:
        return
    ds.terminated[0] = False
    flat = np.asarray(ds.next_state[0], dtype=np.float64).ravel()
    k = data.draw(st.integers(0, flat.size - 1))
    step = (ATOL + RTOL * abs(flat[k])) * data.draw(st.floats(-0.99, 0.99))
    assert score_transition(ds, 0, with_element(ds, 0, k, float(flat[k]) + step)).correct


@settings(max_examples=examples(60), deadline=None)
@given(st.floats(-1e4, 1e4, width=32), st.floats(1.01, 1e3), st.sampled_from([-1.0, 1.0]))
def test_property_reward_changes_beyond_tolerance_are_caught(r, factor, sign):
    ds = make_ds([[0.0]], [r])
    recorded = float(ds.reward[0])
    step = sign * factor * max(ATOL + RTOL * abs(recorded), float(np.spacing(np.float32(recorded))))
    assert score_transition(ds, 0, pred(ds, 0, r=recorded + step)).mismatch == ["reward"]


def test_empty_datasets_score_zero():
    ds = make_ds(np.zeros((0, 2)), [])
    for metric in METRICS:
        s = score_all(ds, [], metric)
        assert (s.accuracy, s.strict_accuracy, s.per_transition) == (0.0, 0.0, [])


def test_score_all_uses_the_cwm_metric_by_default():
    ds = make_ds([[1.0]], [1.0], truncated=[True])
    preds = [pred(ds, 0, d=False)]
    assert score_all(ds, preds).accuracy == 1.0
    assert score_all(ds, preds, "official").accuracy == pytest.approx(0.5)


def test_a_scalar_state_may_come_back_as_a_one_element_array():
    scalar = make_ds(np.array([5], dtype=np.int64), [0.0], state_kind="int")
    assert score_transition(scalar, 0, pred(scalar, 0, s=[5], shape=[1])).correct
    assert score_transition(scalar, 0, pred(scalar, 0, s=[5], shape=[1, 1])).correct
    assert not score_transition(scalar, 0, pred(scalar, 0, s=[4], shape=[1])).correct


def test_wire_prediction_is_what_the_sandbox_sends():
    from cwm.sandbox.scoring import wire_prediction

    w = wire_prediction(np.array([[1, 2], [3, 4]], dtype=np.int32), np.float32(0.5), np.bool_(True))
    assert w == {"s": [1.0, 2.0, 3.0, 4.0], "shape": [2, 2], "r": 0.5, "d": True}
    assert type(w["r"]) is float and type(w["d"]) is bool and all(type(v) is float for v in w["s"])
    assert wire_prediction(3, 1, 0) == {"s": [3.0], "shape": [], "r": 1.0, "d": False}
    ds = make_ds([[0.25, -1.0]], [2.0], terminated=[True])
    assert score_transition(ds, 0, wire_prediction(ds.next_state[0], ds.reward[0], True)).correct


def test_non_finite_rewards_are_shown_as_missing():
    ds = make_ds([[1.0]], [1.0])
    for bad in (math.inf, -math.inf, math.nan):
        t = score_transition(ds, 0, pred(ds, 0, r=bad))
        assert t.mismatch == ["reward"] and t.predicted is not None and t.predicted["reward"] is None


def test_a_million_elements_is_the_largest_state_read():
    ds = make_ds([[1.0]], [0.0])
    at_limit = score_transition(ds, 0, pred(ds, 0, s=[0.0] * 1_000_000, shape=[1_000_000]))
    assert at_limit.predicted is not None and len(at_limit.predicted["next_state"]) == 1_000_000
    assert at_limit.mismatch == ["next_state"]  # parsed, then wrong in shape


def test_reward_tolerance_includes_its_bound():
    ds = make_ds([[0.0]], [0.0])
    assert score_transition(ds, 0, pred(ds, 0, r=ATOL)).correct  # |Δ| = atol exactly, recorded 0
    assert not score_transition(ds, 0, pred(ds, 0, r=ATOL * 1.0001)).correct


def test_an_error_that_is_not_a_record_is_kept_out_of_the_score():
    ds = make_ds([[1.0]], [1.0])
    t = score_transition(ds, 0, {"error": "boom"})
    assert (t.mismatch, t.error, t.credit) == (["exception"], None, 0.0)


def test_a_truncated_step_still_scores_its_next_state():
    ds = make_ds([[1.0]], [1.0], truncated=[True])
    t = score_transition(ds, 0, pred(ds, 0, s=[2.0]))
    assert t.mismatch == ["next_state"] and t.credit == pytest.approx(0.5)  # state and reward; no done
