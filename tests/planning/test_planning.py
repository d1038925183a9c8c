"""The planner agent on real environments: oracle, Code World Models in the sandbox, baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import EXAMPLES
from cwm.envs.registry import make_env
from cwm.envs.snapshot import Snapshotter
from cwm.planning.agent import PlanConfig, normalized_return, plan
from cwm.planning.models import TrueModel


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))


def test_normalized_return():
    assert normalized_return(50, 10, 90) == pytest.approx(0.5)
    assert normalized_return(120, 10, 90) == pytest.approx(110 / 80)  # can exceed 1, as in the paper
    assert normalized_return(-200, -200, -200) is None
    assert normalized_return(1, None, 2) is None


async def test_perfect_model_plans_like_the_oracle_on_cartpole():
    cfg = {"env": "CartPole-v1", "episodes": 1, "max_steps": 60, "simulations": 10}
    rnd = await plan(PlanConfig(model="random", **cfg))
    orc = await plan(PlanConfig(model="oracle", **cfg))
    cwm = await plan(PlanConfig(model=str(EXAMPLES / "cartpole_cwm.py"), **cfg))
    assert orc["returns"] == [60.0] and cwm["returns"] == [60.0]
    assert rnd["mean_return"] < 60
    assert cwm["normalized_return"] == pytest.approx(1.0)
    assert cwm["model_steps"] > 60 * 10


async def test_batched_cem_with_a_perfect_pendulum_model():
    cfg = {"env": "Pendulum-v1", "episodes": 1, "max_steps": 25}
    cwm = await plan(PlanConfig(model=str(EXAMPLES / "pendulum_cwm.py"), **cfg))
    orc = await plan(PlanConfig(model="oracle", **cfg))
    assert cwm["step_batch"] is True
    assert cwm["returns"][0] == pytest.approx(orc["returns"][0], rel=0.05)


async def test_step_batch_that_disagrees_is_not_used(tmp_path):
    code = (EXAMPLES / "pendulum_cwm.py").read_text(encoding="utf-8").replace(
        "return obs, -cost, np.zeros", "return obs, -cost + 1.0, np.zeros")
    path = tmp_path / "model.py"
    path.write_text(code, encoding="utf-8")
    out = await plan(PlanConfig(env="Pendulum-v1", model=str(path), episodes=1, max_steps=3))
    assert out["step_batch"] is False


def test_bad_programs_fail_with_a_classified_error(tmp_path, capsys):
    from cwm.cli import main

    broken = tmp_path / "broken.py"
    broken.write_text("class Environment(:\n", encoding="utf-8")
    assert main(["plan", "--env", "CartPole-v1", "--model", str(broken), "--episodes", "1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "syntax"
    crashing = tmp_path / "crashing.py"
    crashing.write_text("class Environment:\n    def set_state(self, s):\n        self.s = s\n"
                        "    def step(self, a):\n        raise ValueError('boom')\n", encoding="utf-8")
    assert main(["plan", "--env", "CartPole-v1", "--model", str(crashing), "--episodes", "1"]) == 1
    assert "runtime" in capsys.readouterr().err


def test_cli_plan_json_contract(capsys, tmp_path):
    from cwm.cli import main

    assert main(["plan", "--env", "CartPole-v1", "--model", "random", "--episodes", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("returns", "mean_return", "std_return", "normalized_return"):
        assert key in out
    assert len(out["returns"]) == 3 and out["normalized_return"] is None
    assert main(["plan", "--env", "CartPole-v1", "--model", str(tmp_path / "nope.py")]) == 2


async def test_random_baseline_is_seeded():
    a = await plan(PlanConfig(env="CartPole-v1", model="random", episodes=3, seed=5))
    b = await plan(PlanConfig(env="CartPole-v1", model="random", episodes=3, seed=5))
    assert a["returns"] == b["returns"]


@pytest.mark.mujoco
def test_mujoco_snapshots_are_exact():
    pytest.importorskip("mujoco", reason="needs the mujoco extra: pip install 'cwm[mujoco]'")
    env = make_env("InvertedPendulum-v4")
    env.reset(seed=0)
    u = env.unwrapped
    snap = Snapshotter(u)
    saved = snap.save()
    a = np.array([0.3])
    first = [u.step(a)[0] for _ in range(5)]
    snap.restore(saved)
    second = [u.step(a)[0] for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


async def test_box2d_oracle_falls_back_to_replaying_the_seed_and_actions():
    pytest.importorskip("Box2D", reason="needs the box2d extra: pip install 'cwm[box2d]'")
    env = make_env("LunarLanderContinuous-v3")
    model = TrueModel(env, seed=3)
    assert not model.snap.supported
    env.reset(seed=3)
    taken = [np.array([0.5, 0.0]), np.array([0.0, 0.5])]
    for a in taken:
        env.step(a)
        model.record(a)
    state = model.root(env, None)
    plans = np.random.default_rng(0).uniform(-1, 1, size=(2, 4, 2))
    returns = await model.rollouts(state, plans)
    wrapper = make_env("LunarLanderContinuous-v3")  # keep it referenced: closing it frees the Box2D world
    check = wrapper.unwrapped
    for i, p in enumerate(plans):
        check.reset(seed=3)
        for a in taken:
            check.step(a)
        total = sum(float(check.step(a)[1]) for a in p)
        assert returns[i] == pytest.approx(total)


def test_split_report_averages_defined_normalized_returns(tmp_path, capsys):
    from cwm.cli import main
    from cwm.planning.agent import split_report

    results = [{"env": "CartPole-v1", "planner": "mcts", "normalized_return": 1.0},
               {"env": "Taxi-v3", "planner": "mcts", "normalized_return": 0.5},
               {"env": "MountainCar-v0", "planner": "mcts", "normalized_return": None},
               {"env": "Pendulum-v1", "planner": "cem", "normalized_return": 0.2}]
    rep = split_report(results)
    assert rep["split_mean"] == {"discrete": pytest.approx(0.75), "continuous": pytest.approx(0.2)}
    assert rep["split_count"] == {"discrete": 2, "continuous": 1} and rep["per_env"]["MountainCar-v0"] is None
    files = []
    for i, r in enumerate(results):
        f = tmp_path / f"{i}.json"
        f.write_text(json.dumps(r), encoding="utf-8")
        files.append(str(f))
    assert main(["plan-report", *files]) == 0
    assert "discrete mean (2 envs): 0.750" in capsys.readouterr().out
