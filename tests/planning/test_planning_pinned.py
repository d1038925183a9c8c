"""Planning results pinned to hand-computed values: MCTS backups and choices, CEM optima, per-episode seeds,
normalized return, baseline cache keys and the model adapters' accounting.

Each test states a number that a plausible regression (a dropped discount, elites taken from the wrong
end, one seed reused by every episode) would change; see tests/mutation_equivalents.md for what is left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from cwm.envs.registry import make_env
from cwm.planning.agent import PlanConfig, _baseline_file, normalized_return, plan, split_report
from cwm.planning.cem import PRESETS, CEMConfig, CEMPlanner
from cwm.planning.mcts import MCTSConfig, MCTSPlanner, _Node
from cwm.planning.models import ModelFailed, ProgramModel, TrueModel
from cwm.sandbox.worker import ProgramError, SessionFailed


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))


# --- normalized return ---------------------------------------------------------------------------------


def test_normalized_return_is_the_papers_ratio():
    assert normalized_return(50, 10, 90) == pytest.approx(0.5)
    assert normalized_return(10, 10, 90) == 0.0
    assert normalized_return(0, 10, 90) == pytest.approx(-0.125)
    assert normalized_return(130, 10, 90) == pytest.approx(1.5)


def test_normalized_return_is_undefined_unless_the_oracle_beats_random():
    # oracle worse than random: the ratio would call a below-random model (5 < 10) "half-way to the oracle"
    assert normalized_return(5, 10, 0) is None
    assert normalized_return(-200, -200, -200) is None  # MountainCar: oracle = random (paper: N/A)
    assert normalized_return(1, 2, 2 + 1e-12) is None
    assert normalized_return(1, None, 2) is None
    assert normalized_return(1, 2, None) is None
    assert normalized_return(1.5, 1, 2) == pytest.approx(0.5)  # a small positive gap is defined


def test_split_report_means_only_defined_values_per_split():
    results = [{"env": "a", "planner": "mcts", "normalized_return": 0.5},
               {"env": "b", "planner": "mcts", "normalized_return": None},
               {"env": "c", "planner": "mcts", "normalized_return": 1.0},
               {"env": "d", "planner": "cem", "normalized_return": 0.2}]
    rep = split_report(results)
    assert rep["per_env"] == {"a": 0.5, "b": None, "c": 1.0, "d": 0.2}
    assert rep["split_mean"] == {"discrete": pytest.approx(0.75), "continuous": pytest.approx(0.2)}
    assert rep["split_count"] == {"discrete": 2, "continuous": 1}
    assert split_report([])["split_mean"] == {"discrete": None, "continuous": None}


def test_baseline_cache_keys():
    base = PlanConfig(env="CartPole-v1", simulations=25)
    other_planner = PlanConfig(env="CartPole-v1", simulations=5)
    # the random policy ignores the planner, the oracle does not
    assert _baseline_file(base, True, "random") == _baseline_file(other_planner, True, "random")
    assert _baseline_file(base, True, "oracle") != _baseline_file(other_planner, True, "oracle")
    assert _baseline_file(base, True, "oracle") != _baseline_file(base, True, "random")
    for changed in (PlanConfig(env="CartPole-v1", seed=1), PlanConfig(env="CartPole-v1", episodes=3),
                    PlanConfig(env="CartPole-v1", max_steps=7)):
        for which in ("random", "oracle"):
            assert _baseline_file(base, True, which) != _baseline_file(changed, True, which)
    assert _baseline_file(base, True, "random").name.startswith("CartPole-v1-random-")


# --- MCTS ------------------------------------------------------------------------------------------------


@dataclass
class TableModel:
    """A hand-written model: ``table[(state, action)] = (next_state, reward, done, rollout_value)``."""

    table: dict[tuple[str, int], tuple[str, float, bool, float]]
    calls: list[tuple[str, int, int, float]] = field(default_factory=list)

    async def simulate(self, state: Any, action: int, depth: int, discount: float,
                       seed: int) -> tuple[Any, float, bool, float]:
        self.calls.append((state, action, depth, discount))
        return self.table[(state, action)]

    async def rollouts(self, state: Any, plans: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise AssertionError("MCTS does not call rollouts")

    def root(self, env: Any, obs: Any) -> Any:
        return "root"


def _two_armed(r0: float, v0: float, r1: float, v1: float) -> TableModel:
    """Action 0 ends the episode with r0 (its rollout value v0 must be ignored); action 1 continues."""
    return TableModel({("root", 0): ("end", r0, True, v0), ("root", 1): ("s1", r1, False, v1)})


# default_q = 10 makes both arms expand in the first two simulations, whatever the seed
EXPAND_BOTH = MCTSConfig(simulations=2, default_q=10.0, discount=0.5)


@pytest.mark.parametrize("seed", range(6))
async def test_mcts_backup_discounts_the_rollout_value(seed):
    # Q(0) = -0.6 (done: v0 ignored); Q(1) = 0 + 0.5 * -1 = -0.5 > -0.6, so 1 is chosen;
    # without the discount Q(1) = -1; using v0 on a terminal child would make Q(0) = 1.9
    model = _two_armed(-0.6, 5.0, 0.0, -1.0)
    assert await MCTSPlanner(2, EXPAND_BOTH, seed).act(model, "root", 50) == 1
    assert sorted(c[1] for c in model.calls) == [0, 1]


@pytest.mark.parametrize("seed", range(6))
async def test_mcts_backup_adds_the_reward_of_the_step(seed):
    # Q(1) = 0.3 + 0.5 * 0.4 = 0.5 beats Q(0) = 0.45; dropping either term of r + γv makes 0 win
    model = _two_armed(0.45, 0.0, 0.3, 0.4)
    assert await MCTSPlanner(2, EXPAND_BOTH, seed).act(model, "root", 50) == 1
    model = _two_armed(0.55, 0.0, 0.3, 0.4)
    assert await MCTSPlanner(2, EXPAND_BOTH, seed).act(model, "root", 50) == 0


async def test_mcts_backup_through_a_hand_computed_two_level_tree():
    """Three simulations on a one-action chain: root -a-> s1 -a-> s2 -a-> s3 (each r = 1, v = 2, γ = 0.5).

    Sim 1 expands s1: Q(s1) = 1 + .5*2 = 2. Sim 2 expands s2: s2 = 1 + .5*2 = 2, s1 = 1 + .5*2 = 2.
    Sim 3 expands s3 the same way, so every Q stays 2: the planner must ask for s1, s2, s3 in order,
    which it only does if root.n and the children's counts grow by one per simulation."""
    chain = {(f"s{i}" if i else "root", 0): (f"s{i + 1}", 1.0, False, 2.0) for i in range(4)}
    model = TableModel(chain)
    cfg = MCTSConfig(simulations=3, discount=0.5, max_actions=7)
    assert await MCTSPlanner(1, cfg, 0).act(model, "root", 5) == 0
    assert [c[0] for c in model.calls] == ["root", "s1", "s2"]
    assert {(c[2], c[3]) for c in model.calls} == {(5, 0.5)}  # depth = min(max_actions, remaining)


async def test_mcts_rollout_depth_is_capped_by_max_actions():
    model = _two_armed(0.0, 0.0, 0.0, 0.0)
    await MCTSPlanner(2, MCTSConfig(simulations=2, max_actions=4, default_q=10.0), 0).act(model, "root", 9)
    assert {c[2] for c in model.calls} == {4}


@pytest.mark.parametrize("seed", range(4))
async def test_mcts_picks_the_action_with_the_best_known_return(seed):
    # three arms, each ending the episode: rewards 0.2, 0.9, 0.5; the softmax at T = 0.01 is all but argmax
    model = TableModel({("root", a): ("end", r, True, 0.0) for a, r in enumerate((0.2, 0.9, 0.5))})
    cfg = MCTSConfig(simulations=12, default_q=10.0)
    assert await MCTSPlanner(3, cfg, seed).act(model, "root", 10) == 1


async def test_mcts_with_a_high_temperature_samples_other_actions():
    model = TableModel({("root", a): ("end", r, True, 0.0) for a, r in enumerate((0.0, 0.1))})
    cfg = MCTSConfig(simulations=4, default_q=10.0, temperature=100.0)
    picks = {await MCTSPlanner(2, cfg, s).act(model, "root", 10) for s in range(30)}
    assert picks == {0, 1}


async def test_mcts_explores_the_unvisited_action_by_ucb():
    """With the paper's default Q of 1 and rewards of 0.5, the unvisited arm's bonus sqrt(ln N / eps)
    wins as soon as ln N > 0, so two arms are both tried within three simulations."""
    model = TableModel({("root", a): ("end", 0.5, True, 0.0) for a in range(2)})
    for seed in range(5):
        model.calls.clear()
        await MCTSPlanner(2, MCTSConfig(simulations=3), seed).act(model, "root", 10)
        assert {c[1] for c in model.calls} == {0, 1}


async def test_mcts_prefers_the_less_visited_of_two_equal_arms():
    """UCB's bonus shrinks with a child's visits, so equal arms are visited evenly (8 sims: 4 and 4)."""
    model = TableModel({("root", 0): ("a", 0.5, False, 0.0), ("root", 1): ("b", 0.5, False, 0.0),
                        **{(s, a): (s, 0.0, True, 0.0) for s in ("a", "b") for a in range(2)}})
    await MCTSPlanner(2, MCTSConfig(simulations=8, default_q=0.0), 0).act(model, "root", 10)
    first_moves = [c[0] for c in model.calls]
    assert first_moves.count("root") == 2
    # after the two expansions, the six later simulations descend alternately into a and b
    assert first_moves.count("a") == first_moves.count("b") == 2  # each child expands both its actions once


async def test_mcts_planner_reset_reseeds():
    model = TableModel({("root", a): ("end", 0.5, True, 0.0) for a in range(4)})
    p = MCTSPlanner(4, MCTSConfig(simulations=1), 0)
    first = [await p.act(model, "root", 5) for _ in range(6)]
    p.reset(0)
    assert [await p.act(model, "root", 5) for _ in range(6)] == first
    p.reset(1)
    assert [await p.act(model, "root", 5) for _ in range(6)] != first


# --- CEM --------------------------------------------------------------------------------------------------


@dataclass
class Quadratic:
    """Return of a plan = −Σ (a_t − target_t)²: the optimum is the target itself."""

    target: np.ndarray[Any, Any]
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    batches: list[np.ndarray[Any, Any]] = field(default_factory=list)

    async def simulate(self, *args: Any) -> Any:
        raise AssertionError("CEM does not call simulate")

    states: list[Any] = field(default_factory=list)
    returns: list[np.ndarray[Any, Any]] = field(default_factory=list)

    async def rollouts(self, state: Any, plans: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        self.states.append(state)
        self.shapes.append(plans.shape)
        self.batches.append(plans.copy())
        h = plans.shape[1]
        self.returns.append(np.asarray(-((plans - self.target[:h]) ** 2).sum(axis=(1, 2))))
        return self.returns[-1]

    def root(self, env: Any, obs: Any) -> Any:
        return None


def _target(h: int) -> np.ndarray[Any, Any]:
    t = np.arange(h, dtype=np.float64)
    return np.stack([0.6 * np.sin(t / 3), -0.4 + 0.05 * t % 0.8], axis=1)[:, :2]


@pytest.mark.parametrize("execute", ["mean", "best"])
async def test_cem_finds_the_optimum_of_a_quadratic(execute):
    target = _target(8)
    model = Quadratic(target)
    cfg = CEMConfig(horizon=8, iterations=8, samples=300, elites=30, execute=execute)
    cem = CEMPlanner(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), cfg, seed=0)
    first = await cem.act(model, None, 50)
    assert first == pytest.approx(target[0], abs=0.05)
    assert cem.mu is not None and cem.mu == pytest.approx(target, abs=0.05)
    assert model.shapes == [(300, 8, 2)] * 8


async def test_cem_stays_inside_the_action_box():
    # optimum outside the box: the plan must stop at the bound, not past it
    model = Quadratic(np.full((5, 1), 3.0))
    cem = CEMPlanner(np.array([-2.0]), np.array([0.5]), CEMConfig(horizon=5, iterations=4, samples=100, elites=10))
    first = await cem.act(model, None, 50)
    assert 0.35 < first[0] <= 0.5  # the elites' mean, pressed against the upper bound
    assert all(b.max() <= 0.5 and b.min() >= -2.0 for b in model.batches)


async def test_cem_first_samples_centre_on_the_box_with_half_the_largest_bound_as_std():
    model = Quadratic(np.zeros((4, 2)))
    low, high = np.array([1.0, -8.0]), np.array([9.0, 8.0])
    cfg = CEMConfig(horizon=4, iterations=1, samples=4000, elites=10)
    await CEMPlanner(low, high, cfg, seed=3).act(model, None, 10)
    first = model.batches[0]
    # dim 0: centre 5, std 4.5 (half of max(|1|, |9|)), clipped to [1, 9]; dim 1: centre 0, std 4
    assert first[..., 0].mean() == pytest.approx(5.0, abs=0.1)
    assert first[..., 1].mean() == pytest.approx(0.0, abs=0.15)
    unclipped = first[..., 1][np.abs(first[..., 1]) < 8.0]
    assert 3.0 < first[..., 1].std() < 4.2 and unclipped.size > 0.9 * first[..., 1].size


async def test_cem_horizon_is_cut_to_the_remaining_steps_and_plans_replay_open_loop():
    target = _target(6)
    model = Quadratic(target)
    cfg = CEMConfig(horizon=10, iterations=6, samples=300, elites=30, replan_every=3, execute="best",
                    warm_start=False)
    cem = CEMPlanner(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), cfg, seed=1)
    actions = [await cem.act(model, None, 6) for _ in range(3)]
    assert model.shapes == [(300, 6, 2)] * 6  # one planning round only: the next two actions come from the queue
    assert np.asarray(actions) == pytest.approx(target[:3], abs=0.12)
    await cem.act(model, None, 1)
    assert model.shapes[-1] == (300, 1, 2)
    assert len(model.shapes) == 12


async def test_cem_warm_start_shifts_the_previous_mean_by_one_step():
    target = _target(6)
    model = Quadratic(target)
    cfg = CEMConfig(horizon=5, iterations=6, samples=300, elites=30)
    cem = CEMPlanner(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), cfg, seed=2)
    await cem.act(model, None, 50)
    prev = cem.mu
    assert prev is not None
    model.batches.clear()
    # second round, one iteration: its samples are centred on the previous mean shifted by one step;
    # the last step, with nothing to shift in, restarts from the box centre (0)
    cem.config = CEMConfig(horizon=5, iterations=1, samples=3000, elites=30)
    await cem.act(model, None, 50)
    centre = model.batches[0].mean(axis=0)
    assert centre[:4] == pytest.approx(prev[1:], abs=0.1)
    assert centre[4] == pytest.approx([0.0, 0.0], abs=0.1)
    cem.reset(2)
    assert cem.mu is None and cem.queue == []


async def test_cem_without_warm_start_begins_at_the_centre_each_step():
    model = Quadratic(np.full((3, 1), 0.9))
    cfg = CEMConfig(horizon=3, iterations=3, samples=200, elites=20, warm_start=False)
    cem = CEMPlanner(np.array([-1.0]), np.array([1.0]), cfg, seed=0)
    await cem.act(model, None, 50)
    cem.config = CEMConfig(horizon=3, iterations=1, samples=3000, elites=20, warm_start=False)
    model.batches.clear()
    await cem.act(model, None, 50)
    assert model.batches[0].mean() == pytest.approx(0.0, abs=0.05)


def test_cem_presets():
    assert PRESETS["paper"] == CEMConfig(horizon=100, iterations=20, samples=1000, elites=100, replan_every=100,
                                         execute="best", warm_start=False)
    assert PRESETS["mpc"] == CEMConfig(horizon=30, iterations=5, samples=200, elites=20, replan_every=1,
                                       execute="mean", warm_start=True)


# --- per-episode seeds ---------------------------------------------------------------------------------------


async def test_random_episodes_reset_with_seed_plus_episode():
    out = await plan(PlanConfig(env="CartPole-v1", model="random", episodes=3, seed=11))
    env = make_env("CartPole-v1")
    expected = []
    for e in range(3):
        env.reset(seed=11 + e)
        env.action_space.seed(11 + e)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total += float(r)
            done = term or trunc
        expected.append(total)
    assert out["returns"] == expected
    assert len(set(expected)) > 1
    assert out["mean_return"] == pytest.approx(sum(expected) / 3)
    assert out["std_return"] == pytest.approx(float(np.std(expected)))
    assert out["lengths"] == [int(x) for x in expected]  # CartPole pays 1 per step


@pytest.mark.slow  # whole planning runs; left out of the mutation run (scripts/mutation.sh)
async def test_each_oracle_episode_replays_as_a_one_episode_run_with_its_seed():
    cfg = {"env": "Taxi-v3", "model": "oracle", "simulations": 6, "max_steps": 12}
    both = await plan(PlanConfig(episodes=2, seed=4, **cfg))
    second = await plan(PlanConfig(episodes=1, seed=5, **cfg))
    assert both["returns"][1] == second["returns"][0]
    assert both["lengths"] == [12, 12]


@pytest.mark.slow  # whole planning runs; left out of the mutation run (scripts/mutation.sh)
async def test_plan_reports_normalized_return_from_cached_baselines():
    cfg = {"env": "CartPole-v1", "episodes": 2, "max_steps": 40, "simulations": 8, "seed": 0}
    rnd = await plan(PlanConfig(model="random", **cfg))
    assert rnd["random_return"] == rnd["mean_return"] and rnd["oracle_return"] is None
    assert rnd["normalized_return"] is None
    orc = await plan(PlanConfig(model="oracle", **cfg))
    assert orc["oracle_return"] == orc["mean_return"] == 40.0
    assert orc["random_return"] == rnd["mean_return"] < 40.0
    assert orc["normalized_return"] == pytest.approx(1.0)
    assert orc["planner"] == "mcts" and orc["planner_config"]["simulations"] == 8


# --- model adapters ---------------------------------------------------------------------------------------


async def test_true_model_simulate_returns_the_discounted_random_rollout_and_restores_the_env():
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    model = TrueModel(env, seed=0)
    before = np.array(env.unwrapped.state)
    root = model.root(env, None)
    nxt, r, done, value = await model.simulate(root, 1, 3, 0.5, seed=9)
    assert (r, done) == (1.0, False)
    assert value == pytest.approx(1 + 0.5 + 0.25)  # three more steps of reward 1, discounted
    assert model.steps == 4
    assert np.array_equal(np.array(env.unwrapped.state), before)
    assert nxt[0] == "snap"
    again = await model.simulate(root, 1, 0, 0.5, seed=9)
    assert again[3] == 0.0 and model.steps == 5


async def test_true_model_rollouts_sum_rewards_until_termination():
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    model = TrueModel(env, seed=0)
    plans = np.zeros((2, 30), dtype=np.int64)  # always push left: the pole falls well before 30 steps
    plans[1, :] = [0, 1] * 15  # alternate: it stays up for all 30
    before = np.array(env.unwrapped.state)
    out = await model.rollouts(model.root(env, None), plans)
    assert 5 <= out[0] < 30 and out[1] == 30.0
    assert np.array_equal(np.array(env.unwrapped.state), before)  # the live episode is restored
    assert model.steps == int(out[0]) + 30


@dataclass
class FakeSession:
    replies: list[Any]
    sent: list[dict[str, Any]] = field(default_factory=list)

    timeouts: list[float] = field(default_factory=list)

    async def step_many_raw(self, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        self.sent.append(payload)
        self.timeouts.append(timeout)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)


async def test_program_model_simulate_parses_and_counts():
    session = FakeSession([{"s": [1.0, 2.0, 3.0, 4.0], "shape": [2, 2], "r": 0.5, "d": False, "v": 2.5},
                           {"s": [7], "shape": [], "r": math.inf, "d": True, "v": "x"}])
    pm = ProgramModel(session, n_actions=3)  # type: ignore[arg-type]
    assert await pm.simulate([0.0], 2, 10, 0.9, 5) == ([[1.0, 2.0], [3.0, 4.0]], 0.5, False, 2.5)
    assert session.sent[0] == {"op": "simulate", "state": [0.0], "action": 2, "depth": 10, "discount": 0.9,
                               "seed": 5, "n_actions": 3}
    assert pm.steps == 11
    assert await pm.simulate(7, 0, 3, 0.9, 5) == (7, -1e9, True, -1e9)  # non-finite and non-numbers: -1e9
    assert pm.steps == 15


async def test_program_model_rollouts_and_failures():
    session = FakeSession([{"returns": [1.0, math.nan, True]}, {"returns": [1.0]},
                           {"error": {"kind": "timeout", "message": "slow", "traceback": "tb"}},
                           SessionFailed(ProgramError("crash", "gone"), []), {"s": None, "shape": []}])
    pm = ProgramModel(session, n_actions=None, use_batch=True, timeout=42.0)  # type: ignore[arg-type]
    plans = np.zeros((3, 4, 1))
    assert list(await pm.rollouts([0.0], plans)) == [1.0, -1e18, -1e18]
    assert session.sent[0] == {"op": "rollouts", "state": [0.0], "plans": plans.tolist(), "use_batch": True}
    assert session.timeouts[0] == 42.0
    assert pm.steps == 12
    with pytest.raises(ModelFailed) as exc:
        await pm.rollouts([0.0], plans)
    assert (exc.value.error.kind, exc.value.error.message) == ("protocol",
                                                               "the model returned a malformed rollout result")
    with pytest.raises(ModelFailed) as exc:
        await pm.rollouts([0.0], plans)
    assert (exc.value.error.kind, exc.value.error.message, exc.value.error.traceback) == ("timeout", "slow", "tb")
    with pytest.raises(ModelFailed, match="crash: gone"):
        await pm.rollouts([0.0], plans)
    with pytest.raises(ModelFailed, match="malformed state"):
        await pm.simulate([0.0], 0, 1, 0.9, 0)
    assert pm.steps == 14  # the failed simulate still ran its step and rollout of depth 1


async def test_program_model_error_records_get_defaults():
    session = FakeSession([{"error": {}}, {"error": {"kind": "memory", "message": "m" * 3000, "traceback": 7}}])
    pm = ProgramModel(session, n_actions=2)  # type: ignore[arg-type]
    with pytest.raises(ModelFailed) as exc:
        await pm.rollouts([0.0], np.zeros((1, 1, 1)))
    assert (exc.value.error.kind, exc.value.error.message, exc.value.error.traceback) == ("runtime", "", None)
    assert session.timeouts == [600.0]
    with pytest.raises(ModelFailed) as exc:
        await pm.rollouts([0.0], np.zeros((1, 1, 1)))
    assert (exc.value.error.kind, exc.value.error.message, exc.value.error.traceback) == ("memory", "m" * 2000, None)
    assert pm.root(None, np.array([[1, 2]])) == [[1, 2]]


async def test_true_model_replays_seed_and_actions_where_snapshots_are_missing():
    """Where no snapshot exists (Box2D), a state is the episode's seed plus the actions taken so far."""
    env = make_env("CartPole-v1")
    env.reset(seed=6)
    snap_model = TrueModel(env, seed=6)
    replay_env = make_env("CartPole-v1")
    replay_env.reset(seed=6)
    replay = TrueModel(replay_env, seed=6)
    replay.snap.supported = False
    for a in (1, 0, 1):
        env.step(a)
        replay_env.step(a)
        replay.record(a)
    root = replay.root(replay_env, None)
    assert root == ("replay", [1, 0, 1])
    a = await snap_model.simulate(snap_model.root(env, None), 0, 3, 0.9, seed=4)
    b = await replay.simulate(root, 0, 3, 0.9, seed=4)
    assert b[0] == ("replay", [1, 0, 1, 0]) and a[1:] == b[1:]
    plans = np.array([[0, 1, 0, 1], [1, 1, 1, 1]])
    assert list(await replay.rollouts(root, plans)) == list(await snap_model.rollouts(snap_model.root(env, None),
                                                                                       plans))
    replay.reset_episode(9)
    assert (replay.seed, replay.prefix) == (9, [])
    assert replay.root(replay_env, None) == ("replay", [])


async def test_true_model_rollout_values_follow_their_seed():
    env = make_env("CartPole-v1")
    env.reset(seed=1)
    model = TrueModel(env, seed=1)
    root = model.root(env, None)
    values = [(await model.simulate(root, 0, 100, 1.0, seed=s))[3] for s in (3, 3, 4, 5, 6, 7)]
    assert values[0] == values[1]  # random rollouts of up to 100 steps end at different times
    assert len(set(values[1:])) > 1


async def test_true_model_does_not_roll_out_past_a_terminal_step():
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.0, 0.0, 0.2, 3.0])  # the pole is about to pass 12 degrees
    model = TrueModel(env, seed=0)
    _, r, done, value = await model.simulate(model.root(env, None), 1, 50, 0.99, seed=0)
    assert (r, done, value, model.steps) == (1.0, True, 0.0, 1)


async def test_cem_planner_reset_reseeds():
    model = Quadratic(np.zeros((3, 1)))
    cem = CEMPlanner(np.array([-1.0]), np.array([1.0]), CEMConfig(horizon=3, iterations=1, samples=20, elites=5), 0)
    cem.reset(5)
    first = await cem.act(model, None, 10)
    cem.reset(5)
    assert np.array_equal(await cem.act(model, None, 10), first)
    cem.reset(6)
    assert not np.array_equal(await cem.act(model, None, 10), first)


async def test_mcts_search_statistics_on_a_hand_computed_chain():
    """root -> s1 -> s2 -> s3, each step r = 1 with rollout value v = 4 after it, γ = 0.5, 3 simulations.

    Sim 1 expands s1: 1 + .5*4 = 3. Sim 2 expands s2 (3) and backs 1 + .5*3 = 2.5 into s1.
    Sim 3 expands s3 (3), backs 2.5 into s2 and 1 + .5*2.5 = 2.25 into s1."""
    chain = {(f"s{i}" if i else "root", 0): (f"s{i + 1}", 1.0, False, 4.0) for i in range(4)}
    root = await MCTSPlanner(1, MCTSConfig(simulations=3, discount=0.5), 0).search(TableModel(chain), "root", 9)
    s1 = root.children[0]
    s2 = s1.children[0]
    s3 = s2.children[0]
    assert root.n == 3 and root.w == 0.0
    assert (s1.n, s1.w) == (3, pytest.approx(3 + 2.5 + 2.25))
    assert (s2.n, s2.w) == (2, pytest.approx(3 + 2.5))
    assert (s3.n, s3.w, s3.children) == (1, pytest.approx(3.0), {})
    assert s1.q == pytest.approx(7.75 / 3) and s3.state == "s3"


async def test_mcts_revisiting_a_terminal_child_backs_up_its_reward_only():
    """Two terminal arms (0.40, 0.45), 4 simulations, γ = 0.9: both expand, the better one is revisited
    (equal bonuses), then the other (ln 3 bonus with one visit wins); a revisit adds r, nothing after it."""
    model = TableModel({("root", 0): ("end", 0.40, True, 7.0), ("root", 1): ("end", 0.45, True, 7.0)})
    cfg = MCTSConfig(simulations=4, default_q=10.0, discount=0.9)
    for seed in range(4):
        root = await MCTSPlanner(2, cfg, seed).search(model, "root", 9)
        a0, a1 = root.children[0], root.children[1]
        assert root.n == 4
        assert (a0.n, a0.w) == (2, pytest.approx(0.8)) and (a1.n, a1.w) == (2, pytest.approx(0.9))
        assert a0.done and a0.children == {}


def test_ucb_formula():
    p = MCTSPlanner(2, MCTSConfig(ucb_c=2.0, eps=0.5, default_q=0.7))
    node = _Node("s", n=4)
    node.children[0] = _Node("t", n=3, w=1.5)
    assert p._ucb(node, 0) == pytest.approx(0.5 + 2.0 * math.sqrt(math.log(4) / 3.5))
    assert p._ucb(node, 1) == pytest.approx(0.7 + 2.0 * math.sqrt(math.log(4) / 0.5))
    assert p._ucb(_Node("s", n=0), 1) == pytest.approx(0.7)  # a fresh node: no exploration term
    assert _Node("s").q == 0.0


async def test_mcts_rollout_seeds_are_31_bit_and_follow_the_planner_seed():
    @dataclass
    class Seeds(TableModel):
        seeds: list[int] = field(default_factory=list)

        async def simulate(self, state: Any, action: int, depth: int, discount: float,
                           seed: int) -> tuple[Any, float, bool, float]:
            self.seeds.append(seed)
            return ("s", 0.0, False, 0.0)

    runs = []
    for planner_seed in (1, 1, 2):
        m = Seeds({})
        await MCTSPlanner(3, MCTSConfig(simulations=60), planner_seed).search(m, "root", 9)
        assert len(m.seeds) == 60 and all(isinstance(x, int) and 0 <= x < 2**31 for x in m.seeds)
        assert max(m.seeds) > 2**30
        runs.append(m.seeds)
    assert runs[0] == runs[1] and runs[0] != runs[2]


async def test_cem_best_executes_the_best_plan_of_the_last_iteration_exactly():
    model = Quadratic(_target(4))
    cfg = CEMConfig(horizon=4, iterations=3, samples=50, elites=5, execute="best", replan_every=4)
    cem = CEMPlanner(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), cfg, seed=0)
    actions = [await cem.act(model, "the state", 10) for _ in range(4)]
    best = model.batches[-1][int(np.argmax(model.returns[-1]))]
    assert np.array_equal(np.asarray(actions), best)
    assert model.states == ["the state"] * 3
    # "mean" executes the elites' mean instead: not any sampled plan
    mean_cem = CEMPlanner(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), CEMConfig(horizon=4, iterations=3,
                          samples=50, elites=5), seed=0)
    first = await mean_cem.act(model, "the state", 10)
    assert mean_cem.mu is not None and np.array_equal(first, mean_cem.mu[0])


async def test_planners_default_to_seed_zero():
    model = Quadratic(np.zeros((3, 1)))
    cfg = CEMConfig(horizon=3, iterations=1, samples=20, elites=5)
    a = await CEMPlanner(np.array([-1.0]), np.array([1.0]), cfg).act(model, None, 10)
    b = await CEMPlanner(np.array([-1.0]), np.array([1.0]), cfg, seed=0).act(model, None, 10)
    assert np.array_equal(a, b)
    arms = TableModel({("root", i): ("end", 0.5, True, 0.0) for i in range(5)})
    mcts_cfg = MCTSConfig(simulations=1, temperature=100.0)
    default, zero, one = MCTSPlanner(5, mcts_cfg), MCTSPlanner(5, mcts_cfg, 0), MCTSPlanner(5, mcts_cfg, 1)
    picks = [await default.act(arms, "root", 5) for _ in range(8)]
    assert picks == [await zero.act(arms, "root", 5) for _ in range(8)]
    assert picks != [await one.act(arms, "root", 5) for _ in range(8)]


async def test_mcts_without_simulations_acts_at_random():
    p = MCTSPlanner(4, MCTSConfig(simulations=0), 0)
    picks = {await p.act(TableModel({}), "root", 5) for _ in range(40)}
    assert picks == {0, 1, 2, 3}


async def test_mcts_softmax_handles_large_returns():
    model = TableModel({("root", 0): ("end", 1000.0, True, 0.0), ("root", 1): ("end", 999.0, True, 0.0)})
    assert await MCTSPlanner(2, MCTSConfig(simulations=6, default_q=1e4), 0).act(model, "root", 5) == 0


async def test_true_model_rollout_value_on_rewards_other_than_one():
    """CliffWalking pays -1 per step and -100 at the cliff: the value is Σ γ^k r_k of the seeded rollout."""
    import random

    env = make_env("CliffWalking-v0")
    env.reset(seed=0)
    model = TrueModel(env, seed=0)
    _, r, _, value = await model.simulate(model.root(env, None), 0, 8, 0.5, seed=11)
    check = make_env("CliffWalking-v0")
    check.reset(seed=0)
    u = check.unwrapped
    u.step(0)
    rng, expected, g = random.Random(11), 0.0, 1.0
    for _ in range(8):
        _, rr, term, _, _ = u.step(rng.randrange(4))
        expected += g * float(rr)
        g *= 0.5
        if term:
            break
    assert r == -1.0 and value == pytest.approx(expected) and expected != 0.0


async def test_cem_warm_start_when_the_horizon_shrinks():
    model = Quadratic(np.zeros((5, 1)))
    cem = CEMPlanner(np.array([-1.0]), np.array([1.0]), CEMConfig(horizon=5, iterations=2, samples=30, elites=5), 0)
    await cem.act(model, None, 50)
    await cem.act(model, None, 3)  # the episode's last 3 steps: the previous 5-step mean is cut to fit
    assert model.shapes[-1] == (30, 3, 1) and cem.mu is not None and cem.mu.shape == (3, 1)


async def test_program_model_state_parsing_and_step_counts():
    session = FakeSession([{"s": [1, 2, 3, 4], "shape": [2, 2], "r": 0, "d": False, "v": 0},
                           {"s": [7], "shape": [], "r": 0, "d": False, "v": 0},
                           {"s": ["tag"], "shape": [], "r": 0, "d": False, "v": 0},
                           {"s": "bad", "shape": [1]},
                           {"returns": [1.0, 2.0]}, {"returns": [1.0, 2.0]}])
    pm = ProgramModel(session, n_actions=2)  # type: ignore[arg-type]
    nxt = (await pm.simulate(0, 0, 1, 0.9, 0))[0]
    assert nxt == [[1.0, 2.0], [3.0, 4.0]] and all(type(x) is float for row in nxt for x in row)
    scalar = (await pm.simulate(0, 0, 1, 0.9, 0))[0]
    assert scalar == 7 and type(scalar) is int  # a scalar state comes back as the model wrote it
    assert (await pm.simulate(0, 0, 1, 0.9, 0))[0] == "tag"
    with pytest.raises(ModelFailed) as exc:
        await pm.simulate(0, 0, 1, 0.9, 0)
    assert (exc.value.error.kind, exc.value.error.message) == ("protocol", "the model returned a malformed state")
    pm.steps = 0
    plans = np.zeros((2, 5, 1))
    await pm.rollouts(0, plans)
    await pm.rollouts(0, plans)
    assert pm.steps == 20
