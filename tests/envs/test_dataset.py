import json
import zipfile

import numpy as np
import pytest

from cwm.envs.dataset import Dataset, bundled_path, load, load_for_env
from cwm.envs.registry import BENCHMARK
from cwm.errors import CwmError

RECORDED = [b.name for b in BENCHMARK if bundled_path(b.name) is not None]


@pytest.mark.parametrize("name", RECORDED)
def test_bundled_dataset_invariants(name):
    ds = load_for_env(name)
    assert len(ds) > 0 and ds.reward.dtype == np.float32
    assert not np.any(ds.terminated & ds.truncated)
    assert "Apache" in ds.meta["license"] + ds.meta["source"] or "cwm collect" in ds.meta["source"]
    for t in np.unique(ds.trajectory):
        idx = np.flatnonzero(ds.trajectory == t)
        assert list(ds.step[idx]) == list(range(len(idx)))
        # each transition starts where the previous one ended
        assert np.array_equal(ds.state[idx[1:]], ds.next_state[idx[:-1]])
        # an episode ends at most once, on its last transition
        ends = ds.terminated[idx] | ds.truncated[idx]
        assert not ends[:-1].any()


@pytest.mark.parametrize(("name", "n", "terminated", "truncated"), [
    ("Taxi-v3", 1574, 5, 5), ("MountainCar-v0", 1777, 5, 5), ("Acrobot-v1", 4521, 5, 5),
    ("Reacher-v4", 500, 0, 10), ("Pusher-v4", 1000, 0, 10), ("CartPole-v1", 402, 10, 0),
])
def test_time_limit_cuts_are_marked_truncated(name, n, terminated, truncated):
    ds = load_for_env(name)
    assert (len(ds), int(ds.terminated.sum()), int(ds.truncated.sum())) == (n, terminated, truncated)


def test_kinds_follow_the_environment():
    assert load_for_env("Taxi-v3").state_value(0).__class__ is int
    assert isinstance(load_for_env("Blackjack-v1").state_value(0), tuple)
    s = load_for_env("CartPole-v1").state_value(0)
    assert isinstance(s, np.ndarray) and s.dtype == np.float32
    assert isinstance(load_for_env("Pendulum-v1").action_value(0), np.ndarray)


def test_round_trip(tmp_path, cartpole_small):
    path = cartpole_small.save(tmp_path / "d.npz")
    again = load(path)
    assert again.env_id == cartpole_small.env_id and len(again) == len(cartpole_small)
    assert np.array_equal(again.next_state, cartpole_small.next_state)
    assert again.to_meta()["version"] == 2


def test_lockstep_batches_never_show_a_future_input(cartpole):
    seen_at: dict[int, int] = {}
    for b, batch in enumerate(cartpole.lockstep_batches()):
        for i in batch:
            seen_at[int(i)] = b
    assert sorted(seen_at) == list(range(len(cartpole)))
    for i in range(len(cartpole) - 1):
        if cartpole.trajectory[i] == cartpole.trajectory[i + 1]:
            assert seen_at[i] < seen_at[i + 1]


def _write(tmp_path, ds: Dataset, **override):
    arrays = {k: getattr(ds, k) for k in ("state", "action", "next_state", "reward", "terminated", "truncated",
                                           "trajectory", "step")}
    meta = ds.to_meta()
    meta.update(override.pop("meta", {}))
    arrays.update(override)
    arrays["meta"] = np.array(json.dumps(meta))
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("override", "message"), [
    ({"reward": None}, "missing array"),
    ({"meta": {"version": 99}}, "format version 99"),
    ({"meta": {"format": "other"}}, "meta.format"),
    ({"terminated": np.zeros(42, dtype=np.int8)}, "terminated must be bool"),
    ({"step": np.zeros(3, dtype=np.int32)}, "step has"),
    ({"reward": np.full(42, np.nan, dtype=np.float32)}, "NaN"),
    ({"state": np.array([["x"] * 4] * 42)}, "non-numeric"),
])
def test_malformed_datasets_are_refused_with_a_reason(tmp_path, cartpole_small, override, message):
    with pytest.raises(CwmError, match=message):
        load(_write(tmp_path, cartpole_small, **override))


def test_pickled_arrays_are_never_loaded(tmp_path, cartpole_small):
    path = _write(tmp_path, cartpole_small, state=np.array([object()] * 42, dtype=object))
    with pytest.raises(CwmError, match="not a readable cwm dataset"):
        load(path)


def test_not_a_zip_and_missing_file(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("hello", encoding="utf-8")
    with pytest.raises(CwmError, match="not a readable"):
        load(junk)
    with pytest.raises(CwmError, match="does not exist"):
        load(tmp_path / "nope.npz")
    assert zipfile.is_zipfile(junk) is False


def test_unknown_env_without_dataset_says_how_to_collect():
    with pytest.raises(CwmError, match="cwm collect LunarLander-v3"):
        load_for_env("LunarLander-v3")
