"""A tool-using Code World Model of InvertedPendulum-v4: its own MJCF, simulated with the mujoco library.

Run with the library allowed (the environment's own package and XML stay out of reach):

    cwm check examples/inverted_pendulum_mujoco_cwm.py --env InvertedPendulum-v4 --allow-import mujoco

The model below is written from the environment's published facts (a cart on a 1 m rail driven by a
motor of gear 100 clipped to [-3, 3], a 0.6 m capsule pole of radius 0.049 on a hinge, joint damping 1,
RK4 with a 0.02 s timestep, two substeps per action), not copied from the environment's files.
"""

import mujoco
import mujoco.rollout
import numpy as np

MJCF = """
<mujoco model="cart-pole written for cwm">
  <compiler inertiafromgeom="true"/>
  <option gravity="0 0 -9.81" integrator="RK4" timestep="0.02"/>
  <default>
    <joint damping="1" limited="true"/>
    <geom contype="0" conaffinity="0"/>
  </default>
  <worldbody>
    <body name="cart">
      <joint name="slide" type="slide" axis="1 0 0" range="-1 1"/>
      <geom type="capsule" size="0.1 0.1" quat="0.707 0 0.707 0"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0" range="-90 90"/>
        <geom type="capsule" fromto="0 0 0 0.001 0 0.6" size="0.049 0.3"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slide" gear="100" ctrllimited="true" ctrlrange="-3 3"/>
  </actuator>
</mujoco>
"""
FRAME_SKIP = 2


class Environment:
    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(MJCF)
        self.data = mujoco.MjData(self.model)
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.state_size = mujoco.mj_stateSize(self.model, spec)
        self.qpos_at = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_TIME)  # time comes first

    def set_state(self, state):
        s = np.asarray(state, dtype=np.float64)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = s[:2]
        self.data.qvel[:] = s[2:]
        mujoco.mj_forward(self.model, self.data)

    def step(self, action):
        self.data.ctrl[:] = np.asarray(action, dtype=np.float64).reshape(-1)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        obs = np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)
        done = bool(not np.isfinite(obs).all() or abs(obs[1]) > 0.2)
        return obs, 1.0, done

    def step_batch(self, states, actions):
        """Many (state, action) pairs at once, simulated in C by mujoco.rollout on one thread."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, 4)
        n, nq = s.shape[0], self.model.nq
        initial = np.zeros((n, self.state_size))
        initial[:, self.qpos_at:self.qpos_at + nq] = s[:, :nq]
        initial[:, self.qpos_at + nq:self.qpos_at + 2 * nq] = s[:, nq:]
        control = np.repeat(np.asarray(actions, dtype=np.float64).reshape(n, 1, -1), FRAME_SKIP, axis=1)
        out, _ = mujoco.rollout.rollout(self.model, self.data, initial, control)
        last = out[:, -1, self.qpos_at:self.qpos_at + 2 * nq]
        done = ~np.isfinite(last).all(axis=1) | (np.abs(last[:, 1]) > 0.2)
        return last, np.ones(n), done
