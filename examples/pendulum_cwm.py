"""A hand-written Code World Model of Pendulum-v1, with a batched ``step_batch`` for the planner.

``cwm check examples/pendulum_cwm.py --env Pendulum-v1`` scores it; ``cwm plan --env Pendulum-v1
--model examples/pendulum_cwm.py`` plans with it (CEM uses ``step_batch`` once it agrees with ``step``).
"""

import numpy as np

G, M, L, DT = 10.0, 1.0, 1.0, 0.05
MAX_SPEED, MAX_TORQUE = 8.0, 2.0


def _angle_normalize(x):
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class Environment:
    def __init__(self):
        self.th = 0.0
        self.thdot = 0.0

    def set_state(self, state):
        cos, sin, thdot = (float(v) for v in state)
        self.th = float(np.arctan2(sin, cos))
        self.thdot = thdot

    def step(self, action):
        u = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -MAX_TORQUE, MAX_TORQUE))
        th, thdot = self.th, self.thdot
        cost = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        newthdot = thdot + (3 * G / (2 * L) * np.sin(th) + 3.0 / (M * L**2) * u) * DT
        newthdot = float(np.clip(newthdot, -MAX_SPEED, MAX_SPEED))
        newth = th + newthdot * DT
        self.th, self.thdot = newth, newthdot
        obs = np.array([np.cos(newth), np.sin(newth), newthdot], dtype=np.float32)
        return obs, -float(cost), False

    def step_batch(self, states, actions):
        states = np.asarray(states, dtype=np.float64)
        th = np.arctan2(states[:, 1], states[:, 0])
        thdot = states[:, 2]
        u = np.clip(np.asarray(actions, dtype=np.float64).reshape(len(states), -1)[:, 0], -MAX_TORQUE, MAX_TORQUE)
        cost = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        newthdot = np.clip(thdot + (3 * G / (2 * L) * np.sin(th) + 3.0 / (M * L**2) * u) * DT, -MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        obs = np.stack([np.cos(newth), np.sin(newth), newthdot], axis=1).astype(np.float32)
        return obs, -cost, np.zeros(len(states), dtype=bool)
