"""Reference Code World Models built on the real gymnasium environments.

Each is a program in the paper's contract whose ``set_state`` writes the recorded observation into the
real simulator and whose ``step`` steps it. They prove the scorer's ceiling: a perfect model must score
1.0. They run in the sandbox like any candidate (gymnasium is preloaded in the fork-server).
"""

from __future__ import annotations

TEMPLATE = '''
import math
import numpy as np
import gymnasium as gym

class Environment:
    def __init__(self):
        self.env = gym.make({gym_id!r}).unwrapped
        self.env.reset(seed=0)

    def set_state(self, s):
        env = self.env
        if hasattr(env, "steps_beyond_terminated"):
            env.steps_beyond_terminated = None  # CartPole: no leftover 'already terminated' state
{set_state}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), bool(terminated)
'''


def _mj(qpos: str, qvel: str) -> str:
    return f"        s = np.asarray(s, dtype=np.float64)\n        env.set_state(np.array({qpos}), np.array({qvel}))"


SET_STATE = {
    "CartPole-v1": "        env.state = np.array(s, dtype=np.float64)",
    "MountainCar-v0": "        env.state = np.array(s, dtype=np.float64)",
    "Pendulum-v1": "        env.state = np.array([math.atan2(s[1], s[0]), s[2]], dtype=np.float64)",
    "Acrobot-v1": "        env.state = np.array([math.atan2(s[1], s[0]), math.atan2(s[3], s[2]), s[4], s[5]],"
                  " dtype=np.float64)",
    "Taxi-v3": "        env.s = int(s)",
    "CliffWalking-v0": "        env.s = int(s)",
    "InvertedPendulum-v4": _mj("s[:2]", "s[2:]"),
    "InvertedDoublePendulum-v4": _mj("[s[0], math.atan2(s[1], s[3]), math.atan2(s[2], s[4])]", "s[5:8]"),
    "Reacher-v4": _mj("[math.atan2(s[2], s[0]), math.atan2(s[3], s[1]), s[4], s[5]]", "[s[6], s[7], 0, 0]"),
    "HalfCheetah-v4": _mj("[0.0, *s[:8]]", "s[8:]"),
    "Hopper-v4": _mj("[0.0, *s[:5]]", "s[5:]"),
    "Walker2d-v4": _mj("[0.0, *s[:8]]", "s[8:]"),
    "Swimmer-v4": _mj("[0.0, 0.0, *s[:3]]", "s[3:]"),
    "Ant-v4": _mj("[0.0, 0.0, *s[:13]]", "s[13:27]"),
    "Humanoid-v4": _mj("[0.0, 0.0, *s[:22]]", "s[22:45]"),
    "HumanoidStandup-v4": _mj("[0.0, 0.0, *s[:22]]", "s[22:45]"),
}


def reference_program(env_name: str) -> str:
    from cwm.envs.registry import benchmark_env

    bench = benchmark_env(env_name)
    assert bench is not None
    return TEMPLATE.format(gym_id=bench.gym_id, set_state=SET_STATE[env_name])
