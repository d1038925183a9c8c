"""Recorded transitions: the file format, loading with validation, and saving.

Format ``cwm-dataset`` version 2 is one ``.npz`` file (numpy's zip of arrays, loaded with
``allow_pickle=False`` so a dataset can never run code). Arrays, N transitions:

==================  ===================  ==============================================================
``state``           (N, *S) or (N,)      the observation the step started from, in the env's dtype
``action``          (N, *A) or (N,)      the action taken
``next_state``      like ``state``       the observation the step produced
``reward``          (N,) float32         as recorded (the CWMB buffers stored float32)
``terminated``      (N,) bool            the MDP reached a terminal state (a model should say done)
``truncated``       (N,) bool            the episode was cut by a time limit (no model can predict it)
``trajectory``      (N,) int32           0-based trajectory index
``step``            (N,) int32           index of the transition within its trajectory
``consistent``      (N,) int8            v2: 1 the real env reproduces it from its recorded state, 0 it
                                         cannot, -1 unknown (not audited, or the state is hidden)
``ceiling_credit``  (N,) float32         v2: the credit the real env itself earns on it under the
                                         ``cwm`` metric (1 where consistent, NaN where unknown)
``meta``            () str               JSON: format, version, env ids, kinds, provenance, attribution
==================  ===================  ==============================================================

Version history: v1 had no ``consistent``/``ceiling_credit``; v1 files still load, with every transition
unknown. v2 added them (written by ``cwm audit --write``, see ``cwm.envs.audit``) so that feedback never
shows a transition no model can get right and ``cwm check`` can report the achievable ceiling; the flags
travel with ``subset``. Any other field new in v2 (such as ``meta["env_kwargs"]``) shares this bump.

``meta["state_kind"]`` says how a state is handed to a program: ``array`` (a numpy array of
``meta["state_dtype"]``), ``int`` (a Python int, e.g. Taxi) or ``tuple`` (a tuple of ints, Blackjack).
``meta["action_kind"]`` is ``int`` or ``array``. Within a trajectory ``state[i+1] == next_state[i]``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from cwm.errors import CwmError

FORMAT = "cwm-dataset"
VERSION = 2
READABLE_VERSIONS = (1, 2)
CONSISTENT, INCONSISTENT, UNKNOWN = 1, 0, -1
"""Values of the per-transition ``consistent`` flag."""
StateKind = Literal["array", "int", "tuple"]
ActionKind = Literal["int", "array"]

_ARRAYS = ("state", "action", "next_state", "reward", "terminated", "truncated", "trajectory", "step")
_AUDIT_ARRAYS = ("consistent", "ceiling_credit")  # v2; absent from v1 files


@dataclass
class Dataset:
    """A set of recorded transitions of one environment, grouped in trajectories."""

    env_id: str
    state: npt.NDArray[Any]
    action: npt.NDArray[Any]
    next_state: npt.NDArray[Any]
    reward: npt.NDArray[np.float32]
    terminated: npt.NDArray[np.bool_]
    truncated: npt.NDArray[np.bool_]
    trajectory: npt.NDArray[np.int32]
    step: npt.NDArray[np.int32]
    state_kind: StateKind = "array"
    action_kind: ActionKind = "array"
    meta: dict[str, Any] = field(default_factory=dict)
    consistent: npt.NDArray[np.int8] = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    """Per transition: ``CONSISTENT``, ``INCONSISTENT`` or ``UNKNOWN`` (the default: not audited)."""
    ceiling_credit: npt.NDArray[np.float32] = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    """Per transition: the credit the real environment earns (NaN where unknown)."""

    def __post_init__(self) -> None:
        n = len(self)
        if self.consistent.size == 0 and n:
            self.consistent = np.full(n, UNKNOWN, dtype=np.int8)
        if self.ceiling_credit.size == 0 and n:
            self.ceiling_credit = np.full(n, np.nan, dtype=np.float32)

    def __len__(self) -> int:
        return int(self.reward.shape[0])

    def consistent_value(self, i: int) -> bool | None:
        """Transition ``i``'s audit verdict: True, False, or None where it is unknown."""
        flag = int(self.consistent[i])
        return None if flag == UNKNOWN else flag == CONSISTENT

    def ceiling(self, weights: npt.NDArray[np.float64] | None = None) -> float | None:
        """Accuracy of the real environment itself on these transitions (``cwm`` metric), if known.

        The per-transition credits are averaged with the scorer's reward-class weighting, so the figure
        is comparable with ``accuracy``; None as soon as one transition is unknown."""
        credit = self.ceiling_credit.astype(np.float64)
        if not len(self) or np.isnan(credit).any():
            return None
        _, cls = np.unique(self.reward, return_inverse=True)
        return float(np.mean([credit[cls == c].mean() for c in range(int(cls.max()) + 1)]))

    def strict_ceiling(self) -> float | None:
        """Fraction of transitions the real environment reproduces, if every one is known."""
        if not len(self) or (self.consistent == UNKNOWN).any():
            return None
        return float(np.mean(self.consistent == CONSISTENT))

    @property
    def n_trajectories(self) -> int:
        return len(np.unique(self.trajectory))

    @property
    def discrete_state(self) -> bool:
        """Integer states are compared exactly, float states with a tolerance."""
        return self.state_kind != "array" or np.issubdtype(self.state.dtype, np.integer)

    def state_value(self, i: int) -> Any:
        """State ``i`` as a program receives it (the types the environment itself produces)."""
        return _as_kind(self.state[i], self.state_kind)

    def action_value(self, i: int) -> Any:
        if self.action_kind == "int":
            return int(self.action[i])
        return np.array(self.action[i], dtype=self.action.dtype)

    def wire_state(self, i: int) -> Any:
        """State ``i`` as JSON-able data (floats widen exactly, so no precision is lost)."""
        return _to_wire(self.state[i])

    def wire_action(self, i: int) -> Any:
        return _to_wire(self.action[i])

    def subset(self, indices: npt.NDArray[np.intp]) -> Dataset:
        """The transitions at ``indices``, keeping everything else."""
        return Dataset(
            env_id=self.env_id,
            state=self.state[indices], action=self.action[indices], next_state=self.next_state[indices],
            reward=self.reward[indices], terminated=self.terminated[indices],
            truncated=self.truncated[indices], trajectory=self.trajectory[indices], step=self.step[indices],
            state_kind=self.state_kind, action_kind=self.action_kind, meta=dict(self.meta),
            consistent=self.consistent[indices], ceiling_credit=self.ceiling_credit[indices],
        )

    def lockstep_batches(self) -> Iterator[npt.NDArray[np.intp]]:
        """Transition indices grouped so that no batch shows a program a state it must predict.

        ``state[i+1] == next_state[i]`` within a trajectory, so a program that saw step t+1's input
        before answering step t could copy the answer. Batch t holds step t of every trajectory: the
        program commits its predictions for step t before it receives anything from step t+1.
        """
        order = np.lexsort((self.trajectory, self.step))
        steps = self.step[order]
        bounds = np.flatnonzero(np.diff(steps)) + 1
        yield from np.split(order, bounds)

    def to_meta(self) -> dict[str, Any]:
        meta = dict(self.meta)
        meta.update(
            format=FORMAT, version=VERSION, env_id=self.env_id, state_kind=self.state_kind,
            action_kind=self.action_kind, state_dtype=str(self.state.dtype),
            action_dtype=str(self.action.dtype), transitions=len(self), trajectories=self.n_trajectories,
        )
        return meta

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in (*_ARRAYS, *_AUDIT_ARRAYS)}
        arrays["meta"] = np.array(json.dumps(self.to_meta(), sort_keys=True))
        tmp = path.with_name(path.name + ".part")
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        tmp.replace(path)
        return path


def _as_kind(value: npt.NDArray[Any], kind: StateKind) -> Any:
    if kind == "int":
        return int(value)
    if kind == "tuple":
        return tuple(int(v) for v in value)
    return np.array(value, copy=True)


def _to_wire(value: npt.NDArray[Any] | np.generic) -> Any:
    return np.asarray(value).tolist()


def load(path: str | Path) -> Dataset:
    """Load and validate a dataset file; any defect becomes a ``CwmError`` that names it."""
    path = Path(path)
    if not path.is_file():
        raise CwmError(f"dataset {str(path)!r} does not exist or is not a file",
                       hint="pass a .npz written by `cwm collect`")
    if not zipfile.is_zipfile(path):
        raise CwmError(f"dataset {str(path)!r} is not a readable cwm dataset: not an .npz (zip) archive",
                       hint="it must be a cwm-dataset .npz as written by `cwm collect`")
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            missing = [k for k in (*_ARRAYS, "meta") if k not in npz.files]
            if missing:
                raise CwmError(f"dataset {str(path)!r} is malformed: missing array(s) {', '.join(missing)}",
                               hint="it must be a cwm-dataset file as written by `cwm collect`")
            arrays = {k: npz[k] for k in (*_ARRAYS, *_AUDIT_ARRAYS) if k in npz.files}
            meta = json.loads(str(npz["meta"]))
    except CwmError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        raise CwmError(f"dataset {str(path)!r} is not a readable cwm dataset: {exc}",
                       hint="it must be a cwm-dataset .npz as written by `cwm collect`") from exc
    return _validated(path, arrays, meta)


def _validated(path: Path, a: dict[str, npt.NDArray[Any]], meta: Any) -> Dataset:
    def bad(what: str) -> CwmError:
        return CwmError(f"dataset {str(path)!r} is malformed: {what}")

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"meta.format is not {FORMAT!r}")
    version = meta.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise CwmError(f"dataset {str(path)!r} has format version {version!r}; this cwm reads "
                       f"versions {', '.join(map(str, READABLE_VERSIONS))}",
                       hint="upgrade cwm or re-collect the dataset")
    n = a["reward"].shape[0] if a["reward"].ndim == 1 else -1
    if n < 1:
        raise bad("reward must be a non-empty 1-D array")
    for k in _ARRAYS:
        if a[k].shape[:1] != (n,):
            raise bad(f"{k} has {a[k].shape[:1]} rows, expected {n}")
    if a["state"].shape != a["next_state"].shape:
        raise bad(f"state shape {a['state'].shape} differs from next_state shape {a['next_state'].shape}")
    for k in ("state", "action", "next_state", "reward"):
        if a[k].dtype.kind not in "biuf":
            raise bad(f"{k} has non-numeric dtype {a[k].dtype}")
        if a[k].dtype.kind == "f" and not np.all(np.isfinite(a[k])):
            raise bad(f"{k} holds NaN or infinite values")
    for k in ("terminated", "truncated"):
        if a[k].dtype != np.bool_:
            raise bad(f"{k} must be bool, not {a[k].dtype}")
    state_kind = meta.get("state_kind")
    action_kind = meta.get("action_kind")
    if state_kind not in ("array", "int", "tuple") or action_kind not in ("int", "array"):
        raise bad(f"unknown state_kind {state_kind!r} or action_kind {action_kind!r}")
    env_id = meta.get("env_id")
    if not isinstance(env_id, str) or not env_id:
        raise bad("meta.env_id is missing")
    consistent, credit = _audit_arrays(a, n, version, bad)
    return Dataset(
        env_id=env_id,
        state=a["state"], action=a["action"], next_state=a["next_state"],
        reward=a["reward"].astype(np.float32, copy=False), terminated=a["terminated"],
        truncated=a["truncated"], trajectory=a["trajectory"].astype(np.int32, copy=False),
        step=a["step"].astype(np.int32, copy=False), state_kind=state_kind, action_kind=action_kind,
        meta=meta, consistent=consistent, ceiling_credit=credit,
    )


def _audit_arrays(a: dict[str, npt.NDArray[Any]], n: int, version: int, bad: Callable[[str], CwmError]
                  ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """The v2 audit arrays, checked against each other; a v1 file gets every transition unknown."""
    if version == 1:
        return np.full(n, UNKNOWN, dtype=np.int8), np.full(n, np.nan, dtype=np.float32)
    missing = [k for k in _AUDIT_ARRAYS if k not in a]
    if missing:
        raise bad(f"missing array(s) {', '.join(missing)} (required from version 2)")
    flags, credit = a["consistent"], a["ceiling_credit"]
    if flags.shape != (n,) or credit.shape != (n,):
        raise bad(f"consistent/ceiling_credit must have shape ({n},)")
    if flags.dtype.kind not in "iu" or not np.isin(flags, (CONSISTENT, INCONSISTENT, UNKNOWN)).all():
        raise bad("consistent must hold only 1 (consistent), 0 (inconsistent) or -1 (unknown)")
    if credit.dtype.kind != "f":
        raise bad(f"ceiling_credit has non-float dtype {credit.dtype}")
    known = flags != UNKNOWN
    if (np.isnan(credit) == known).any() or (credit[flags == CONSISTENT] != 1).any() or \
            ((credit[flags == INCONSISTENT] < 0) | (credit[flags == INCONSISTENT] >= 1)).any():
        raise bad("ceiling_credit disagrees with consistent (1 where consistent, [0, 1) where not, NaN where "
                  "unknown)")
    return flags.astype(np.int8, copy=False), credit.astype(np.float32, copy=False)


def bundled_path(env_name: str) -> Path | None:
    """Path of the dataset shipped with cwm for a benchmark name, if there is one."""
    from cwm.envs.registry import benchmark_env

    bench = benchmark_env(env_name)
    if bench is None:
        return None
    ref = resources.files("cwm.envs") / "data" / f"{bench.name}.npz"
    path = Path(str(ref))
    return path if path.is_file() else None


def load_for_env(env_id: str, dataset: str | Path | None = None) -> Dataset:
    """The dataset to score against: ``dataset`` when given, else the benchmark's bundled one."""
    if dataset is not None:
        return load(dataset)
    path = bundled_path(env_id)
    if path is None:
        from cwm.envs.registry import resolve_gym_id

        resolve_gym_id(env_id)  # unknown ids get the did-you-mean error first
        raise CwmError(f"no bundled dataset for {env_id!r}",
                       hint=f"record one with `cwm collect {env_id} --out data.npz` and pass --dataset data.npz")
    return load(path)
