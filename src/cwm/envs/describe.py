"""Environment descriptions for prompts, taken from the installed environment's own documentation.

Gymnasium environments document their dynamics in the class docstring (description, spaces, rewards,
starting state, episode end). That text is what an LLM needs to write a model; rendering and
version-history sections are not, so they are dropped. Custom environments bring a file instead.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from cwm.errors import CwmError

_DROP = ("version history", "arguments", "rendering", "credits", "notes on", "information")


def from_docstring(doc: str) -> str:
    """Keep the sections of a gymnasium docstring that describe dynamics; drop the rest."""
    text = inspect.cleandoc(doc)
    parts = re.split(r"(?m)^(?=#{1,3} )", text)
    kept = [p.strip() for p in parts if not p.lstrip("# ").lower().startswith(_DROP)]
    return "\n\n".join(p for p in kept if p)


def describe(env_id: str, description_file: str | Path | None = None) -> str:
    """The description of ``env_id``: the user's file when given, else the env's own docstring."""
    if description_file is not None:
        path = Path(description_file)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CwmError(f"cannot read description file {str(path)!r}: {exc}") from exc
        if not text:
            raise CwmError(f"description file {str(path)!r} is empty",
                           hint="describe the state, action, reward and episode end in plain text")
        return text
    from cwm.envs.registry import make_env

    env = make_env(env_id)
    unwrapped = getattr(env, "unwrapped", env)
    doc = type(unwrapped).__doc__ or ""
    getattr(env, "close", lambda: None)()
    text = from_docstring(doc) if doc.strip() else ""
    if not text:
        raise CwmError(f"{env_id} carries no documentation to describe it",
                       hint="write a description file and pass it with --description FILE")
    return text
