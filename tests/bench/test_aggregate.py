"""The paper's figures as shipped, where baselines come from, and the paper's aggregation rules."""

from __future__ import annotations

import math

import pytest

from cwm.bench import baselines, paper
from cwm.bench.report import mean_se, split_summary
from cwm.planning.agent import PlanConfig


def test_paper_figures_are_the_published_ones():
    assert paper.per_env("table11", "CartPole-v1", "gif-mcts-paper") == paper.PaperCell(1.0, 0.99)
    assert paper.per_env("table10", "Humanoid-v4", "worldcoder") == paper.PaperCell(None, 0.0)
    assert paper.per_env("table11", "HalfCheetah-v4", "gif-mcts").normalized_return == 0.23  # printed "0.23."
    assert paper.table12("CartPole-v1")["oracle"] == 494 and paper.table12("Acrobot-v1")["random"] == -500
    gpt4 = [r for r in paper.table2() if r["model"].startswith("GPT-4") and r["method"] == "GIF-MCTS"]
    assert gpt4[0]["discrete_accuracy"] == {"mean": 0.91, "err": 0.08}
    assert "arXiv:2405.15383" in paper.citation()


def key(env: str, cem: str = "paper", max_steps: int | None = None, episodes: int = 10) -> dict:
    discrete = env in ("CartPole-v1", "Taxi-v3")
    return PlanConfig(env=env, episodes=episodes, cem=cem, max_steps=max_steps).planner_key(discrete)


def test_baseline_lookup_prefers_measurements_and_uses_the_paper_only_for_its_planner(monkeypatch):
    monkeypatch.setattr(baselines, "shipped", lambda: [
        {"which": "oracle", "key": baselines.settings_key(key("Taxi-v3"), "oracle"), "mean_return": -250.0}])
    assert baselines.lookup(key("Taxi-v3"), "oracle") == baselines.Baseline(-250.0, "computed", None)
    assert baselines.lookup(key("Taxi-v3"), "oracle", cached=-1.0).source == "computed"
    assert baselines.lookup(key("CartPole-v1"), "oracle", cached=400.0) == baselines.Baseline(400.0, "cache")
    assert baselines.lookup(key("CartPole-v1"), "oracle") == baselines.Baseline(494.0, "paper")
    assert baselines.lookup(key("Pendulum-v1"), "random") == baselines.Baseline(-1122.8, "paper")
    assert baselines.lookup(key("Pendulum-v1", cem="mpc"), "oracle") is None  # not the paper's planner
    assert baselines.lookup(key("Pendulum-v1", max_steps=8), "oracle") is None  # not whole episodes


def test_normalized_return_is_undefined_when_oracle_equals_random():
    rnd, orc = baselines.Baseline(-200.0, "paper"), baselines.Baseline(-200.0, "paper")
    assert baselines.normalized(-150.0, rnd, orc) is None
    assert baselines.normalized(0.0, baselines.Baseline(-100.0, "paper"), baselines.Baseline(100.0, "paper")) == 0.5


def row(env: str, acc: float | None, norm: float | None, rnd: float | None = -10.0, orc: float | None = 10.0,
        seed: int = 0, plan_error: dict | None = None) -> dict:
    return {"env": env, "method": "gif-mcts", "seed": seed, "accuracy": acc, "official_accuracy": acc,
            "normalized_return": norm, "random_return": rnd, "oracle_return": orc, "plan_error": plan_error}


def test_split_means_follow_the_paper():
    rows = [row("CartPole-v1", 1.0, 0.9), row("CartPole-v1", 0.8, 0.7, seed=1),  # seeds averaged first
            row("Taxi-v3", 0.5, None, plan_error={"kind": "runtime"}),  # broke while planning: 𝓡 = 0
            row("MountainCar-v0", 1.0, None, rnd=-200.0, orc=-200.0),  # 𝓡 undefined: left out
            row("Pendulum-v1", None, None)]  # no program: accuracy 0, 𝓡 0
    s = split_summary(rows, "gif-mcts")
    acc, se, n = s["discrete_accuracy"]
    assert n == 3 and acc == pytest.approx((0.9 + 0.5 + 1.0) / 3)
    assert se == pytest.approx(math.sqrt(((0.9 - 0.8) ** 2 + (0.5 - 0.8) ** 2 + (1.0 - 0.8) ** 2) / 2) / math.sqrt(3))
    assert s["discrete_normalized_return"][:1] == (pytest.approx(0.4),) and s["discrete_normalized_return"][2] == 2
    assert s["continuous_accuracy"] == (0.0, None, 1) and s["continuous_normalized_return"] == (0.0, None, 1)
    assert mean_se([]) == (None, None, 0)
