"""--env-kwargs, random dynamics, and refusing a dataset recorded on another environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwm.agents.prompts import contract
from cwm.cli import main
from cwm.envs.collect import CollectConfig, collect
from cwm.envs.dataset import load, load_for_env
from cwm.envs.registry import dataset_mismatch, parse_env_kwargs, stochasticity
from cwm.errors import CwmError

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "cartpole_cwm.py")
SMALL = ["--trajectories", "2", "--max-steps", "5", "--policy", "random"]


@pytest.mark.parametrize("text, expected", [
    ("is_slippery=False", {"is_slippery": False}),
    ("is_slippery=false, map_name=8x8", {"is_slippery": False, "map_name": "8x8"}),
    ("a=1 b=0.5 c=None d=[1,2] e=\"x y\"", {"a": 1, "b": 0.5, "c": None, "d": [1, 2], "e": "x y"}),
    ('{"is_slippery": true, "map_name": "4x4"}', {"is_slippery": True, "map_name": "4x4"}),
])
def test_parse_env_kwargs(text, expected):
    if " y" in text:  # a quoted value with a space cannot survive the space separator: use JSON for that
        with pytest.raises(CwmError):
            parse_env_kwargs(text)
        return
    assert parse_env_kwargs(text) == expected


@pytest.mark.parametrize("text", ["", "is_slippery", "{not json", "[1, 2]", "1x=2", '{"a-b": 1}', "=3"])
def test_bad_env_kwargs_are_refused(text):
    with pytest.raises(CwmError, match="--env-kwargs"):
        parse_env_kwargs(text)


def test_stochasticity_depends_on_env_and_kwargs():
    assert stochasticity("Blackjack-v1") is not None
    assert stochasticity("FrozenLake-v1") is not None  # slippery by default
    assert stochasticity("FrozenLake-v1", {"is_slippery": False}) is None
    assert stochasticity("CliffWalking-v0") is None and stochasticity("CliffWalking-v1", {"is_slippery": True})
    assert stochasticity("Taxi-v3") is None and stochasticity("Taxi-v3", {"is_rainy": True})
    assert stochasticity("CartPole-v1") is None and stochasticity("Hopper-v4") is None


def test_dataset_mismatch_names_env_and_kwargs():
    assert dataset_mismatch("Taxi-v3", None, "Taxi-v4", {}) is None  # one benchmark env under two ids
    assert "recorded on FrozenLake-v1" in (dataset_mismatch("FrozenLake-v1", {}, "CartPole-v1", {}) or "")
    assert "env kwargs" in (dataset_mismatch("FrozenLake-v1", {"is_slippery": False}, "FrozenLake-v1", {}) or "")
    assert dataset_mismatch("FrozenLake-v1", {"is_slippery": False}, "FrozenLake-v1", {"is_slippery": False}) is None


def test_collect_records_env_kwargs_in_meta(tmp_path):
    ds = collect("FrozenLake-v1", CollectConfig(trajectories=2, max_steps=5, policy="random"), progress=None,
                 env_kwargs={"is_slippery": False})
    path = ds.save(tmp_path / "fl.npz")
    assert load(path).meta["env_kwargs"] == {"is_slippery": False}
    plain = collect("CartPole-v1", CollectConfig(trajectories=1, max_steps=3, policy="random"), progress=None)
    assert plain.meta["env_kwargs"] == {}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("kw")
    assert main(["collect", "FrozenLake-v1", "--env-kwargs", "is_slippery=False", "--out", str(root / "flat.npz"),
                 *SMALL]) == 0
    assert main(["collect", "FrozenLake-v1", "--out", str(root / "slippery.npz"), *SMALL]) == 0
    return root


def test_collect_warns_only_for_random_dynamics(tmp_path, capsys):
    assert main(["collect", "FrozenLake-v1", "--env-kwargs", '{"is_slippery": false}', "--out",
                 str(tmp_path / "a.npz"), *SMALL]) == 0
    assert "random dynamics" not in capsys.readouterr().err
    assert main(["collect", "Blackjack-v1", "--out", str(tmp_path / "b.npz"), *SMALL]) == 0
    warn = [ln for ln in capsys.readouterr().err.splitlines() if "random dynamics" in ln]
    assert len(warn) == 1 and warn[0].startswith("cwm: warning: Blackjack-v1 has random dynamics")


def test_check_refuses_a_dataset_of_another_env(datasets, capsys):
    assert main(["check", EXAMPLE, "--env", "CartPole-v1", "--dataset", str(datasets / "flat.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recorded on FrozenLake-v1, not on CartPole-v1" in err[0]
    assert main(["check", EXAMPLE, "--env", "FrozenLake-v1", "--dataset", str(datasets / "flat.npz"), "--json"]) == 2
    out = capsys.readouterr()
    assert "env kwargs" in json.loads(out.out)["error"]["message"] and "Traceback" not in out.err
    # the bundled data were recorded with the default arguments
    assert main(["check", EXAMPLE, "--env", "CartPole-v1", "--env-kwargs", "sutton_barto_reward=True"]) == 2


def test_check_runs_with_matching_kwargs_and_warns_on_random_dynamics(datasets, capsys):
    code = main(["check", EXAMPLE, "--env", "FrozenLake-v1", "--env-kwargs", "is_slippery=False", "--dataset",
                 str(datasets / "flat.npz"), "--json"])
    out = capsys.readouterr()
    assert code == 1 and json.loads(out.out)["transitions"] > 0 and "random dynamics" not in out.err
    main(["check", EXAMPLE, "--env", "FrozenLake-v1", "--dataset", str(datasets / "slippery.npz"), "--json"])
    err = capsys.readouterr().err
    assert sum("random dynamics" in ln for ln in err.splitlines()) == 1


@pytest.mark.parametrize("cmd", [["check", EXAMPLE, "--env", "CartPole-v1"], ["describe", "CartPole-v1"],
                                 ["plan", "--env", "CartPole-v1", "--model", "random", "--episodes", "1"]])
def test_kwargs_the_env_does_not_take_are_bad_input(cmd, capsys):
    assert main([*cmd, "--env-kwargs", "no_such_argument=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not accept --env-kwargs" in err[0]


def test_plan_makes_the_env_with_its_kwargs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["plan", "--env", "FrozenLake-v1", "--env-kwargs", "is_slippery=False,map_name=8x8", "--model",
                 "random", "--episodes", "1", "--max-steps", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lengths"] == [3]


def test_contract_states_random_dynamics(datasets):
    assert "deterministic" in contract(load_for_env("CartPole-v1"))
    blackjack = contract(load_for_env("Blackjack-v1"))
    assert "deterministic" not in blackjack and "random" in blackjack and "most likely outcome" in blackjack
    assert "most likely outcome" in contract(load(datasets / "slippery.npz"))
    assert "deterministic" in contract(load(datasets / "flat.npz"))
