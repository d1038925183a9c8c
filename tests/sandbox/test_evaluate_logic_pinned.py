"""evaluate()'s own decisions pinned with a scripted session instead of a sandbox: the deadline it hands
each request, where a failure is reported and what it zeroes, the per-transition timeout stop, the excused
transitions, the failure records and the JSON report. The sandbox end to end is test_evaluate_pinned.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from cwm.envs.dataset import INCONSISTENT, UNKNOWN, Dataset
from cwm.sandbox.evaluate import ScoreReport, _failure, check_program, evaluate, io_spec
from cwm.sandbox.scoring import TransitionScore, wire_prediction
from cwm.sandbox.worker import IOSpec, Limits, LoadResult, ProgramError, SandboxConfig, SessionFailed

Answer = Callable[[int], dict[str, Any]]


def perfect(ds: Dataset) -> Answer:
    return lambda i: wire_prediction(ds.next_state[i], ds.reward[i], ds.terminated[i])


def wrong_reward_at(ds: Dataset, bad: set[int]) -> Answer:
    return lambda i: wire_prediction(ds.next_state[i], ds.reward[i] + (5.0 if i in bad else 0.0), ds.terminated[i])


class ScriptedSession:
    """Answers the k-th request with the k-th lockstep batch; ``fail=(k, m, error)`` raises on request k
    after m answers."""

    def __init__(self, ds: Dataset, answer: Answer, fail: tuple[int, int, ProgramError] | None = None) -> None:
        self.batches = [list(map(int, b)) for b in ds.lockstep_batches()]
        self.answer = answer
        self.fail = fail
        self.requests: list[tuple[list[Any], float]] = []
        self.closed = False

    async def step_many(self, items: list[Any], *, timeout: float) -> list[dict[str, Any]]:
        k = len(self.requests)
        self.requests.append((list(items), timeout))
        answers = [self.answer(i) for i in self.batches[k]]
        if self.fail is not None and self.fail[0] == k:
            raise SessionFailed(self.fail[2], answers[: self.fail[1]])
        return answers

    async def close(self) -> dict[str, Any]:
        self.closed = True
        return {}


class ScriptedSandbox:
    def __init__(self, session: ScriptedSession, loaded: LoadResult, limits: Limits | None = None) -> None:
        self.config = SandboxConfig(limits=limits or Limits())
        self.session = session
        self.loaded = loaded
        self.calls: list[tuple[str, Any, Limits]] = []

    async def load(self, code: str, io: Any, limits: Limits) -> tuple[ScriptedSession, LoadResult]:
        self.calls.append((code, io, limits))
        return self.session, self.loaded


def _ok(output: str = "") -> LoadResult:
    return LoadResult(True, None, output, False, 0.25)


async def _run(ds: Dataset, answer: Answer, *, fail: tuple[int, int, ProgramError] | None = None,
               loaded: LoadResult | None = None, sandbox_limits: Limits | None = None,
               **kwargs: Any) -> tuple[ScoreReport, ScriptedSandbox]:
    sb = ScriptedSandbox(ScriptedSession(ds, answer, fail), loaded or _ok(), sandbox_limits)
    report = await evaluate(sb, "code", ds, **kwargs)  # type: ignore[arg-type]
    return report, sb


@pytest.fixture
def audited(cartpole_small: Dataset) -> Dataset:
    """The 42 CartPole transitions with transitions 3 and 30 marked as ones the real env cannot produce."""
    ds = dataclasses.replace(cartpole_small, consistent=cartpole_small.consistent.copy(),
                             ceiling_credit=cartpole_small.ceiling_credit.copy())
    ds.consistent[[3, 30]] = INCONSISTENT
    ds.ceiling_credit[[3, 30]] = 2 / 3
    return ds


# --- requests and deadlines ------------------------------------------------------------------------------------


async def test_each_lockstep_batch_is_one_request_within_the_step_deadline(cartpole_small):
    ds = cartpole_small
    lim = Limits(base_s=100.0, per_transition_s=1.0)
    r, sb = await _run(ds, perfect(ds), loaded=_ok("hello"), limits=lim)
    session = sb.session
    assert sb.calls[0][0] == "code" and sb.calls[0][1] == io_spec(ds) and sb.calls[0][2] is lim
    assert [items for items, _ in session.requests] == [
        [(ds.wire_state(i), ds.wire_action(i)) for i in b] for b in session.batches]
    assert all(99.0 < t <= 100.0 + 42.0 for _, t in session.requests)
    assert session.closed and r.passed and r.output == "hello"
    assert (r.accuracy, r.strict_accuracy, r.correct, r.exceptions, r.excused) == (1.0, 1.0, 42, 0, 0)
    assert (r.ceiling, r.strict_ceiling, r.metric, r.env_id) == (1.0, 1.0, "cwm", "CartPole-v1")
    assert r.timings["load_s"] == 0.25 and set(r.timings) == {"load_s", "step_s", "score_s"}
    assert all(0.0 <= v < 60.0 for v in r.timings.values()) and 0.0 < r.elapsed_s < 60.0


async def test_the_sandboxs_limits_apply_when_none_are_given(cartpole_small):
    lim = Limits(base_s=50.0)
    _, sb = await _run(cartpole_small, perfect(cartpole_small), sandbox_limits=lim)
    assert sb.calls[0][2] is lim
    assert all(49.0 < t <= 50.0 + 0.02 * 42 for _, t in sb.session.requests)


async def test_a_spent_deadline_still_gives_each_request_a_millisecond(cartpole_small):
    _, sb = await _run(cartpole_small, perfect(cartpole_small), limits=Limits(base_s=1e-6, per_transition_s=0.0))
    assert [t for _, t in sb.session.requests] == [0.001] * 28


# --- failures --------------------------------------------------------------------------------------------------


async def test_a_failed_load_scores_zero_without_a_request(cartpole_small):
    err = ProgramError("syntax", "bad")
    r, sb = await _run(cartpole_small, perfect(cartpole_small), loaded=LoadResult(False, err, "out", False, 0.5))
    assert sb.session.requests == [] and r.error is err and r.output == "out"
    assert (r.accuracy, r.strict_accuracy, r.correct, r.exceptions, r.passed) == (0.0, 0.0, 0, 0, False)
    assert len(r.failures) == 5 and set(r.timings) == {"load_s", "score_s"}


async def test_a_timeout_names_the_stuck_transition_and_the_deadline(cartpole_small):
    ds = cartpole_small
    err = ProgramError("timeout", "the program did not answer")
    lim = Limits(base_s=2.0, per_transition_s=0.5)
    r, sb = await _run(ds, perfect(ds), fail=(3, 1, err), limits=lim)
    stuck = sb.session.batches[3][1]
    assert stuck == 31 and r.error is err and err.index == 31
    assert err.message == (f"the program did not answer; stuck on transition 31 (trajectory "
                           f"{int(ds.trajectory[31])}, step {int(ds.step[31])}); the step deadline for "
                           f"42 transitions is 23 s")
    # answered before the failure: batches 0-2 and the first of batch 3; the rest is missing, not zeroed
    assert r.correct == 7 and r.accuracy == pytest.approx(7 / 42) and sb.session.closed and not r.passed


async def test_a_crash_after_every_answer_of_a_batch_names_no_transition(cartpole_small):
    err = ProgramError("crash", "died")
    r, _ = await _run(cartpole_small, perfect(cartpole_small), fail=(0, 2, err))
    assert err.index is None and err.message == "died" and r.correct == 2


async def test_a_crash_mid_batch_is_not_given_the_deadline(cartpole_small):
    err = ProgramError("crash", "died")
    r, _ = await _run(cartpole_small, perfect(cartpole_small), fail=(0, 0, err))
    assert err.index == 0 and err.message == "died; stuck on transition 0 (trajectory 0, step 0)"
    assert r.correct == 0


async def test_under_the_official_metric_any_error_zeroes_the_score(cartpole_small):
    err = ProgramError("crash", "died")
    r, _ = await _run(cartpole_small, perfect(cartpole_small), fail=(5, 0, err), metric="official")
    assert (r.accuracy, r.strict_accuracy, r.correct) == (0.0, 0.0, 10)
    assert (r.ceiling, r.strict_ceiling, r.metric) == (None, None, "official")


def _slow_at(ds: Dataset, slow: set[int]) -> Answer:
    good = perfect(ds)
    return lambda i: {"error": {"kind": "timeout", "message": "slow"}} if i in slow else good(i)


@pytest.mark.parametrize("slow,stopped_after", [({0, 28, 1}, 2), ({0, 1, 2}, 3), ({0, 28}, None)])
async def test_three_per_transition_timeouts_stop_scoring(cartpole_small, slow, stopped_after):
    r, sb = await _run(cartpole_small, _slow_at(cartpole_small, slow), limits=Limits(transition_s=0.25))
    if stopped_after is None:
        assert r.error is None and len(sb.session.requests) == 28 and r.correct == 40
    else:
        assert r.error == ProgramError("timeout", "3 transitions each took longer than 0.25 s; scoring stopped")
        assert len(sb.session.requests) == stopped_after
    assert r.exceptions == len(slow)


# --- excused transitions and failure records -------------------------------------------------------------------


async def test_wrong_answers_on_impossible_transitions_are_excused_and_listed_last(audited):
    r, _ = await _run(audited, wrong_reward_at(audited, {3, 30, 7}), max_failures=3)
    assert (r.correct, r.excused, r.passed) == (39, 2, False)
    assert [f["index"] for f in r.failures] == [7, 3, 30]
    assert [f["consistent"] for f in r.failures] == [True, False, False]
    assert r.ceiling == pytest.approx((40 + 2 * 2 / 3) / 42)  # CartPole has one reward class
    assert r.strict_ceiling == pytest.approx(40 / 42)
    only, _ = await _run(audited, wrong_reward_at(audited, {3, 30}), max_failures=1)
    assert only.passed and only.excused == 2 and [f["index"] for f in only.failures] == [3]


async def test_nothing_is_excused_under_the_official_metric_or_for_exceptions(audited):
    r, _ = await _run(audited, wrong_reward_at(audited, {3, 30}), metric="official")
    assert r.excused == 0 and not r.passed
    slow, _ = await _run(audited, _slow_at(audited, {3}))
    assert slow.excused == 0 and slow.exceptions == 1 and not slow.passed


async def test_unknown_transitions_are_not_excused(audited):
    audited.consistent[3] = UNKNOWN
    r, _ = await _run(audited, wrong_reward_at(audited, {3, 30}))
    assert r.excused == 1 and not r.passed and r.strict_ceiling is None


def test_a_failure_record_shows_input_expected_and_predicted(audited):
    cut = dataclasses.replace(audited, truncated=audited.truncated.copy())
    cut.truncated[13] = True
    assert _failure(cut, 13, TransitionScore(0.0, False, [], None, None))["expected"]["truncated"] is True
    ts = TransitionScore(0.5, False, ["reward"], {"reward": 2.0}, {"message": "m", "traceback": "tb"})
    assert _failure(audited, 30, ts) == {
        "index": 30, "trajectory": 1, "step": 2, "state": audited.wire_state(30),
        "action": audited.wire_action(30),
        "expected": {"next_state": audited.next_state[30].tolist(), "reward": 1.0,
                     "done": bool(audited.terminated[30]), "truncated": False},
        "predicted": {"reward": 2.0}, "mismatch": ["reward"], "traceback": "tb", "error": "m",
        "consistent": False}
    last = _failure(audited, 27, TransitionScore(0.0, False, [], None, {"message": 3, "traceback": 5}))
    assert (last["expected"]["done"], last["traceback"], last["error"], last["consistent"]) == \
        (True, None, None, True)
    assert isinstance(last["expected"]["done"], bool) and isinstance(last["expected"]["reward"], float)
    assert _failure(audited, 0, TransitionScore(0.0, False, [], None, None))["error"] is None


# --- the report --------------------------------------------------------------------------------------------------


def test_the_json_report_rounds_times_and_spells_out_the_error():
    rep = ScoreReport("E", "cwm", 0.5, 0.25, 4, 1, 2, ProgramError("timeout", "t", None, 3), [{"index": 1}],
                      1.23456789, {"load_s": 0.1234567, "step_s": 2.0}, "out", 0.9, 0.8, 1)
    assert rep.to_json() == {
        "env_id": "E", "metric": "cwm", "accuracy": 0.5, "strict_accuracy": 0.25, "transitions": 4,
        "correct": 1, "exceptions": 2, "passed": False, "ceiling": 0.9, "strict_ceiling": 0.8, "excused": 1,
        "error": {"kind": "timeout", "message": "t", "index": 3}, "failures": [{"index": 1}],
        "elapsed_s": 1.234568, "timings": {"load_s": 0.123457, "step_s": 2.0}, "output": "out"}
    assert ScoreReport("E", "cwm", 1, 1, 4, 3, 0, None, [], 0, excused=1).passed
    assert not ScoreReport("E", "cwm", 1, 1, 4, 3, 0, None, [], 0, excused=0).passed
    assert not ScoreReport("E", "cwm", 1, 1, 4, 4, 0, ProgramError("crash", "x"), [], 0).passed
    assert ScoreReport("E", "cwm", 1, 1, 4, 4, 0, None, [], 0).to_json()["error"] is None


async def test_check_program_scores_in_a_sandbox_of_its_own(cartpole_small, cartpole_code):
    r = await check_program(cartpole_code, cartpole_small, max_failures=2, metric="official")
    assert r.passed and r.metric == "official" and r.ceiling is None
    wrong = cartpole_code.replace("return self.state, 1.0, done", "return self.state, 0.5, done")
    assert wrong != cartpole_code
    bad = await check_program(wrong, cartpole_small)
    assert not bad.passed and bad.correct == 0 and [f["index"] for f in bad.failures] == [0, 1, 2, 3, 4]
    assert bad.metric == "cwm" and bad.ceiling == 1.0
    assert len((await check_program(wrong, cartpole_small, max_failures=2)).failures) == 2
    slow_load = "import time\ntime.sleep(0.5)\n" + cartpole_code
    cfg = SandboxConfig(limits=Limits(load_s=0.1, memory_mb=1024))
    late = await check_program(slow_load, cartpole_small, config=cfg)
    assert late.error is not None and late.error.kind == "timeout" and "longer than 0.1 s" in late.error.message


def test_the_child_rebuilds_inputs_with_the_datasets_dtypes(cartpole_small):
    ds = dataclasses.replace(cartpole_small, state=cartpole_small.state.astype("float64"),
                             action=cartpole_small.action.astype("int32"))
    assert io_spec(ds) == IOSpec("array", "float64", "int", "int32")
