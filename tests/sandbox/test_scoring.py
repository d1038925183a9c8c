"""The scoring rules, on hand-made predictions (no sandbox involved)."""

import math

import numpy as np
import pytest

from cwm.envs.dataset import Dataset, load_for_env
from cwm.sandbox.scoring import score_all, score_transition


def _pred(ds: Dataset, i: int, **change):
    p = {"s": ds.next_state[i].astype(np.float64).ravel().tolist(), "shape": list(ds.next_state[i].shape),
         "r": float(ds.reward[i]), "d": bool(ds.terminated[i])}
    p.update(change)
    return p


@pytest.fixture
def pendulum():
    return load_for_env("Pendulum-v1")


def test_exact_predictions_score_one(cartpole):
    preds = [_pred(cartpole, i) for i in range(len(cartpole))]
    s = score_all(cartpole, preds)
    assert s.accuracy == 1.0 and s.strict_accuracy == 1.0


def test_float64_reward_within_tolerance_matches_float32_record(pendulum):
    i = 0
    exact64 = float(pendulum.reward[i]) * (1 + 3e-8)  # what a float64 model computes before rounding
    assert score_transition(pendulum, i, _pred(pendulum, i, r=exact64)).correct
    assert not score_transition(pendulum, i, _pred(pendulum, i, r=exact64), "official").correct
    assert not score_transition(pendulum, i, _pred(pendulum, i, r=float(pendulum.reward[i]) + 0.01)).correct


def test_partial_credit_splits_the_state_by_element(cartpole):
    wrong = list(_pred(cartpole, 0)["s"])
    wrong[0] += 1.0
    t = score_transition(cartpole, 0, _pred(cartpole, 0, s=wrong))
    assert t.mismatch == ["next_state"]
    assert t.credit == pytest.approx((0.75 + 1 + 1) / 3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1.0", None, True])
def test_non_numbers_and_non_finite_values_never_match(cartpole, bad):
    s = list(_pred(cartpole, 0)["s"])
    s[1] = bad
    t = score_transition(cartpole, 0, _pred(cartpole, 0, s=s, r=bad))
    assert "next_state" in t.mismatch and "reward" in t.mismatch


def test_nan_everywhere_scores_zero_not_one(cartpole):
    n = len(cartpole)
    preds = [{"s": [math.nan] * 4, "shape": [4], "r": math.nan, "d": "yes"} for _ in range(n)]
    assert score_all(cartpole, preds).accuracy == 0.0


@pytest.mark.parametrize("shape_change", [{"shape": [2, 2]}, {"shape": [5]}, {"s": [0.0, 0.0], "shape": [2]},
                                          {"shape": "4"}, {"s": "abc"}])
def test_malformed_state_is_a_mismatch_not_a_crash(cartpole, shape_change):
    t = score_transition(cartpole, 0, _pred(cartpole, 0, **shape_change))
    assert "next_state" in t.mismatch


def test_terminal_transitions_ignore_the_next_state(cartpole):
    i = int(np.flatnonzero(cartpole.terminated)[0])
    t = score_transition(cartpole, i, _pred(cartpole, i, s=[9.0] * 4))
    assert t.correct


def test_truncated_transitions_do_not_score_done():
    taxi = load_for_env("Taxi-v3")
    i = int(np.flatnonzero(taxi.truncated)[0])
    assert score_transition(taxi, i, _pred(taxi, i, d=False)).correct
    assert score_transition(taxi, i, _pred(taxi, i, d=True)).correct
    # the official scorer wanted done=True there, which no Markov model can know
    assert not score_transition(taxi, i, _pred(taxi, i, d=False), "official").correct


def test_reward_classes_weigh_equally():
    taxi = load_for_env("Taxi-v3")
    preds = [_pred(taxi, i) for i in range(len(taxi))]
    wins = np.flatnonzero(taxi.reward == 20.0)
    for i in wins:
        preds[i] = _pred(taxi, int(i), r=0.0, d=False, s=[-1])
    s = score_all(taxi, preds)
    # the 5 reward-20 transitions are one class of three: losing them costs a third of the credit,
    # although they are 0.3 % of the data
    assert s.accuracy == pytest.approx(2 / 3 + (1 / 3) * 0.0, abs=1e-9)


def test_an_exception_costs_its_transition_only_except_in_official(cartpole):
    preds = [_pred(cartpole, i) for i in range(len(cartpole))]
    preds[3] = {"error": {"kind": "runtime", "message": "boom", "traceback": "..."}}
    assert score_all(cartpole, preds).accuracy == pytest.approx(1 - 1 / len(cartpole))
    assert score_all(cartpole, preds, "official").accuracy == 0.0


def test_integer_states_compare_exactly():
    taxi = load_for_env("Taxi-v3")
    assert score_transition(taxi, 0, _pred(taxi, 0)).correct
    assert not score_transition(taxi, 0, _pred(taxi, 0, s=[float(taxi.next_state[0]) + 1e-9])).correct
