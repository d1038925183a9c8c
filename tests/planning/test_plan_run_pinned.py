"""``plan()`` and its cache keys pinned: the per-episode seeds and what each planner call receives, the
result record, the baselines a run writes and reads, and the files they are kept in.

A recording planner (registered for the test only) stands in for MCTS and CEM, so the runs are a few
steps long and every argument ``plan`` hands the planner is visible; the planners themselves are pinned in
test_planning_pinned.py.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import EXAMPLES
from cwm.errors import CwmError
from cwm.planning.agent import PlanConfig, _baseline_file, baseline_dir, normalized_return, plan
from cwm.planning.mcts import MCTSConfig
from cwm.planning.models import ModelFailed, TrueModel
from cwm.planning.planners import PLANNERS, PlannerSpec

RESULT_KEYS = {"env", "model", "planner", "planner_config", "episodes", "seed", "returns", "lengths",
               "mean_return", "std_return", "elapsed_s", "model_steps", "step_batch", "random_return",
               "oracle_return", "normalized_return"}
BASELINE_ONLY = {"random_return", "oracle_return", "normalized_return"}  # added after the file is written


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))


@dataclass
class Recorder:
    """Acts 1 (discrete) or 0.0 (continuous) and records every call ``plan`` makes."""

    discrete: bool
    seed: int
    resets: list[int] = field(default_factory=list)
    acts: list[dict[str, Any]] = field(default_factory=list)

    def reset(self, seed: int) -> None:
        self.resets.append(seed)

    async def act(self, model: Any, state: Any, remaining: int) -> Any:
        call: dict[str, Any] = {"model": type(model).__name__, "remaining": remaining}
        if isinstance(model, TrueModel):
            call.update(kind=state[0], model_seed=model.seed, prefix=list(model.prefix))
        else:
            call["state"] = state
        if self.discrete:
            await model.simulate(state, 0, 0, 1.0, 0)
            call["steps"] = model.steps
            self.acts.append(call)
            return 1
        self.acts.append(call)
        return np.zeros(1, dtype=np.float32)


@pytest.fixture
def recorder(monkeypatch) -> list[Recorder]:
    """Registers the planner "rec" for both action spaces; the list receives each run's instance."""
    built: list[Recorder] = []

    def build(space: Any, cfg: PlanConfig) -> Recorder:
        built.append(Recorder(hasattr(space, "n"), cfg.seed))
        return built[-1]

    monkeypatch.setitem(PLANNERS, "rec", PlannerSpec("rec", lambda space: True, build,
                                                     lambda cfg: {"sims": cfg.simulations}))
    return built


def _baseline(cfg: PlanConfig, discrete: bool, which: str) -> dict[str, Any]:
    return dict(json.loads(_baseline_file(cfg, discrete, which).read_text(encoding="utf-8")))


# --- cache keys ---------------------------------------------------------------------------------------------


def test_planner_key_lists_what_identifies_a_planners_results():
    cfg = PlanConfig(env="CartPole-v1", simulations=7, episodes=3, seed=2, max_steps=9)
    assert cfg.planner_key(True) == {"env": "CartPole-v1", "planner": "mcts",
                                     "config": asdict(MCTSConfig(simulations=7)), "episodes": 3, "seed": 2,
                                     "max_steps": 9}
    assert PlanConfig(env="Pendulum-v1").planner_key(False)["planner"] == "cem"
    assert PlanConfig(env="Pendulum-v1", planner="mcts").planner_key(False)["planner"] == "mcts"
    kw = PlanConfig(env="CartPole-v1", env_kwargs={"sutton_barto_reward": True}).planner_key(True)
    assert kw["env_kwargs"] == {"sutton_barto_reward": True}


def test_an_unknown_planner_is_refused_with_the_registered_names():
    with pytest.raises(CwmError) as exc:
        PlanConfig(env="CartPole-v1", planner="nope").planner_key(True)
    assert exc.value.message == "unknown planner 'nope'"
    assert exc.value.hint == "choose one of " + ", ".join(PLANNERS)


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def test_baseline_files_are_named_by_benchmark_and_a_digest_of_the_key(tmp_path):
    base = tmp_path / "cache" / "baselines"
    assert baseline_dir() == base
    cfg = PlanConfig(env="CartPole-v1", episodes=4, seed=3, max_steps=20, simulations=6)
    assert _baseline_file(cfg, True, "random") == base / f"CartPole-v1-random-{_digest(['CartPole-v1', 4, 3, 20])}.json"
    oracle_key = {"env": "CartPole-v1", "planner": "mcts", "config": asdict(MCTSConfig(simulations=6)),
                  "episodes": 4, "seed": 3, "max_steps": 20}
    assert _baseline_file(cfg, True, "oracle") == base / f"CartPole-v1-oracle-{_digest(oracle_key)}.json"
    # a gymnasium id is filed under its benchmark name; other ids under themselves, with "/" made safe
    taxi = _baseline_file(PlanConfig(env="Taxi-v4"), True, "random")
    assert taxi.name == f"Taxi-v3-random-{_digest(['Taxi-v4', 10, 0, None])}.json"
    assert _baseline_file(PlanConfig(env="FrozenLake-v1"), True, "random").name.startswith("FrozenLake-v1-random-")
    assert _baseline_file(PlanConfig(env="ns/Thing-v0"), True, "random").name.startswith("ns_Thing-v0-random-")


def test_env_kwargs_are_part_of_both_baseline_keys():
    plain = PlanConfig(env="CartPole-v1")
    kw = PlanConfig(env="CartPole-v1", env_kwargs={"sutton_barto_reward": True})
    assert _baseline_file(kw, True, "random").name == \
        f"CartPole-v1-random-{_digest(['CartPole-v1', 10, 0, None, {'sutton_barto_reward': True}])}.json"
    assert _baseline_file(plain, True, "oracle") != _baseline_file(kw, True, "oracle")


def test_normalized_return_near_zero_uses_an_absolute_tolerance():
    assert normalized_return(0.0, 0.0, 1e-12) is None
    assert normalized_return(0.0, -1e-12, 0.0) is None
    assert normalized_return(1e-6, 0.0, 2e-6) == pytest.approx(0.5)


# --- plan(): random and oracle -------------------------------------------------------------------------------


async def test_a_random_run_reports_and_caches_its_baseline(recorder):
    cfg = PlanConfig(env="CartPole-v1", model="random", episodes=2, seed=3, planner="rec", simulations=4)
    calls: list[tuple[int, int, int, float]] = []
    out = await plan(cfg, progress=lambda *a: calls.append(a))
    assert set(out) == RESULT_KEYS
    assert (out["env"], out["model"], out["planner"], out["planner_config"]) == ("CartPole-v1", "random", "rec",
                                                                                {"sims": 4})
    assert (out["episodes"], out["seed"], out["model_steps"], out["step_batch"]) == (2, 3, 0, False)
    assert recorder[0].resets == [3, 4] and recorder[0].acts == []
    assert len(set(out["returns"])) == 2 and out["std_return"] == pytest.approx(statistics.pstdev(out["returns"]))
    assert isinstance(out["elapsed_s"], float) and round(out["elapsed_s"], 3) == out["elapsed_s"]
    assert 0.0 <= out["elapsed_s"] < 600.0
    assert (out["random_return"], out["oracle_return"], out["normalized_return"]) == (out["mean_return"], None, None)
    assert _baseline(cfg, True, "random") == {k: v for k, v in out.items() if k not in BASELINE_ONLY}
    # progress: (episode, episodes, steps so far, return so far) after every step
    expected = [(e, 2, t + 1, float(t + 1)) for e in range(2) for t in range(out["lengths"][e])]
    assert calls == expected
    again = await plan(cfg)  # the baselines directory exists now
    assert again["returns"] == out["returns"]


async def test_one_episode_has_no_spread():
    out = await plan(PlanConfig(env="CartPole-v1", model="random", episodes=1, seed=3))
    assert out["std_return"] == 0.0 and len(out["returns"]) == 1


async def test_the_environment_is_made_with_its_kwargs():
    # Sutton & Barto's CartPole reward: 0 per step, -1 when the pole falls
    out = await plan(PlanConfig(env="CartPole-v1", model="random", episodes=2, seed=0,
                                env_kwargs={"sutton_barto_reward": True}))
    assert out["returns"] == [-1.0, -1.0] and min(out["lengths"]) > 1


async def test_the_default_planner_keys_the_oracle_baseline_by_the_action_space():
    cfg = PlanConfig(env="CartPole-v1", model="oracle", episodes=1, max_steps=2, simulations=2)
    out = await plan(cfg)
    assert (out["planner"], out["planner_config"]) == ("mcts", asdict(MCTSConfig(simulations=2)))
    assert _baseline_file(cfg, True, "oracle").is_file() and out["oracle_return"] == 2.0


@pytest.mark.parametrize("env,length", [("MountainCar-v0", 200), ("CliffWalking-v1", 100)])
async def test_episodes_last_the_time_limit_or_100_steps_without_one(env, length):
    out = await plan(PlanConfig(env=env, model="random", episodes=1, seed=0))
    assert out["lengths"] == [length]


async def test_oracle_episodes_reseed_the_planner_and_the_true_model(recorder):
    cfg = PlanConfig(env="CartPole-v1", model="oracle", episodes=2, seed=5, max_steps=3, planner="rec")
    out = await plan(cfg)
    rec = recorder[0]
    assert rec.seed == 5 and rec.resets == [5, 6]
    assert [(a["model"], a["kind"], a["model_seed"], a["prefix"], a["remaining"]) for a in rec.acts] == [
        ("TrueModel", "snap", 5, [], 3), ("TrueModel", "snap", 5, [1], 2), ("TrueModel", "snap", 5, [1, 1], 1),
        ("TrueModel", "snap", 6, [], 3), ("TrueModel", "snap", 6, [1], 2), ("TrueModel", "snap", 6, [1, 1], 1)]
    assert out["model"] == "oracle" and out["returns"] == [3.0, 3.0] and out["lengths"] == [3, 3]
    assert out["model_steps"] == rec.acts[-1]["steps"] > 0
    assert out["oracle_return"] == 3.0 and out["random_return"] is None and out["normalized_return"] is None
    assert _baseline(cfg, True, "oracle")["mean_return"] == 3.0
    assert not _baseline_file(cfg, True, "random").exists()


# --- plan(): a program ------------------------------------------------------------------------------------------


def _write_baselines(cfg: PlanConfig, discrete: bool, random: float, oracle: float) -> None:
    for which, value in (("random", random), ("oracle", oracle)):
        path = _baseline_file(cfg, discrete, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean_return": value}), encoding="utf-8")


async def test_a_program_run_reads_both_baselines_and_writes_neither(recorder):
    model = str(EXAMPLES / "cartpole_cwm.py")
    cfg = PlanConfig(env="CartPole-v1", model=model, episodes=2, seed=1, max_steps=4, planner="rec")
    _write_baselines(cfg, True, 2.0, 10.0)
    out = await plan(cfg)
    rec = recorder[0]
    assert rec.resets == [1, 2] and [a["remaining"] for a in rec.acts] == [4, 3, 2, 1] * 2
    assert all(a["model"] == "ProgramModel" for a in rec.acts)
    assert all(isinstance(a["state"], list) and len(a["state"]) == 4 for a in rec.acts)
    assert out["model"] == model and out["returns"] == [4.0, 4.0] and out["model_steps"] == 8
    assert (out["random_return"], out["oracle_return"]) == (2.0, 10.0)
    assert out["normalized_return"] == pytest.approx((4.0 - 2.0) / (10.0 - 2.0))
    assert _baseline(cfg, True, "random") == {"mean_return": 2.0}
    assert _baseline(cfg, True, "oracle") == {"mean_return": 10.0}


async def test_a_run_directory_plans_with_its_best_program(recorder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best_program.py").write_text((EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    out = await plan(PlanConfig(env="CartPole-v1", model=str(run), episodes=1, max_steps=2, planner="rec"))
    assert out["returns"] == [2.0] and out["model"] == str(run)


async def test_code_given_directly_is_a_program_whatever_the_model_name(recorder):
    code = (EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8")
    out = await plan(PlanConfig(env="CartPole-v1", model="oracle", episodes=1, max_steps=2, planner="rec"),
                     code=code)
    assert recorder[0].acts[0]["model"] == "ProgramModel" and out["model"] == "oracle"
    assert out["model_steps"] == 2


async def test_a_program_that_fails_to_load_raises_its_classified_error(recorder):
    with pytest.raises(ModelFailed) as exc:
        await plan(PlanConfig(env="CartPole-v1", model="x", episodes=1, max_steps=2, planner="rec"),
                   code="class Environment(:\n")
    assert exc.value.error.kind == "syntax"


@pytest.mark.parametrize("agree", [True, False])
async def test_step_batch_is_used_on_continuous_actions_only_where_it_agrees(recorder, tmp_path, agree):
    code = (EXAMPLES / "pendulum_cwm.py").read_text(encoding="utf-8")
    if not agree:
        code = code.replace("return obs, -cost, np.zeros", "return obs, -cost + 1.0, np.zeros")
    path = Path(tmp_path / "model.py")
    path.write_text(code, encoding="utf-8")
    out = await plan(PlanConfig(env="Pendulum-v1", model=str(path), episodes=1, max_steps=2, planner="rec"))
    assert out["step_batch"] is agree and out["lengths"] == [2]
    assert [a["model"] for a in recorder[0].acts] == ["ProgramModel"] * 2


BATCHED_LOOP = """

def _step_batch(self, states, actions):
    outs = []
    for s, a in zip(states, actions):
        self.set_state(np.asarray(s))
        outs.append(self.step(int(a)))
    return np.array([o[0] for o in outs]), np.array([o[1] for o in outs]), np.array([o[2] for o in outs])


Environment.step_batch = _step_batch
"""


async def test_step_batch_is_not_used_on_discrete_actions(recorder):
    code = (EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8") + BATCHED_LOOP
    out = await plan(PlanConfig(env="CartPole-v1", model="m", episodes=1, max_steps=2, planner="rec"), code=code)
    assert out["step_batch"] is False and out["returns"] == [2.0]
