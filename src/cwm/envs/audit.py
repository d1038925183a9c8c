"""Which recorded transitions can the real environment produce? (``cwm audit``)

Some recorded transitions do not follow from their recorded state: on InvertedPendulum, InvertedDoublePendulum,
HalfCheetah, Swimmer and Reacher the first step of every trajectory was taken from somewhere other than the
observation it records (apparently the official collector planned on a copy of the env that shared MuJoCo state). No
model can get those right, so showing them as feedback wastes LLM calls and counting them hides how close a
program is. The audit replays each transition with the real simulator put into the recorded state and
judges the real env's own output with the scorer (``score_transition``, ``cwm`` metric: one comparison for
programs and audit). Verdicts:

* consistent: the real env reproduces next state, reward and done within the scorer's tolerance;
* inconsistent: it does not, and the recorded observation fixes everything the step reads;
* unknown: the observation does not fix the state (Blackjack's deck, clipped velocities, MuJoCo's solver
  warm start under an active constraint, body positions left over from the previous step), or no way to
  set the state is registered for the env.

A verdict is only ever "inconsistent" when it is proven: a replay mismatch where part of the state is hidden
is "unknown". How each environment is put into a recorded state, and why that is or is not the whole state,
is registered below (``register``); an unregistered env audits as all unknown.

MuJoCo replays run trajectory by trajectory. After a consistent transition the simulator is carried on to
the next one instead of being set from the observation, so the solver warm start and the body positions
the next reward reads are the ones the recording had; a trajectory's first step runs right after
``reset``, where they are what a fresh env holds. Positions the observation drops (x, and y for the 3-D
walkers) are set to 0: the floor is an infinite plane, so the dynamics and the rewards (which use x
differences) do not depend on them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cwm.envs.dataset import CONSISTENT, INCONSISTENT, UNKNOWN, Dataset
from cwm.envs.registry import make_env, resolve_gym_id
from cwm.sandbox.scoring import score_transition, wire_prediction


@dataclass
class Placement:
    """How a replay put the env into transition ``i``'s state."""

    determined: bool
    """The recorded observation (plus a fresh reset or a carried simulator) fixes everything the step reads."""
    reason: str = ""
    """Why not, when not determined."""


class Replayer:
    """Puts one kind of real environment into a recorded state and steps it. Subclasses per env family."""

    note = ""
    carries = False
    """Whether a consistent replay's simulator is carried on to the trajectory's next transition."""

    def start(self, u: Any) -> None:
        """Called at the start of every trajectory replay."""

    def place(self, u: Any, ds: Dataset, i: int, fresh: bool, carried: bool) -> Placement:
        """Put ``u`` into transition ``i``'s recorded state. ``fresh``: right after ``start`` at a
        trajectory's first step; ``carried``: the simulator holds the previous, consistent replay."""
        raise NotImplementedError

    def undecided(self, u: Any, ds: Dataset, i: int, placement: Placement, carried: bool, fresh: bool,
                  before: Any) -> str | None:
        """After a mismatch from a determined state: why it still cannot be called inconsistent, if so."""
        return None

    def snapshot(self, u: Any) -> Any:
        """State saved before each step, handed to ``undecided`` after a mismatch."""
        return None


@dataclass
class Undecidable(Replayer):
    """An env whose observations never fix its state: every transition is unknown."""

    why: str

    def place(self, u: Any, ds: Dataset, i: int, fresh: bool, carried: bool) -> Placement:
        return Placement(False, self.why)


@dataclass
class AttributeReplayer(Replayer):
    """Classic control and toy text: the state lives in plain attributes that the observation fixes."""

    setter: Callable[[Any, Any], None]
    note: str = ""

    def place(self, u: Any, ds: Dataset, i: int, fresh: bool, carried: bool) -> Placement:
        self.setter(u, ds.state_value(i))
        return Placement(True)


@dataclass
class MujocoReplayer(Replayer):
    """A MuJoCo env: ``qpos``/``qvel`` from the observation, the rest carried or fresh (module docstring)."""

    qpos_qvel: Callable[[npt.NDArray[np.float64]], tuple[list[float], list[float]]]
    note: str = ""
    hidden_qpos: int = 0
    """Leading ``qpos`` entries the observation drops (x, or x and y): set to 0, or kept when carried."""
    velocity_clip: float | None = None
    """The observation clips ``qvel`` to this bound; a clipped value hides the real velocity."""
    stale_kinematics: bool = False
    """The reward reads body positions computed before the last integration of the previous step; set
    from an observation mid-trajectory they are fresh instead, so they are hidden state there."""
    constraints_decided: bool = True
    """The recording's constraint solver (contacts, joint limits) matches this MuJoCo's, as the replay of
    the dataset shows; when False, only a trajectory's first, constraint-free step can be inconsistent."""
    after_set: Callable[[Any, npt.NDArray[np.float64]], None] | None = None
    carries = True

    def start(self, u: Any) -> None:
        u.reset(seed=0)

    def place(self, u: Any, ds: Dataset, i: int, fresh: bool, carried: bool) -> Placement:
        s = np.asarray(ds.state[i], dtype=np.float64)
        q, v = self.qpos_qvel(s)
        qpos, qvel = np.array(q, dtype=np.float64), np.array(v, dtype=np.float64)
        if carried:
            # Re-sync to the recorded values so that rounding never accumulates along a trajectory, but
            # without mj_forward: the warm start and the previous step's body positions stay as they are,
            # and so do what the observation hides (x, clipped velocities).
            keep_v = np.abs(qvel) >= self.velocity_clip if self.velocity_clip is not None else np.zeros_like(qvel, bool)
            u.data.qpos[self.hidden_qpos:] = qpos[self.hidden_qpos:]
            u.data.qvel[~keep_v] = qvel[~keep_v]
            if self.after_set is not None:
                self.after_set(u, s)
            return Placement(True)
        u.set_state(qpos, qvel)
        if self.after_set is not None:
            self.after_set(u, s)
        if self.velocity_clip is not None and np.any(np.abs(qvel) >= self.velocity_clip):
            return Placement(False, "a velocity is clipped in the observation")
        if self.stale_kinematics and not fresh:
            return Placement(False, "the reward reads body positions from the previous step")
        return Placement(True)

    def snapshot(self, u: Any) -> Any:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(u.model, spec))
        mujoco.mj_getState(u.model, u.data, buf, spec)
        return buf

    def undecided(self, u: Any, ds: Dataset, i: int, placement: Placement, carried: bool, fresh: bool,
                  before: Any) -> str | None:
        constrained = _constraint_active(u, before, ds.action_value(i))
        if not self.constraints_decided and (constrained or not fresh):
            # Only a trajectory's first, constraint-free step is judged: elsewhere a small drift of the
            # recording's MuJoCo cannot be told from an inconsistency.
            return "recorded with a MuJoCo whose constraint solutions differ from this one"
        if constrained and not (carried or fresh):
            return "a constraint was active and the solver warm start is not in the observation"
        return None


def _constraint_active(u: Any, before: Any, action: Any) -> bool:
    """Whether any contact or joint limit was active during the step that started from ``before``."""
    import mujoco

    data = mujoco.MjData(u.model)
    mujoco.mj_setState(u.model, data, before, mujoco.mjtState.mjSTATE_INTEGRATION)
    data.ctrl[:] = np.asarray(action, dtype=np.float64).reshape(-1)[: u.model.nu]
    for _ in range(int(u.frame_skip)):
        mujoco.mj_step(u.model, data)
        if data.nefc > 0:
            return True
    return False


_REPLAYERS: dict[str, Replayer] = {}


def register(gym_ids: tuple[str, ...] | str, replayer: Replayer) -> None:
    """Teach the audit how to set the state of these gymnasium ids (the last registration wins)."""
    for gym_id in (gym_ids,) if isinstance(gym_ids, str) else gym_ids:
        _REPLAYERS[gym_id.lower()] = replayer


def replayer_for(gym_id: str) -> Replayer | None:
    return _REPLAYERS.get(gym_id.lower())


def _cartpole(u: Any, s: Any) -> None:
    u.state = np.array(s, dtype=np.float64)
    u.steps_beyond_terminated = None  # no leftover "already terminated" from the previous replay


def _plain_state(u: Any, s: Any) -> None:
    u.state = np.array(s, dtype=np.float64)


def _pendulum(u: Any, s: Any) -> None:
    u.state = np.array([math.atan2(s[1], s[0]), s[2]], dtype=np.float64)


def _acrobot(u: Any, s: Any) -> None:
    u.state = np.array([math.atan2(s[1], s[0]), math.atan2(s[3], s[2]), s[4], s[5]], dtype=np.float64)


def _discrete(u: Any, s: Any) -> None:
    u.s = int(s)


def _reacher_fingertip(u: Any, s: npt.NDArray[np.float64]) -> None:
    # The reward reads fingertip - target from body positions before the step; the observation records
    # exactly that vector (obs[8:11]), which after a real step is one integration older than qpos.
    u.data.body("fingertip").xpos[:] = u.data.body("target").xpos + s[8:11]


_FLOAT_OBS = "float32 observation of a float64 state: the scorer's tolerance covers the rounding"
register("CartPole-v1", AttributeReplayer(_cartpole, f"state = observation ({_FLOAT_OBS})"))
register(("MountainCar-v0", "MountainCarContinuous-v0"),
         AttributeReplayer(_plain_state, f"state = observation ({_FLOAT_OBS})"))
register("Pendulum-v1", AttributeReplayer(_pendulum, "angle = atan2(sin, cos), velocity as observed"))
register("Acrobot-v1", AttributeReplayer(_acrobot, "both angles from their cos/sin, velocities as observed"))
register(("Taxi-v3", "Taxi-v4"), AttributeReplayer(_discrete, "the observation is the state index"))
register(("CliffWalking-v0", "CliffWalking-v1"), AttributeReplayer(_discrete, "the observation is the state index"))
register("Blackjack-v1", Undecidable("the observation (sums and the dealer's card) does not hold the cards "
                                     "to come; the draw is random"))
register(("Pusher-v4", "Pusher-v5"), Undecidable("the observation omits the object's velocity (and the data "
                                                 "were recorded on Pusher-v4, whose dynamics differ from v5)"))
register("InvertedPendulum-v4", MujocoReplayer(lambda s: (list(s[:2]), list(s[2:])),
                                               "the observation is qpos and qvel"))
register("InvertedDoublePendulum-v4", MujocoReplayer(
    lambda s: ([s[0], math.atan2(s[1], s[3]), math.atan2(s[2], s[4])], list(s[5:8])),
    "qpos from cart x and the angles' sin/cos, qvel as observed (clipped to ±10: unknown there); the "
    "constraint forces in the observation are derived", velocity_clip=10.0))
register("Reacher-v4", MujocoReplayer(
    lambda s: ([math.atan2(s[2], s[0]), math.atan2(s[3], s[1]), s[4], s[5]], [s[6], s[7], 0.0, 0.0]),
    "arm angles from cos/sin, target position and arm velocities as observed, target at rest; the "
    "fingertip-target vector the reward reads is restored from the observation",
    after_set=_reacher_fingertip))
register("HalfCheetah-v4", MujocoReplayer(
    lambda s: ([0.0, *s[:8]], list(s[8:])),
    "qpos without x, qvel; ground contacts are decided: every later step of every trajectory, contacts "
    "included, replays on this MuJoCo", hidden_qpos=1))
register("Swimmer-v4", MujocoReplayer(lambda s: ([0.0, 0.0, *s[:3]], list(s[3:])),
                                      "qpos without x and y, qvel; no contacts", hidden_qpos=2))
_OLD_SOLVER = ("recorded with gymnasium 0.29.1's MuJoCo, whose contact solutions differ from this one (by ~1e-2 "
               "on most contact steps): only a first, contact-free step can be judged inconsistent")
register("Hopper-v4", MujocoReplayer(lambda s: ([0.0, *s[:5]], list(s[5:])),
                                     f"qpos without x, qvel clipped to ±10; {_OLD_SOLVER}", hidden_qpos=1,
                                     velocity_clip=10.0, constraints_decided=False))
register("Walker2d-v4", MujocoReplayer(lambda s: ([0.0, *s[:8]], list(s[8:])),
                                       "qpos without x, qvel clipped to ±10 (carried through clipped steps); "
                                       "ground contacts are decided: every later step replays on this MuJoCo",
                                       hidden_qpos=1, velocity_clip=10.0))
register("Ant-v4", MujocoReplayer(lambda s: ([0.0, 0.0, *s[:13]], list(s[13:27])),
                                  f"qpos without x and y, qvel; the reward reads the torso's previous "
                                  f"position; {_OLD_SOLVER}", hidden_qpos=2, stale_kinematics=True,
                                  constraints_decided=False))
register("Humanoid-v4", MujocoReplayer(lambda s: ([0.0, 0.0, *s[:22]], list(s[22:45])),
                                       "qpos without x and y, qvel (the rest of the observation is derived); "
                                       "the reward reads the previous mass centre; recorded by cwm collect on "
                                       "this MuJoCo", hidden_qpos=2, stale_kinematics=True))
register("HumanoidStandup-v4", MujocoReplayer(lambda s: ([0.0, 0.0, *s[:22]], list(s[22:45])),
                                              "qpos without x and y, qvel (the rest is derived); recorded by "
                                              "cwm collect on this MuJoCo", hidden_qpos=2))


@dataclass
class AuditResult:
    """The verdict on every transition of one dataset, and the figures ``cwm audit`` prints."""

    env_id: str
    gym_id: str
    consistent: npt.NDArray[np.int8]
    ceiling_credit: npt.NDArray[np.float32]
    unknown_reasons: dict[str, int] = field(default_factory=dict)
    note: str = ""
    elapsed_s: float = 0.0
    simulator: dict[str, str | None] = field(default_factory=dict)
    """Versions of the replaying simulator, kept in the dataset's ``meta["audit"]``."""

    def counts(self) -> dict[str, int]:
        return {"consistent": int((self.consistent == CONSISTENT).sum()),
                "inconsistent": int((self.consistent == INCONSISTENT).sum()),
                "unknown": int((self.consistent == UNKNOWN).sum())}

    def apply(self, ds: Dataset) -> Dataset:
        """A copy of ``ds`` carrying these flags (the other arrays are shared, unchanged)."""
        meta = {**ds.meta, "audit": {"by": "cwm audit", **self.simulator}}
        return dataclasses.replace(ds, consistent=self.consistent.copy(), ceiling_credit=self.ceiling_credit.copy(),
                                   meta=meta)

    def to_json(self, ds: Dataset) -> dict[str, Any]:
        flagged = self.apply(ds)
        inconsistent = np.flatnonzero(self.consistent == INCONSISTENT)
        return {
            "env_id": self.env_id, "gym_id": self.gym_id, "transitions": len(ds), **self.counts(),
            "ceiling": flagged.ceiling(), "strict_ceiling": flagged.strict_ceiling(),
            "inconsistent_steps": dict(sorted(Counter(int(ds.step[i]) for i in inconsistent).items())),
            "unknown_reasons": self.unknown_reasons, "note": self.note, "elapsed_s": round(self.elapsed_s, 3),
        }


def audit(ds: Dataset) -> AuditResult:
    """Replay every transition of ``ds`` with the real environment (see the module docstring)."""
    t0 = time.perf_counter()
    gym_id = str(ds.meta.get("gym_id") or resolve_gym_id(ds.env_id))
    n = len(ds)
    flags = np.full(n, UNKNOWN, dtype=np.int8)
    credit = np.full(n, np.nan, dtype=np.float32)
    reasons: Counter[str] = Counter()
    rep = replayer_for(gym_id)
    if rep is None or isinstance(rep, Undecidable):
        why = rep.why if isinstance(rep, Undecidable) else f"no way to set the state of {gym_id} is registered"
        return AuditResult(ds.env_id, gym_id, flags, credit, {why: n}, why, time.perf_counter() - t0,
                           _simulator())
    kwargs = ds.meta.get("env_kwargs")
    env = make_env(gym_id, **(kwargs if isinstance(kwargs, dict) else {}))
    try:
        u = env.unwrapped
        prev: int | None = None
        carry = False
        for i in (int(k) for k in np.lexsort((ds.step, ds.trajectory))):
            follows = prev is not None and ds.trajectory[i] == ds.trajectory[prev] and ds.step[i] == ds.step[prev] + 1
            if not follows:
                rep.start(u)
                carry = False
            fresh = not follows and int(ds.step[i]) == 0
            carried = carry and rep.carries
            placement = rep.place(u, ds, i, fresh, carried)
            before = rep.snapshot(u)
            prev = i
            try:
                obs, reward, terminated, _, _ = u.step(ds.action_value(i))
            except Exception as exc:  # a simulator refusing the state is an unknown verdict, not a crash
                reasons[f"the env raised {type(exc).__name__}"] += 1
                carry = False
                continue
            ts = score_transition(ds, i, wire_prediction(obs, reward, terminated))
            carry = ts.correct and not bool(ds.terminated[i])
            if ts.correct:
                flags[i], credit[i] = CONSISTENT, 1.0
                continue
            undecided = placement.reason if not placement.determined else \
                rep.undecided(u, ds, i, placement, carried, fresh, before)
            if undecided:
                reasons[undecided] += 1
            else:
                flags[i], credit[i] = INCONSISTENT, ts.credit
    finally:
        env.close()
    return AuditResult(ds.env_id, gym_id, flags, credit, dict(reasons), rep.note, time.perf_counter() - t0,
                       _simulator())


def _simulator() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("gymnasium", "mujoco"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def audit_env(env_id: str, dataset: str | None = None) -> tuple[Dataset, AuditResult]:
    """Load ``env_id``'s dataset (bundled, or ``dataset``) and audit it."""
    from cwm.envs.dataset import load_for_env

    ds = load_for_env(env_id, dataset)
    return ds, audit(ds)
