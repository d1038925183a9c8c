"""A synthesized model as a gymnasium environment: its steps come from the sandboxed program, not the env."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import cwm
from cwm.model_env import ModelError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_perfect_cartpole_model_reproduces_the_real_environment() -> None:
    env = cwm.as_env(EXAMPLES / "cartpole_cwm.py", env="CartPole-v1")
    real = gym.make("CartPole-v1")
    try:
        assert env.observation_space == real.observation_space and env.action_space == real.action_space
        obs, _ = env.reset(seed=3)
        robs, _ = real.reset(seed=3)
        np.testing.assert_array_equal(obs, robs)
        rng = np.random.default_rng(0)
        steps = 0
        while True:
            a = int(rng.integers(2))
            obs, r, term, trunc, _ = env.step(a)
            robs, rr, rterm, _, _ = real.step(a)
            steps += 1
            assert obs.dtype == np.float32
            np.testing.assert_allclose(obs, robs, atol=1e-5)
            assert (r, term) == (rr, rterm)
            if term or trunc:
                break
        assert steps > 5
    finally:
        env.close()
        real.close()


def test_the_model_not_the_real_environment_decides(tmp_path: Path) -> None:
    code = (EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8").replace(
        "return self.state, 1.0, done", "return self.state, 7.0, False")
    env = cwm.as_env(code, env="CartPole-v1", max_episode_steps=4)
    try:
        env.reset(seed=0)
        rewards, truncated = [], False
        for _ in range(4):
            _, r, term, truncated, _ = env.step(1)
            rewards.append(r)
            assert not term
        assert rewards == [7.0] * 4 and truncated  # the time limit cuts at 4 steps
    finally:
        env.close()


def test_a_discrete_state_model_returns_ints() -> None:
    code = """
class Environment:
    def __init__(self):
        self.s = 0
    def set_state(self, state):
        self.s = state
    def step(self, action):
        return (self.s + action) % 16, 0.5, False
"""
    env = cwm.as_env(code, env="FrozenLake-v1")
    try:
        obs, _ = env.reset(seed=0)
        assert obs == 0
        obs, r, *_ = env.step(3)
        assert obs == 3 and isinstance(obs, int) and r == 0.5
    finally:
        env.close()


def test_broken_models_raise_a_classified_error() -> None:
    with pytest.raises(ModelError, match="syntax"):
        cwm.as_env("class Environment(:\n", env="CartPole-v1")
    env = cwm.as_env("class Environment:\n    def set_state(self, s): pass\n"
                     "    def step(self, a): raise ValueError('nope')\n", env="CartPole-v1")
    try:
        env.reset(seed=0)
        with pytest.raises(ModelError, match="nope") as info:
            env.step(0)
        assert "ValueError" in (info.value.error.traceback or info.value.error.message)
    finally:
        env.close()


def test_step_before_reset_is_refused() -> None:
    env = cwm.as_env(EXAMPLES / "cartpole_cwm.py", env="CartPole-v1").unwrapped
    try:
        with pytest.raises(gym.error.ResetNeeded):
            env.step(0)
    finally:
        env.close()
