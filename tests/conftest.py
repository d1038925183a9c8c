"""Shared fixtures: small real datasets and a sandbox per test (a fork-server starts in ~50 ms)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))

from cwm.envs.dataset import Dataset, load_for_env
from cwm.sandbox import Limits, Sandbox, SandboxConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def cartpole() -> Dataset:
    return load_for_env("CartPole-v1")


@pytest.fixture
def cartpole_small(cartpole: Dataset) -> Dataset:
    """The first two trajectories (42 transitions)."""
    return cartpole.subset(np.flatnonzero(cartpole.trajectory < 2))


@pytest.fixture
def cartpole_code() -> str:
    return (EXAMPLES / "cartpole_cwm.py").read_text(encoding="utf-8")


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    limits = Limits(load_s=5.0, base_s=2.0, per_transition_s=0.02, transition_s=0.5, memory_mb=1024)
    async with Sandbox(SandboxConfig(limits=limits)) as sb:
        yield sb
