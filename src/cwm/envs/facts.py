"""Environment facts: constants introspected from the installed environment, for prompts.

A description says what the dynamics are; a model that must reproduce them to the last digit also needs
the constants (a pole's length, a body's mass, the integrator's time step). Asking an LLM to recall them
invites guesses, so cwm reads them from the environment instance itself:

* every environment: its spaces and the numeric parameters of the unwrapped instance (public and
  single-underscore attributes holding numbers, short strings, or short sequences of numbers: gravity,
  ``tau``, thresholds, reward weights, ...), skipping rendering state and the current episode state;
* MuJoCo environments, in addition, from ``env.unwrapped.model``: timestep, frame skip, ``dt``,
  integrator, gravity, per-body mass, inertia and position in its parent, per-joint type, range,
  damping, armature and stiffness, per-actuator joint, gear and control range.

Only numbers and names leave the environment, never its model file. Introspectors are registered in
``INTROSPECTORS`` (a predicate on the unwrapped instance and a function adding sections), so support for
another simulator is one registration. When the installed id differs from the recorded one (Pusher-v4
data scored on Pusher-v5) the facts open with a note saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cwm.envs.registry import benchmark_env, make_env, resolve_gym_id

MAX_SEQUENCE = 32
"""Sequences longer than this are left out (transition tables, start distributions, maps)."""
_SKIP_PARTS = ("render", "screen", "clock", "isopen", "window", "img", "cell_size", "metadata", "spec",
               "orientation", "arrow", "fig", "camera", "width", "height", "np_random")
_SKIP_NAMES = frozenset({"state", "s", "lastaction", "last_u", "steps_beyond_terminated", "dealer", "player",
                         "fickle_step", "goal", "cylinder_pos", "goal_pos", "data", "model"})


@dataclass(frozen=True)
class FactSection:
    """A titled list of (name, value) lines."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EnvFacts:
    """The facts of one environment, as introspected from the installed instance."""

    env_id: str
    gym_id: str
    env_kwargs: dict[str, Any]
    version_note: str | None
    sections: list[FactSection]

    def render(self) -> str:
        """Markdown for a prompt: a heading, the version note if any, then one list per section."""
        made = f" made with {self.env_kwargs}" if self.env_kwargs else ""
        out = ["## Environment facts",
               f"Read from the installed `{self.gym_id}` instance{made} (numbers as the simulator holds them)."]
        if self.version_note:
            out.append(f"**Version note:** {self.version_note}")
        for sec in self.sections:
            if sec.rows:
                out.append(f"### {sec.title}\n" + "\n".join(f"- {k}: {v}" for k, v in sec.rows))
        return "\n\n".join(out)


def _num(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    v = float(x)
    return "inf" if v == np.inf else "-inf" if v == -np.inf else f"{v:.10g}"


def _seq(values: Any) -> str:
    arr = np.asarray(values)
    if arr.ndim == 0:
        return _num(arr.item())
    return "[" + ", ".join(_seq(v) for v in arr) + "]"


def _value_text(value: Any) -> str | None:
    """The text of a fact-worthy value, or None when the value is not one (objects, long tables)."""
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return _num(value)
    if isinstance(value, str):
        return value if len(value) <= 40 else None
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged
            return None
        if arr.size == 0 or arr.size > MAX_SEQUENCE or arr.dtype.kind not in "biuf":
            return None
        return _seq(arr)
    return None


def _skipped(name: str) -> bool:
    low = name.lower()
    return name.startswith("__") or name in _SKIP_NAMES or any(p in low for p in _SKIP_PARTS)


def instance_parameters(u: Any) -> list[tuple[str, str]]:
    """Numeric parameters of an unwrapped env: its class constants, then its instance attributes."""
    rows: dict[str, str] = {}
    for name, value in vars(type(u)).items():
        if not _skipped(name) and not callable(value) and not isinstance(value, (property, staticmethod,
                                                                                classmethod)):
            text = _value_text(value)
            if text is not None:
                rows[name] = text
    for name, value in vars(u).items():
        if not _skipped(name):
            text = _value_text(value)
            if text is not None:
                rows[name] = text
    return list(rows.items())


def _space_text(space: Any) -> str:
    return " ".join(str(space).split())


def _generic(env: Any, u: Any) -> list[FactSection]:
    spaces = [("observation space", _space_text(env.observation_space)),
              ("action space", _space_text(env.action_space))]
    if env.spec is not None and env.spec.max_episode_steps:
        spaces.append(("time limit (truncation)", f"{env.spec.max_episode_steps} steps"))
    return [FactSection("Spaces", spaces), FactSection("Parameters of the instance", instance_parameters(u))]


def _is_mujoco(u: Any) -> bool:
    return type(getattr(u, "model", None)).__name__ == "MjModel" and hasattr(u, "frame_skip")


def _mujoco(env: Any, u: Any) -> list[FactSection]:
    import mujoco

    m = u.model
    sim = [("timestep (s)", _num(m.opt.timestep)), ("frame_skip", _num(u.frame_skip)),
           ("dt = timestep * frame_skip (s)", _num(m.opt.timestep * u.frame_skip)),
           ("integrator", mujoco.mjtIntegrator(int(m.opt.integrator)).name.removeprefix("mjINT_")),
           ("gravity", _seq(m.opt.gravity)), ("nq (qpos size)", _num(m.nq)), ("nv (qvel size)", _num(m.nv)),
           ("nu (controls)", _num(m.nu))]
    bodies = []
    for i in range(m.nbody):
        parent = m.body(int(m.body_parentid[i])).name
        bodies.append((m.body(i).name or f"body{i}",
                       f"mass {_num(m.body_mass[i])}, inertia (principal) {_seq(m.body_inertia[i])}, "
                       f"parent {parent}, pos in parent {_seq(m.body_pos[i])}"))
    joints = []
    for j in range(m.njnt):
        dof = int(m.jnt_dofadr[j])
        kind = mujoco.mjtJoint(int(m.jnt_type[j])).name.removeprefix("mjJNT_").lower()
        rng = _seq(m.jnt_range[j]) if m.jnt_limited[j] else "unlimited"
        joints.append((m.joint(j).name or f"joint{j}",
                       f"{kind}, qpos index {int(m.jnt_qposadr[j])}, qvel index {dof}, body "
                       f"{m.body(int(m.jnt_bodyid[j])).name}, range {rng}, damping {_num(m.dof_damping[dof])}, "
                       f"armature {_num(m.dof_armature[dof])}, stiffness {_num(m.jnt_stiffness[j])}"))
    acts = []
    for a in range(m.nu):
        trn = int(m.actuator_trnid[a][0])
        target = m.joint(trn).name if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT) else str(trn)
        ctrl = _seq(m.actuator_ctrlrange[a]) if m.actuator_ctrllimited[a] else "unlimited"
        acts.append((m.actuator(a).name or f"actuator{a}",
                     f"action index {a}, joint {target}, gear {_num(m.actuator_gear[a][0])}, ctrl range {ctrl}"))
    return [FactSection("Simulation", sim), FactSection("Bodies", bodies), FactSection("Joints", joints),
            FactSection("Actuators", acts)]


Introspector = Callable[[Any, Any], list[FactSection]]
INTROSPECTORS: list[tuple[Callable[[Any], bool], Introspector]] = [(_is_mujoco, _mujoco)]
"""(applies to the unwrapped instance, sections it adds after the generic ones); first match wins."""


def version_note(env_id: str) -> str | None:
    """What the facts are of, when the installed id is not the recorded one."""
    bench = benchmark_env(env_id)
    if bench is None or bench.gym_id == bench.name:
        return None
    return (f"the recorded data are of {bench.name}; these facts are of the installed {bench.gym_id}: "
            f"{bench.dynamics_note}.")


def environment_facts(env_id: str, env_kwargs: dict[str, Any] | None = None) -> EnvFacts:
    """Introspect ``env_id`` (instantiated with ``env_kwargs``) into typed facts."""
    gym_id = resolve_gym_id(env_id)
    env = make_env(env_id, **(env_kwargs or {}))
    try:
        u = env.unwrapped
        sections = _generic(env, u)
        for applies, introspect in INTROSPECTORS:
            if applies(u):
                sections.extend(introspect(env, u))
                break
    finally:
        env.close()
    bench = benchmark_env(env_id)
    return EnvFacts(bench.name if bench else env_id, gym_id, dict(env_kwargs or {}), version_note(env_id), sections)


def facts_text(env_id: str, env_kwargs: dict[str, Any] | None = None) -> str:
    return environment_facts(env_id, env_kwargs).render()

