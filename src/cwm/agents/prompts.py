"""The three prompts of GIF-MCTS (generate, improve, fix), written for cwm.

They carry the same information as the paper's (App. N): the environment's description, the program
contract, and for improve the full program with the transitions it gets wrong (inputs, recorded
outputs, its outputs: one as in the paper, or the first of each kind), for fix the full program with its
error. Values are printed in the state's own types. Differences: the partial program of a
generate action is quoted in the user message instead of an assistant prefill (prefill does not
continue code on OpenAI or on chat templates that close the turn, official_repo.md §10.9), and the
contract states the exact input and output types the sandbox uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cwm.agents.llm.types import Message
from cwm.envs.dataset import Dataset

SYSTEM = ("You are an expert Python programmer who writes exact simulators of reinforcement-learning "
          "environments as code. Your program is run on many recorded transitions of the real environment "
          "and judged by how many of them it reproduces exactly.")


def _kind_text(ds: Dataset) -> tuple[str, str]:
    if ds.state_kind == "int":
        state = "a Python int"
    elif ds.state_kind == "tuple":
        state = f"a tuple of {ds.state.shape[1]} Python ints"
    else:
        state = f"a numpy array of dtype {ds.state.dtype} and shape {tuple(ds.state.shape[1:])}"
    if ds.action_kind == "int":
        action = "a Python int"
    else:
        action = f"a numpy array of dtype float64 and shape {tuple(ds.action.shape[1:])}"
    return state, action


TOOL_NOTES: dict[str, str] = {
    "mujoco": """### Using mujoco
A MuJoCo-based program is shaped like this: write the environment's model yourself as an MJCF string in
the program (bodies, joints, geoms, actuators, timestep and integrator from the description and facts;
the environment's own XML file is not available), build it once in `__init__` with
`mujoco.MjModel.from_xml_string(MJCF)` and `mujoco.MjData(model)`; in `set_state` write the observation
into `data.qpos` and `data.qvel` (mind any position the observation leaves out) and call
`mujoco.mj_forward`; in `step` set `data.ctrl`, call `mujoco.mj_step(model, data, nstep=FRAME_SKIP)` with
the environment's frame skip, then build the observation, reward and termination from `data` as the
environment does.""",
}
"""How a program that uses an allowed library is shaped, by library (shown only when it is allowed)."""


def _libraries(allowed: Sequence[str]) -> str:
    if not allowed:
        return "Only the Python standard library and numpy are available."
    return (f"Available: the Python standard library, numpy and {', '.join(allowed)} (with its own "
            "submodules); nothing else can be imported, and the environment's own package is never available.")


def _tool_notes(allowed: Sequence[str]) -> str:
    return "".join(f"\n\n{TOOL_NOTES[name]}" for name in allowed if name in TOOL_NOTES)


def contract(ds: Dataset, allowed: Sequence[str] = ()) -> str:
    state, action = _kind_text(ds)
    return f"""## The program to write
One Python module defining `class Environment` with these methods:
- `__init__(self)`: takes no arguments; set up the constants the dynamics need.
- `set_state(self, state)`: make `state` the current state. `state` is {state}.
- `step(self, action)`: advance one time step from the current state with `action` ({action}) and return
  the tuple `(next_state, reward, done)`: the next state in the same form as `state`, the reward as a float,
  and `done` as a bool that is True only when the environment's own rules end the episode (a time limit
  is not one of them).

{_libraries(allowed)} {dynamics_sentence(ds)}{_tool_notes(allowed)}"""


def dynamics_sentence(ds: Dataset) -> str:
    """Whether the environment is deterministic, from the env and the kwargs its data were recorded with
    (``cwm.envs.registry.stochasticity``). Random dynamics (Blackjack's cards, FrozenLake's ice) cannot be
    reproduced, so the program is asked for the most likely outcome instead."""
    from cwm.envs.registry import stochasticity

    why = stochasticity(ds.env_id, ds.meta.get("env_kwargs"))
    if why is None:
        return "The environment is deterministic: compute\nexactly what it computes, in the same order and precision."
    return (f"The environment's dynamics are random: {why}. The recorded transitions are samples of that\n"
            "randomness, so predict the most likely outcome: the most probable next state, with the reward and\n"
            "done that go with it; compute everything that is not random exactly as the environment does.")


def _fmt(v: Any) -> str:
    arr = np.asarray(v)
    if arr.ndim == 0:
        return repr(v.item() if hasattr(v, "item") else v)
    return np.array2string(arr, precision=8, separator=", ", max_line_width=200)


def _int_if_whole(x: Any) -> Any:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def fmt_state(ds: Dataset, v: Any) -> str:
    """A state (recorded or predicted, as JSON data) in the environment's own types: an int state as an
    int, a tuple state as a tuple of ints, an integer array as ints, a float array in its dtype. The
    scorer widens predictions to floats; printing ``[17., 3., 1.]`` for a tuple of ints would suggest a
    type error that is not there."""
    if v is None:
        return "None (no valid prediction)"
    if ds.state_kind == "int":
        flat = np.asarray(v).reshape(-1).tolist()
        return repr(_int_if_whole(flat[0])) if len(flat) == 1 else _fmt(v)
    if ds.state_kind == "tuple":
        items = [_int_if_whole(x) for x in np.asarray(v).reshape(-1).tolist()]
        return "(" + ", ".join(repr(x) for x in items) + ("," if len(items) == 1 else "") + ")"
    arr = np.asarray(v)
    if np.issubdtype(ds.state.dtype, np.integer) and np.all(np.mod(arr, 1) == 0):
        return _fmt(arr.astype(np.int64))
    return _fmt(arr.astype(ds.state.dtype) if arr.dtype.kind == "f" else arr)


def fmt_action(ds: Dataset, v: Any) -> str:
    if ds.action_kind == "int":
        return repr(_int_if_whole(np.asarray(v).reshape(-1).tolist()[0]))
    return _fmt(v)


def _transition(ds: Dataset, failure: dict[str, Any]) -> str:
    exp, pred = failure["expected"], failure.get("predicted") or {}
    return f"""Input state: {fmt_state(ds, failure["state"])}
Action: {fmt_action(ds, failure["action"])}

Recorded by the real environment:
Next state: {fmt_state(ds, exp["next_state"])}
Reward: {_fmt(exp["reward"])}
Done: {exp["done"]}

Returned by the program:
Next state: {fmt_state(ds, pred.get("next_state"))}
Reward: {_fmt(pred.get("reward"))}
Done: {pred.get("done")}

Wrong: {", ".join(failure.get("mismatch", [])) or "unknown"}"""


def _failures_text(ds: Dataset, failures: Sequence[dict[str, Any]]) -> str:
    if len(failures) == 1:
        return f"## A transition the program gets wrong\n{_transition(ds, failures[0])}"
    parts = [f"### Transition {n}\n{_transition(ds, f)}" for n, f in enumerate(failures, 1)]
    return ("## Transitions the program gets wrong\nThe first recorded transition it gets wrong for each "
            "part of the output (next state, reward, done):\n\n" + "\n\n".join(parts))


def generate(description: str, ds: Dataset, partial: str, allowed: Sequence[str] = ()) -> list[Message]:
    start = ""
    if partial.strip():
        start = ("\n\n## Start of the program\nYour program must begin with exactly these lines and continue "
                 f"them into a complete, working module:\n```python\n{partial}\n```")
    user = (f"{description}\n\n{contract(ds, allowed)}{start}\n\nReply with the complete program in a single "
            "```python code block.")
    return [Message("system", SYSTEM), Message("user", user)]


def improve(description: str, ds: Dataset, program: str,
            failures: dict[str, Any] | Sequence[dict[str, Any]], allowed: Sequence[str] = ()) -> list[Message]:
    """The improve prompt: the program and the transitions it gets wrong (one, as in the paper, or the
    first of each kind)."""
    shown = [failures] if isinstance(failures, dict) else list(failures)
    user = f"""{description}

{contract(ds, allowed)}

## Current program
```python
{program}
```

{_failures_text(ds, shown)}

Answer in four sections:
## Error explanation
(why the program's outputs differ from the recorded ones)
## Error location and wrong logic
(which lines are wrong, and what they do)
## Fix suggestion
(how to change them)
## Correct code
(the complete corrected program, in a single ```python code block)"""
    return [Message("system", SYSTEM), Message("user", user)]


def fix(description: str, ds: Dataset, program: str, error: str, allowed: Sequence[str] = ()) -> list[Message]:
    user = f"""{description}

{contract(ds, allowed)}

## Current program
```python
{program}
```

## The error it raised
{error}

Answer in three sections:
## Error explanation
(what went wrong and why)
## Fix suggestion
(how to avoid it)
## Correct code
(the complete corrected program, in a single ```python code block)"""
    return [Message("system", SYSTEM), Message("user", user)]


def analyze(description: str, ds: Dataset, program: str, error: str | None,
            failures: Sequence[dict[str, Any]], tools: Sequence[str], allowed: Sequence[str] = ()) -> list[Message]:
    """The analyze node's opening prompt: the program, what is wrong with it, and the tools to look closer
    (run numpy over the training data, list failures, check a candidate) before writing the fix."""
    if error:
        wrong = f"## The error it raised\n{error}"
    elif failures:
        wrong = _failures_text(ds, failures)
    else:
        wrong = "## What is wrong\nNo failing transition can be shown; look at the data for what it misses."
    user = f"""{description}

{contract(ds, allowed)}

## Current program
```python
{program}
```

{wrong}

## How to work
You have tools: {", ".join(tools)}. Use them to find the cause before rewriting: list the failures of a
kind, fit constants to the recorded transitions with numpy, find where episodes end, and check a
candidate program. Tool calls are limited, so make each one count. When you know the fix, reply with
the complete corrected program in a single ```python code block (and no tool call)."""
    return [Message("system", SYSTEM), Message("user", user)]
