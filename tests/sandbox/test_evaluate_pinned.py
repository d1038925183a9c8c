"""evaluate() end to end in the sandbox, pinned: the report's counts, failure records, deadlines and the
per-transition timeout stop, on the first two CartPole trajectories (42 transitions)."""

from __future__ import annotations

import numpy as np
import pytest

from cwm.sandbox import Limits, evaluate
from cwm.sandbox.evaluate import MAX_TRANSITION_TIMEOUTS, io_spec


def reward_is(code: str, value: str) -> str:
    """The reference CartPole model with its reward replaced."""
    return code + f"\n\n_step = Environment.step\nEnvironment.step = lambda self, a: " \
                  f"(lambda o: (o[0], {value}, o[2]))(_step(self, a))\n"


def expected_accuracy_with_wrong_reward(ds) -> float:
    # reward wrong everywhere: 2/3 on ordinary steps (state and done right), 1/2 on terminal ones
    # (no state), 1/2 on truncated ones (no done); CartPole has one reward class
    credit = [0.5 if (t or u) else 2 / 3 for t, u in zip(ds.terminated, ds.truncated, strict=True)]
    return float(np.mean(credit))


async def test_a_perfect_program_passes_with_full_counts(sandbox, cartpole_small, cartpole_code):
    r = await evaluate(sandbox, cartpole_code, cartpole_small)
    n = len(cartpole_small)
    assert n == 42
    assert (r.accuracy, r.strict_accuracy, r.transitions, r.correct, r.exceptions) == (1.0, 1.0, n, n, 0)
    assert r.passed and r.error is None and r.failures == [] and r.env_id == "CartPole-v1"
    j = r.to_json()
    assert (j["passed"], j["error"], j["transitions"], j["correct"], j["metric"]) == (True, None, n, n, "cwm")
    assert set(r.timings) == {"load_s", "step_s", "score_s"}


async def test_wrong_rewards_are_reported_transition_by_transition(sandbox, cartpole_small, cartpole_code):
    ds = cartpole_small
    r = await evaluate(sandbox, reward_is(cartpole_code, "0.5"), ds, max_failures=3)
    assert r.error is None and not r.passed and r.correct == 0 and r.exceptions == 0
    assert r.accuracy == pytest.approx(expected_accuracy_with_wrong_reward(ds))
    assert r.strict_accuracy == 0.0
    assert [f["index"] for f in r.failures] == [0, 1, 2]
    f = r.failures[1]
    assert (f["trajectory"], f["step"]) == (int(ds.trajectory[1]), int(ds.step[1]))
    assert f["expected"]["reward"] == 1.0 and f["predicted"]["reward"] == 0.5
    assert f["expected"]["next_state"] == ds.next_state[1].tolist()
    assert f["state"] == ds.wire_state(1) and f["action"] == ds.wire_action(1)
    assert f["mismatch"] == ["reward"] and f["traceback"] is None and f["error"] is None
    assert len((await evaluate(sandbox, reward_is(cartpole_code, "0.5"), ds)).failures) == 5


async def test_exceptions_are_counted_and_zero_the_official_score(sandbox, cartpole_small, cartpole_code):
    ds = cartpole_small
    code = cartpole_code + (
        "\n\n_step = Environment.step\n"
        "def _raising(self, a):\n"
        "    if int(a) == 1:\n"
        "        raise ValueError('right is not modelled')\n"
        "    return _step(self, a)\n"
        "Environment.step = _raising\n")
    rights = int(np.sum(np.asarray(ds.action) == 1))
    assert 0 < rights < len(ds)
    r = await evaluate(sandbox, code, ds, max_failures=100)
    assert r.error is None and r.exceptions == rights and r.correct == len(ds) - rights
    assert r.accuracy == pytest.approx((len(ds) - rights) / len(ds))
    assert all(f["mismatch"] == ["exception"] and "ValueError" in f["traceback"] for f in r.failures)
    assert all("right is not modelled" in f["error"] for f in r.failures)
    official = await evaluate(sandbox, code, ds, metric="official")
    assert official.accuracy == 0.0 and official.exceptions == rights and official.metric == "official"


async def test_the_step_deadline_stops_a_hanging_program(sandbox, cartpole_small):
    code = ("class Environment:\n"
            "    def set_state(self, s): pass\n"
            "    def step(self, a):\n"
            "        while True: pass\n")
    lim = Limits(load_s=5.0, base_s=0.4, per_transition_s=0.0, transition_s=30.0, memory_mb=1024)
    r = await evaluate(sandbox, code, cartpole_small, limits=lim)
    assert r.error is not None and r.error.kind == "timeout"
    assert r.error.index == 0
    assert "stuck on transition 0 (trajectory 0, step 0)" in r.error.message
    assert "the step deadline for 42 transitions is 0.4 s" in r.error.message
    assert r.accuracy == 0.0 and not r.passed


async def test_repeated_per_transition_timeouts_stop_scoring(sandbox, cartpole_small):
    code = ("import time\n"
            "class Environment:\n"
            "    def set_state(self, s): self.s = s\n"
            "    def step(self, a):\n"
            "        time.sleep(0.3)\n"
            "        return self.s, 1.0, False\n")
    lim = Limits(load_s=5.0, base_s=20.0, per_transition_s=0.0, transition_s=0.05, memory_mb=1024)
    r = await evaluate(sandbox, code, cartpole_small, limits=lim)
    assert MAX_TRANSITION_TIMEOUTS == 3
    assert r.error is not None and r.error.kind == "timeout"
    # batches hold step t of both trajectories: two batches (4 transitions) reach the limit of 3
    assert r.error.message == "4 transitions each took longer than 0.05 s; scoring stopped"
    assert r.exceptions == 4 and r.correct == 0


def test_io_spec_follows_the_dataset(cartpole_small):
    spec = io_spec(cartpole_small)
    assert (spec.state_kind, spec.state_dtype, spec.action_kind, spec.action_dtype) == \
        (cartpole_small.state_kind, str(cartpole_small.state.dtype), cartpole_small.action_kind,
         str(cartpole_small.action.dtype))
