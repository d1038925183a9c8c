"""``run_analysis``: the LLM's own numpy code over the training transitions, run in the sandbox.

The sandbox runs programs, so the analysis is wrapped in one: its module body rebuilds the training
arrays from a JSON literal embedded in the source (at most ``MAX_ROWS`` transitions, so the program stays
small), runs the analysis code with them in scope, and defines a do-nothing ``Environment`` so the load
succeeds. What the code printed comes back as the load's output, which the sandbox already bounds
(``Limits.output_chars``); its time is the load deadline. Only the run's feedback transitions are
embedded: the held-out ones are never in ``ToolDeps``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from cwm.envs.dataset import Dataset
from cwm.sandbox.worker import Limits
from cwm.tools.box import ToolDeps

MAX_ROWS = 2000
MAX_SECONDS = 10.0
MAX_OUTPUT = 4000

_WRAPPER = '''import json as _json
import numpy as np
_d = _json.loads({data!r})
state = np.asarray(_d["state"])
action = np.asarray(_d["action"])
next_state = np.asarray(_d["next_state"])
reward = np.asarray(_d["reward"], dtype=float)
terminated = np.asarray(_d["terminated"], dtype=bool)
truncated = np.asarray(_d["truncated"], dtype=bool)
done = terminated
trajectory = np.asarray(_d["trajectory"], dtype=int)
del _d
exec(compile({code!r}, "<analysis>", "exec"), {{"np": np, "numpy": np, "state": state, "action": action,
     "next_state": next_state, "reward": reward, "terminated": terminated, "truncated": truncated,
     "done": done, "trajectory": trajectory, "__name__": "analysis"}})


class Environment:
    def set_state(self, state):
        pass

    def step(self, action):
        raise RuntimeError("an analysis program is not a model")
'''


def analysis_program(ds: Dataset, code: str, max_rows: int = MAX_ROWS) -> str:
    """The sandbox program running ``code`` over (the first ``max_rows`` of) ``ds``."""
    n = min(len(ds), max_rows)
    data = {"state": np.asarray(ds.state[:n]).tolist(), "action": np.asarray(ds.action[:n]).tolist(),
            "next_state": np.asarray(ds.next_state[:n]).tolist(), "reward": ds.reward[:n].tolist(),
            "terminated": ds.terminated[:n].tolist(), "truncated": ds.truncated[:n].tolist(),
            "trajectory": ds.trajectory[:n].tolist()}
    return _WRAPPER.format(data=json.dumps(data), code=code)


class RunAnalysis:
    name = "run_analysis"
    description = ("Run Python/numpy analysis code over the training transitions and return what it prints. "
                   "In scope: np and arrays state, action, next_state, reward, terminated, truncated, done, "
                   f"trajectory (row i is transition i; at most {MAX_ROWS} rows). Use it to fit constants "
                   "(e.g. np.linalg.lstsq), find where done flips, or check a hypothesis. Print results; "
                   f"output is cut at {MAX_OUTPUT} characters and the code has {MAX_SECONDS:g} s.")
    schema: dict[str, Any] = {  # noqa: RUF012 - read-only description of the arguments
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python code; print what you want to see"}},
        "required": ["code"],
    }

    def __init__(self, deps: ToolDeps) -> None:
        self.deps = deps

    async def __call__(self, **kwargs: Any) -> Any:
        code = kwargs.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ValueError("run_analysis needs code: a non-empty string")
        base = self.deps.limits or Limits()
        limits = replace(base, load_s=min(base.load_s, MAX_SECONDS), output_chars=MAX_OUTPUT)
        session, loaded = await self.deps.sandbox.load(analysis_program(self.deps.transitions, code),
                                                       limits=limits)
        await session.close()
        out = loaded.output[:MAX_OUTPUT]
        if loaded.ok:
            return out or "(the code printed nothing)"
        err = loaded.error
        detail = "" if err is None else f"{err.kind}: {err.message}" + (f"\n{err.traceback}" if err.traceback
                                                                          else "")
        return f"{out}\n[analysis failed] {detail}".strip()
