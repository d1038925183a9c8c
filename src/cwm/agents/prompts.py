"""The three prompts of GIF-MCTS (generate, improve, fix), written for cwm.

They carry the same information as the paper's (App. N): the environment's description, the program
contract, and for improve the full program with one transition it gets wrong (inputs, recorded
outputs, its outputs), for fix the full program with its error. Differences: the partial program of a
generate action is quoted in the user message instead of an assistant prefill (prefill does not
continue code on OpenAI or on chat templates that close the turn, official_repo.md §10.9), and the
contract states the exact input and output types the sandbox uses.
"""

from __future__ import annotations

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


def contract(ds: Dataset) -> str:
    state, action = _kind_text(ds)
    return f"""## The program to write
One Python module defining `class Environment` with these methods:
- `__init__(self)`: takes no arguments; set up the constants the dynamics need.
- `set_state(self, state)`: make `state` the current state. `state` is {state}.
- `step(self, action)`: advance one time step from the current state with `action` ({action}) and return
  the tuple `(next_state, reward, done)`: the next state in the same form as `state`, the reward as a float,
  and `done` as a bool that is True only when the environment's own rules end the episode (a time limit
  is not one of them).

Only the Python standard library and numpy are available. The environment is deterministic: compute
exactly what it computes, in the same order and precision."""


def _fmt(v: Any) -> str:
    arr = np.asarray(v)
    if arr.ndim == 0:
        return repr(v.item() if hasattr(v, "item") else v)
    return np.array2string(arr, precision=8, separator=", ", max_line_width=200)


def generate(description: str, ds: Dataset, partial: str) -> list[Message]:
    start = ""
    if partial.strip():
        start = ("\n\n## Start of the program\nYour program must begin with exactly these lines and continue "
                 f"them into a complete, working module:\n```python\n{partial}\n```")
    user = (f"{description}\n\n{contract(ds)}{start}\n\nReply with the complete program in a single "
            "```python code block.")
    return [Message("system", SYSTEM), Message("user", user)]


def improve(description: str, ds: Dataset, program: str, failure: dict[str, Any]) -> list[Message]:
    exp, pred = failure["expected"], failure.get("predicted") or {}
    wrong = ", ".join(failure.get("mismatch", [])) or "unknown"
    user = f"""{description}

{contract(ds)}

## Current program
```python
{program}
```

## A transition the program gets wrong
Input state: {_fmt(failure["state"])}
Action: {_fmt(failure["action"])}

Recorded by the real environment:
Next state: {_fmt(exp["next_state"])}
Reward: {_fmt(exp["reward"])}
Done: {exp["done"]}

Returned by the program:
Next state: {_fmt(pred.get("next_state"))}
Reward: {_fmt(pred.get("reward"))}
Done: {pred.get("done")}

Wrong: {wrong}

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


def fix(description: str, ds: Dataset, program: str, error: str) -> list[Message]:
    user = f"""{description}

{contract(ds)}

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
