"""Environment descriptions for prompts: what the dynamics are (docs) and, by default, the constants (facts).

Where the text comes from, first match wins:

1. the user's file (``--description FILE``), for custom environments;
2. a description shipped with cwm (``cwm/envs/descriptions/<benchmark name>.md``), written for the
   version whose data are scored and checked against that version's code and the recorded data
   (``tests/envs/test_descriptions.py``). gymnasium 1.x ships the MuJoCo v4 classes without docstrings,
   and the v5 docstrings describe other observations and rewards (v5 InvertedPendulum pays only while the
   pole is up, v4 pays 1.0 on every step), so borrowing them would mislead;
3. the installed environment's own class docstring, keeping only the sections on dynamics (rendering,
   arguments, version history and references are dropped). The classic-control and toy-text
   benchmark environments use this; their docstrings are checked against the data too.

The ``docs+facts`` mode (the default) appends an ``Environment facts`` section introspected from the
installed instance (``cwm.envs.facts``); ``docs`` is the paper's prompt, the description alone. Modes are
registered in ``DESCRIBE_MODES``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from cwm.errors import CwmError

_DROP = ("version history", "arguments", "rendering", "credits", "notes on", "information", "vectorized",
         "references")


def from_docstring(doc: str) -> str:
    """Keep the sections of a gymnasium docstring that describe dynamics; drop the rest."""
    text = inspect.cleandoc(doc)
    parts = re.split(r"(?m)^(?=#{1,3} )", text)
    kept = [p.strip() for p in parts if not p.lstrip("# ").lower().startswith(_DROP)]
    return "\n\n".join(p for p in kept if p)


def packaged_description(env_id: str) -> str | None:
    """The description shipped with cwm for a benchmark environment, if there is one."""
    from cwm.envs.registry import benchmark_env

    bench = benchmark_env(env_id)
    name = bench.name if bench is not None else env_id
    if "/" in name or name.startswith("."):
        return None
    ref = resources.files("cwm.envs") / "descriptions" / f"{name}.md"
    path = Path(str(ref))
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def _read_user_file(description_file: str | Path) -> str:
    path = Path(description_file)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CwmError(f"cannot read description file {str(path)!r}: {exc}") from exc
    if not text:
        raise CwmError(f"description file {str(path)!r} is empty",
                       hint="describe the state, action, reward and episode end in plain text")
    return text


def _docstring_description(env_id: str, env_kwargs: dict[str, Any]) -> str:
    from cwm.envs.registry import make_env

    env = make_env(env_id, **env_kwargs)
    unwrapped = getattr(env, "unwrapped", env)
    doc = type(unwrapped).__doc__ or ""
    getattr(env, "close", lambda: None)()
    text = from_docstring(doc) if doc.strip() else ""
    if not text:
        raise CwmError(f"{env_id} carries no documentation to describe it",
                       hint="write a description file and pass it with --description FILE")
    return text


def docs(env_id: str, description_file: str | Path | None = None,
         env_kwargs: dict[str, Any] | None = None) -> str:
    """The description of the dynamics alone (see the module docstring for where it comes from)."""
    kwargs = env_kwargs or {}
    if description_file is not None:
        return _read_user_file(description_file)
    text = packaged_description(env_id)
    if text is None:
        text = _docstring_description(env_id, kwargs)
    if kwargs:
        text += (f"\n\nThis environment is instantiated with the arguments {kwargs}; where the text above "
                 "describes the default behaviour, these arguments take precedence.")
    return text


def _with_facts(env_id: str, description_file: str | Path | None, env_kwargs: dict[str, Any] | None) -> str:
    """Docs, then the facts. A custom environment described by the user's file may have no instance to
    introspect (an uploaded dataset under its own name): its facts are left out with a warning. Without
    such a file a failure is an error, since the prompt would silently lose its constants."""
    from cwm.envs.facts import facts_text

    text = docs(env_id, description_file, env_kwargs)
    try:
        return text + "\n\n" + facts_text(env_id, env_kwargs)
    except CwmError as exc:
        if description_file is None:
            raise CwmError(f"cannot introspect the facts of {env_id}: {exc}",
                           hint="or use --describe docs for the description alone") from exc
        structlog.get_logger("cwm.describe").warning("describe.no_facts", env=env_id, reason=str(exc))
        return text


DESCRIBE_MODES: dict[str, Callable[[str, str | Path | None, dict[str, Any] | None], str]] = {
    "docs+facts": _with_facts,
    "docs": docs,
}
"""``--describe`` values: the description with introspected facts (default), or the description alone."""
DEFAULT_MODE = "docs+facts"


def describe(env_id: str, description_file: str | Path | None = None, mode: str = DEFAULT_MODE,
             env_kwargs: dict[str, Any] | None = None) -> str:
    """The text an LLM gets to describe ``env_id`` (``mode`` is a key of ``DESCRIBE_MODES``)."""
    render = DESCRIBE_MODES.get(mode)
    if render is None:
        raise CwmError(f"unknown --describe mode {mode!r}", hint=f"choose one of {', '.join(DESCRIBE_MODES)}")
    return render(env_id, description_file, env_kwargs)
