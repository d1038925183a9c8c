"""The oracle's rollout value on rewards other than ±1: CliffWalking pays -1 per step and -100 at the
cliff, and rollout seed 2 walks into the cliff twice, so Σ γ^k r_k is pinned where a product and a
quotient of the discount and the reward differ."""

from __future__ import annotations

import random

import pytest

from cwm.envs.registry import make_env
from cwm.planning.models import TrueModel


async def test_the_rollout_value_is_the_discounted_sum_of_its_rewards():
    env = make_env("CliffWalking-v1")
    env.reset(seed=0)
    model = TrueModel(env, seed=0)
    _, r, done, value = await model.simulate(model.root(env, None), 0, 8, 0.5, seed=2)
    check = make_env("CliffWalking-v1")
    check.reset(seed=0)
    u = check.unwrapped
    u.step(0)
    rng, rewards = random.Random(2), []
    for _ in range(8):
        _, rr, term, _, _ = u.step(rng.randrange(4))
        rewards.append(float(rr))
        if term:
            break
    assert rewards == [-1.0] * 6 + [-100.0, -100.0]  # the cliff sends the walker back to the start
    assert (r, done) == (-1.0, False)
    assert value == pytest.approx(sum(0.5**k * x for k, x in enumerate(rewards)))
    assert value == pytest.approx(-(1 + 0.5 + 0.25 + 0.125 + 0.0625 + 0.03125) - 100 * (0.5**6 + 0.5**7))
    assert model.steps == 9
