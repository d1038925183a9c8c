"""Environment facts are read from the installed instance: numbers and names, never the model file."""

from __future__ import annotations

import re
import warnings

import pytest

from cwm.envs.facts import environment_facts, facts_text, instance_parameters, version_note
from cwm.envs.registry import BENCHMARK, make_env


def rows(name: str, section: str, **kwargs: object) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        facts = environment_facts(name, kwargs or None)
    return dict(next(s for s in facts.sections if s.title == section).rows)


@pytest.mark.parametrize("name", [b.name for b in BENCHMARK if b.needs == "mujoco"])
def test_mujoco_facts_match_the_model(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(name)
        text = facts_text(name)
    u = env.unwrapped
    m = u.model
    sim = rows(name, "Simulation")
    assert float(sim["timestep (s)"]) == m.opt.timestep
    assert int(sim["frame_skip"]) == u.frame_skip
    assert float(sim["dt = timestep * frame_skip (s)"]) == pytest.approx(u.dt)
    assert sim["integrator"] in ("EULER", "RK4", "IMPLICIT", "IMPLICITFAST")
    bodies = rows(name, "Bodies")
    assert len(bodies) == m.nbody
    for i in range(1, m.nbody):
        mass = float(re.search(r"mass ([^,]+),", list(bodies.values())[i]).group(1))
        assert mass == pytest.approx(float(m.body_mass[i]), rel=1e-9)
    joints = rows(name, "Joints")
    assert len(joints) == m.njnt
    assert len(rows(name, "Actuators")) == m.nu
    assert "<mujoco" not in text and "<body" not in text and ".xml" not in text
    env.close()


def test_hopper_joint_and_actuator_facts():
    joints = rows("Hopper-v4", "Joints")
    assert joints["foot_joint"].startswith("hinge, qpos index 5, qvel index 5")
    assert "range [-0.7853981634, 0.7853981634], damping 1, armature 1" in joints["foot_joint"]
    assert "range unlimited" in joints["rootx"]
    actuator = rows("Hopper-v4", "Actuators")["actuator0"]
    assert actuator == "action index 0, joint thigh_joint, gear 200, ctrl range [-1, 1]"
    params = rows("Hopper-v4", "Parameters of the instance")
    assert params["_ctrl_cost_weight"] == "0.001" and params["_healthy_z_range"] == "[0.7, inf]"


def test_classic_control_constants():
    cp = rows("CartPole-v1", "Parameters of the instance")
    assert cp["gravity"] == "9.8" and cp["tau"] == "0.02" and cp["x_threshold"] == "2.4"
    assert cp["kinematics_integrator"] == "euler"
    for hidden in ("state", "screen_width", "isopen", "steps_beyond_terminated", "render_mode"):
        assert hidden not in cp
    acro = rows("Acrobot-v1", "Parameters of the instance")  # class-level constants count too
    assert acro["LINK_LENGTH_1"] == "1" and acro["AVAIL_TORQUE"] == "[-1, 0, 1]" and acro["book_or_nips"] == "book"
    assert rows("Pendulum-v1", "Spaces")["time limit (truncation)"] == "200 steps"


def test_facts_follow_env_kwargs():
    assert rows("CartPole-v1", "Parameters of the instance")["_sutton_barto_reward"] == "False"
    assert rows("CartPole-v1", "Parameters of the instance", sutton_barto_reward=True)["_sutton_barto_reward"] == "True"
    facts = environment_facts("CartPole-v1", {"sutton_barto_reward": True})
    assert facts.env_kwargs == {"sutton_barto_reward": True} and "made with" in facts.render()


def test_long_tables_and_objects_are_left_out():
    env = make_env("Taxi-v3")
    params = dict(instance_parameters(env.unwrapped))
    env.close()
    assert "P" not in params and "initial_state_distrib" not in params and "desc" not in params
    assert params["locs"] == "[[0, 0], [0, 4], [4, 0], [4, 3]]"


def test_version_note_when_installed_differs_from_recorded():
    assert version_note("CartPole-v1") is None and version_note("Hopper-v4") is None
    note = version_note("Pusher-v4")
    assert note is not None and "Pusher-v4" in note and "Pusher-v5" in note and "DIFFER" in note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = facts_text("Pusher-v4")
    assert "**Version note:**" in text and "installed `Pusher-v5`" in text
    assert "Taxi-v3" in (version_note("Taxi-v3") or "")
