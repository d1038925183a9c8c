"""The audit of recorded transitions: pinned verdicts per environment, the v2 format, and the scorer's use.

The pinned verdicts come from replaying the shipped data with the real simulator (gymnasium 1.4.0,
mujoco 4.0.0); each test also checks that the flags shipped in the .npz are the ones a fresh audit gives.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import EXAMPLES
from cwm import cli
from cwm.envs.audit import audit, audit_env
from cwm.envs.dataset import CONSISTENT, INCONSISTENT, UNKNOWN, Dataset, load
from cwm.errors import CwmError
from cwm.graph.run import split_heldout
from cwm.sandbox import check_program, evaluate

ALL_CONSISTENT = ["CartPole-v1", "MountainCar-v0", "Pendulum-v1", pytest.param("Acrobot-v1", marks=pytest.mark.slow),
                  "Taxi-v3", "CliffWalking-v0"]
FIRST_STEP_ONLY = ["InvertedPendulum-v4", "InvertedDoublePendulum-v4", "HalfCheetah-v4", "Swimmer-v4", "Reacher-v4"]


def _audited(name: str) -> tuple[Dataset, np.ndarray]:
    ds, result = audit_env(name)
    assert np.array_equal(ds.consistent, result.consistent), "shipped flags differ from a fresh audit"
    np.testing.assert_array_equal(ds.ceiling_credit, result.ceiling_credit)
    return ds, result.consistent


@pytest.mark.parametrize("name", ALL_CONSISTENT)
def test_classic_control_and_toy_text_replay_exactly(name):
    ds, flags = _audited(name)
    assert (flags == CONSISTENT).all()
    assert ds.ceiling() == 1.0 and ds.strict_ceiling() == 1.0


@pytest.mark.parametrize("name", ["Blackjack-v1", "Pusher-v4"])
def test_hidden_state_is_unknown_never_inconsistent(name):
    ds, flags = _audited(name)
    assert (flags == UNKNOWN).all() and np.isnan(ds.ceiling_credit).all()
    assert ds.ceiling() is None and ds.strict_ceiling() is None


@pytest.mark.mujoco
@pytest.mark.parametrize("name", FIRST_STEP_ONLY)
def test_mujoco_first_step_of_each_trajectory_is_inconsistent(name):
    ds, flags = _audited(name)
    assert np.array_equal(flags == INCONSISTENT, ds.step == 0)
    assert ((flags == CONSISTENT) == (ds.step != 0)).all()
    assert ds.strict_ceiling() == pytest.approx(1 - ds.n_trajectories / len(ds))
    # the real env still earns partial credit there (e.g. the reward), so the ceiling is above the strict one
    ceiling = ds.ceiling()
    assert ceiling is not None and ds.strict_ceiling() < ceiling < 1.0


@pytest.mark.mujoco
@pytest.mark.parametrize(("name", "consistent", "inconsistent", "unknown"), [
    ("Walker2d-v4", 958, 10, 1),      # one clipped velocity after a broken chain
    # recorded with a MuJoCo whose contact solutions differ: only constraint-free first steps are judged
    pytest.param("Hopper-v4", 122, 2, 848, marks=pytest.mark.slow),
    ("Ant-v4", 0, 0, 20),
    ("Humanoid-v4", 882, 0, 0),       # recorded by cwm collect on this MuJoCo
    pytest.param("HumanoidStandup-v4", 1000, 0, 0, marks=pytest.mark.slow),
])
def test_mujoco_contact_envs_are_pinned(name, consistent, inconsistent, unknown):
    ds, flags = _audited(name)
    assert [int((flags == v).sum()) for v in (CONSISTENT, INCONSISTENT, UNKNOWN)] == [consistent, inconsistent, unknown]
    assert set(ds.step[flags == INCONSISTENT].tolist()) <= {0}


def _tampered(cartpole_small: Dataset, rows: list[int]) -> Dataset:
    """CartPole with some recorded next states moved: transitions no model of CartPole can get right."""
    ds = cartpole_small.subset(np.arange(len(cartpole_small)))
    ds.next_state = ds.next_state.copy()
    for i in rows:
        ds.next_state[i] += np.float32(0.5)
    return audit(ds).apply(ds)


def test_audit_finds_transitions_that_do_not_follow_from_their_state(cartpole_small):
    ds = _tampered(cartpole_small, [3, 30])
    assert np.flatnonzero(ds.consistent == INCONSISTENT).tolist() == [3, 30]
    assert (np.delete(ds.consistent, [3, 30]) == CONSISTENT).all()
    # next state wrong but reward and done right: the real env earns 2/3 there (one reward class: a plain mean)
    assert ds.ceiling_credit[[3, 30]].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert ds.ceiling() == pytest.approx(1 - 2 * (1 / 3) / len(ds))
    assert ds.strict_ceiling() == pytest.approx(1 - 2 / len(ds))
    assert ds.meta["audit"]["by"] == "cwm audit"


def test_flags_survive_save_subset_and_heldout_split(tmp_path, cartpole_small):
    ds = load(_tampered(cartpole_small, [3, 30]).save(tmp_path / "d.npz"))
    assert ds.to_meta()["version"] == 2
    assert np.flatnonzero(ds.consistent == INCONSISTENT).tolist() == [3, 30]
    part = ds.subset(np.array([0, 3, 5, 30]))
    assert part.consistent.tolist() == [CONSISTENT, INCONSISTENT, CONSISTENT, INCONSISTENT]
    assert part.consistent_value(1) is False and part.consistent_value(0) is True
    train, held = split_heldout(ds, 0.5, seed=0)
    assert held is not None
    def by_key(d: Dataset) -> dict[tuple[int, int], int]:
        return {(int(t), int(s)): int(c) for t, s, c in zip(d.trajectory, d.step, d.consistent, strict=True)}

    original = by_key(ds)
    for piece in (train, held):
        assert all(original[k] == v for k, v in by_key(piece).items())
    assert (train.consistent == INCONSISTENT).sum() + (held.consistent == INCONSISTENT).sum() == 2


def _as_v1(tmp_path, ds: Dataset):
    arrays = {k: getattr(ds, k) for k in ("state", "action", "next_state", "reward", "terminated", "truncated",
                                           "trajectory", "step")}
    meta = {**ds.to_meta(), "version": 1}
    meta.pop("audit", None)
    path = tmp_path / "v1.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def test_v1_files_load_with_every_transition_unknown(tmp_path, cartpole_small):
    ds = load(_as_v1(tmp_path, cartpole_small))
    assert (ds.consistent == UNKNOWN).all() and np.isnan(ds.ceiling_credit).all()
    assert ds.ceiling() is None and ds.consistent_value(0) is None
    assert np.array_equal(ds.next_state, cartpole_small.next_state)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"consistent": np.full(42, 5, dtype=np.int8)}, "consistent must hold only"),
    ({"ceiling_credit": np.full(42, 0.5, dtype=np.float32)}, "disagrees"),
    ({"consistent": np.full(3, 1, dtype=np.int8)}, "shape"),
    ({"consistent": None}, "required from version 2"),
])
def test_malformed_v2_flags_are_refused(tmp_path, cartpole_small, arrays, message):
    path = cartpole_small.save(tmp_path / "d.npz")
    with np.load(path) as npz:
        content = {k: npz[k] for k in npz.files}
    content.update(arrays)
    np.savez(path, **{k: v for k, v in content.items() if v is not None})
    with pytest.raises(CwmError, match=message):
        load(path)


async def test_failures_carry_the_flag_and_impossible_ones_do_not_block_passing(cartpole_small, cartpole_code):
    ds = _tampered(cartpole_small, [3, 30])
    report = await check_program(cartpole_code, ds, max_failures=10)
    assert [f["index"] for f in report.failures] == [3, 30]
    assert all(f["consistent"] is False for f in report.failures)
    assert report.correct == len(ds) - 2 and report.excused == 2 and report.passed
    assert report.strict_ceiling == pytest.approx(report.strict_accuracy)
    assert report.ceiling == pytest.approx(report.accuracy)
    payload = report.to_json()
    assert payload["ceiling"] == report.ceiling and payload["passed"] is True
    official = await check_program(cartpole_code, ds, metric="official")
    assert official.ceiling is None and official.excused == 0 and not official.passed


async def test_a_wrong_consistent_transition_still_fails_and_is_listed_first(sandbox, cartpole_small, cartpole_code):
    ds = _tampered(cartpole_small, [3])
    wrong_reward = cartpole_code.replace("class Environment", "class _Right", 1) + '''

class Environment(_Right):
    def step(self, action):
        s, r, d = super().step(action)
        return s, (0.5 if d else r), d
'''
    report = await evaluate(sandbox, wrong_reward, ds, max_failures=5)
    flags = [f["consistent"] for f in report.failures]
    assert True in flags and flags[-1] is False and flags.index(False) == len(flags) - 1
    assert not report.passed


def test_check_json_reports_the_ceiling(capsys):
    assert cli.main(["check", str(EXAMPLES / "cartpole_cwm.py"), "--env", "CartPole-v1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ceiling"] == 1.0 and payload["strict_ceiling"] == 1.0 and payload["excused"] == 0
    assert payload["passed"] is True


def test_check_prints_the_ceiling_and_marks_impossible_transitions(tmp_path, capsys, cartpole_small):
    path = _tampered(cartpole_small, [3]).save(tmp_path / "t.npz")
    code = cli.main(["check", str(EXAMPLES / "cartpole_cwm.py"), "--env", "CartPole-v1", "--dataset", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and "PASSED" in out
    assert "(ceiling 0.99" in out and "cannot produce it either" in out and "1 wrong transition" in out


def test_audit_cli_writes_flags_into_a_dataset(tmp_path, capsys, cartpole_small):
    path = _as_v1(tmp_path, _tampered(cartpole_small, [7]))
    assert cli.main(["audit", "CartPole-v1", "--dataset", str(path), "--write", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["envs"][0]
    assert (row["consistent"], row["inconsistent"], row["unknown"]) == (41, 1, 0)
    assert row["inconsistent_steps"] == {str(int(cartpole_small.step[7])): 1}
    again = load(path)
    assert again.to_meta()["version"] == 2 and np.flatnonzero(again.consistent == INCONSISTENT).tolist() == [7]
    assert cli.main(["audit", "CartPole-v1", "Taxi-v3", "--dataset", str(path)]) == 2
