"""A hand-written Code World Model of CartPole-v1, in the paper's contract.

``cwm check examples/cartpole_cwm.py --env CartPole-v1`` scores it against the recorded transitions.
It re-derives the dynamics from the environment's documentation (Euler integration, 0.02 s steps),
using float32 states the way the environment reports them.
"""

import math

import numpy as np


class Environment:
    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    length = 0.5  # half the pole's length
    force_mag = 10.0
    tau = 0.02
    theta_limit = 12 * 2 * math.pi / 360
    x_limit = 2.4

    def __init__(self):
        self.state = np.zeros(4, dtype=np.float64)

    def set_state(self, state):
        self.state = np.asarray(state, dtype=np.float64)

    def step(self, action):
        x, x_dot, theta, theta_dot = self.state
        force = self.force_mag if action == 1 else -self.force_mag
        total_mass = self.masscart + self.masspole
        polemass_length = self.masspole * self.length
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * x_acc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * theta_acc
        self.state = np.array([x, x_dot, theta, theta_dot], dtype=np.float32)
        done = bool(abs(x) > self.x_limit or abs(theta) > self.theta_limit)
        return self.state, 1.0, done
