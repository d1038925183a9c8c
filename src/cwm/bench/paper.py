"""The paper's published figures (Tables 2, 10, 11 and 12), shipped as package data.

``data/paper.json`` was produced by parsing the research notes' transcription of the NeurIPS text, so no
figure is retyped by hand; its ``source`` block cites where each table comes from. Reports read the
figures from here only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

PAPER_METHODS = {"GIF-MCTS": "gif-mcts", "WorldCoder": "worldcoder"}
"""Table 2's method names and the cwm method each is compared with."""

COMPARABLE_METHODS = ("gif-mcts-paper", "worldcoder")
"""Methods whose runs claim comparability with the paper (with ``--describe docs``)."""


@cache
def paper_data() -> dict[str, Any]:
    text = resources.files("cwm.bench").joinpath("data/paper.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def citation() -> str:
    src = paper_data()["source"]
    return f"{src['paper']} — {src['version']}"


@dataclass(frozen=True)
class PaperCell:
    accuracy: float | None
    normalized_return: float | None


def per_env(table: str, env: str, method: str) -> PaperCell | None:
    """Table 10 (``"table10"``, Llama 3) or 11 (``"table11"``, GPT-4 Turbo) for one env and method.

    ``method`` is a cwm method name; ``gif-mcts-paper`` and ``gif-mcts`` both read the GIF-MCTS column."""
    column = "gif-mcts" if method.startswith("gif-mcts") else method
    row = paper_data()[table]["envs"].get(env)
    if row is None or column not in row:
        return None
    cell = row[column]
    return PaperCell(cell["accuracy"], cell["normalized_return"])


def table12(env: str) -> dict[str, float | None] | None:
    """Random, CQL, GIF-MCTS and oracle returns of Table 12 for one env (10 episodes)."""
    row: dict[str, float | None] | None = paper_data()["table12"]["envs"].get(env)
    return row


def table2() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = paper_data()["table2"]
    return rows
