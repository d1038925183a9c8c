"""Exact save and restore of a gymnasium environment's simulator state, for planning on the real env.

Classic control and toy text keep their state in plain Python/numpy attributes, so a deep copy of the
unwrapped env is an exact clone. MuJoCo keeps it in C structs; ``mj_getState``/``mj_setState`` with
``mjSTATE_INTEGRATION`` restore it bit for bit (``set_state(qpos, qvel)`` does not: the solver's warm
start differs). Box2D worlds cannot be copied at all; those envs report ``None`` and callers fall back.
"""

from __future__ import annotations

import copy
from typing import Any


class Snapshotter:
    """Save/restore for one unwrapped env; ``supported`` is False where no exact method exists."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self._mujoco: Any = None
        self.supported = True
        if hasattr(env, "model") and hasattr(env, "data") and type(env).__module__.startswith(
                "gymnasium.envs.mujoco"):
            import mujoco

            self._mujoco = mujoco
            self._spec = mujoco.mjtState.mjSTATE_INTEGRATION
        elif type(env).__module__.startswith("gymnasium.envs.box2d"):
            self.supported = False

    def save(self) -> Any:
        if self._mujoco is not None:
            import numpy as np

            m = self._mujoco
            buf = np.empty(m.mj_stateSize(self.env.model, self._spec))
            m.mj_getState(self.env.model, self.env.data, buf, self._spec)
            return buf
        if not self.supported:
            raise NotImplementedError(f"{type(self.env).__name__} cannot be snapshotted")
        return {k: v if _static(v) else copy.deepcopy(v) for k, v in vars(self.env).items() if k not in _SKIP}

    def restore(self, snap: Any) -> None:
        if self._mujoco is not None:
            m = self._mujoco
            m.mj_setState(self.env.model, self.env.data, snap, self._spec)
            m.mj_forward(self.env.model, self.env.data)
            return
        for k, v in snap.items():
            setattr(self.env, k, v if _static(v) else copy.deepcopy(v))


_SKIP = {"screen", "clock", "viewer", "renderer", "mujoco_renderer", "_np_random_seed"}


def _static(value: Any) -> bool:
    """Large lookup tables (toy text's transition table ``P``) never change during an episode."""
    return isinstance(value, dict) and len(value) > 100
