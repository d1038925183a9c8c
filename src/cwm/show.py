"""``cwm show RUN_DIR``: a finished (or interrupted) search, as a table and a curve, for people.

Reads only the run directory's files -- ``tree.json`` (the controller's nodes, in creation order) and
``summary.json`` when the run got that far -- so it works on any run, also one still being written or
copied from another machine, and never imports the search stack.

The curve is best feedback accuracy against LLM calls. ``summary.json`` carries it as ``curve`` (one
point per paid call) in newer runs; for older runs it is rebuilt from the node order in ``tree.json``
with the same rule as the search uses to pick its best program: highest score, earliest on ties.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from cwm.errors import CwmError


class CurvePoint(TypedDict):
    call: int
    best: float
    heldout: float | None


@dataclass(frozen=True)
class NodeRow:
    """One node of the tree as the table shows it."""

    id: int
    parent: int | None
    action: str
    score: float
    heldout: float | None
    error: str
    """A short kind: the exception name, ``wrong next_state, reward``, ``no program`` ..., or empty."""


@dataclass(frozen=True)
class RunView:
    run_dir: Path
    rows: list[NodeRow]
    curve: list[CurvePoint]
    best: int | None
    summary: dict[str, Any] | None


_EXC = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning))\b")


def error_kind(node: dict[str, Any]) -> str:
    """A few words for why a node is not perfect: the exception's name, or which outputs were wrong."""
    error = node.get("error")
    if error:
        lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
        for line in reversed(lines):
            m = _EXC.match(line)
            if m:
                return m.group(1)
        first = lines[0] if lines else str(error)
        return first if len(first) <= 40 else first[:37] + "..."
    feedback = node.get("feedback")
    if isinstance(feedback, dict) and feedback.get("mismatch"):
        return "wrong " + ", ".join(str(m) for m in feedback["mismatch"])
    return ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CwmError(f"cannot read {str(path)!r}: {exc}") from exc


def derive_curve(nodes: list[dict[str, Any]]) -> list[CurvePoint]:
    """Best score after each expansion (root excluded), in creation order; the earliest best wins ties."""
    curve: list[CurvePoint] = []
    best: dict[str, Any] | None = None
    for call, node in enumerate(nodes[1:], 1):
        if best is None or float(node.get("score", 0.0)) > float(best.get("score", 0.0)):
            best = node
        curve.append({"call": call, "best": float(best.get("score", 0.0)), "heldout": best.get("heldout")})
    return curve


def load_run(run_dir: str | Path) -> RunView:
    """The table rows and the curve of a run directory; ``CwmError`` when it is not one."""
    run_dir = Path(run_dir)
    tree = _read_json(run_dir / "tree.json")
    summary = _read_json(run_dir / "summary.json")
    if not isinstance(tree, dict) or not isinstance(tree.get("nodes"), list):
        raise CwmError(f"{str(run_dir)!r} holds no search tree (tree.json)",
                       hint="pass the --out directory of `cwm synthesize`, after its first expansion")
    nodes: list[dict[str, Any]] = [n for n in tree["nodes"] if isinstance(n, dict)]
    rows = [NodeRow(id=int(n.get("id", i)), parent=n.get("parent"), action=str(n.get("action", "?")),
                    score=float(n.get("score", 0.0)), heldout=n.get("heldout"), error=error_kind(n))
            for i, n in enumerate(nodes)]
    curve = summary.get("curve") if isinstance(summary, dict) else None
    if not isinstance(curve, list) or not curve:
        curve = derive_curve(nodes)
    best = summary.get("best_node") if isinstance(summary, dict) else None
    if best is None and len(rows) > 1:
        best = max(rows[1:], key=lambda r: (r.score, -r.id)).id
    return RunView(run_dir, rows, curve, best, summary if isinstance(summary, dict) else None)


_ACTIONS = {"root": "root", "g": "generate", "i": "improve", "f": "fix"}


def format_table(view: RunView) -> str:
    """The tree as aligned text columns, the best node marked with ``*``."""
    head = f"{'node':>5} {'parent':>6}  {'action':9s} {'score':>7} {'held-out':>8}  error"
    lines = [head, "-" * len(head)]
    for r in view.rows:
        mark = "*" if r.id == view.best else " "
        parent = "-" if r.parent is None else str(r.parent)
        held = "-" if r.heldout is None else f"{r.heldout:.4f}"
        score = "-" if r.action == "root" else f"{r.score:.4f}"
        lines.append(f"{r.id:>4}{mark} {parent:>6}  {_ACTIONS.get(r.action, r.action):9s} {score:>7} {held:>8}  "
                     f"{r.error}".rstrip())
    s = view.summary
    if s:
        held_out = s.get("heldout_accuracy")
        lines.append("")
        lines.append(f"{s.get('env', '?')} · {s.get('method', '?')}: best node {view.best} · accuracy "
                     f"{float(s.get('accuracy') or 0):.4f}"
                     + ("" if held_out is None else f" · held-out {held_out:.4f}")
                     + f" · {s.get('search_calls', len(view.rows) - 1)} calls · stop: {s.get('stop', '?')}")
    else:
        lines.append("")
        lines.append("no summary.json: the run was interrupted or is still running (resume it to finish)")
    return "\n".join(lines)


def plot_curve(view: RunView, out: str | Path) -> Path:
    """Write best accuracy (and its held-out accuracy) against LLM calls as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, never opens a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise CwmError("--plot needs matplotlib", hint="pip install 'cwm[plot]' (or pip install matplotlib)") \
            from exc
    if not view.curve:
        raise CwmError(f"{str(view.run_dir)!r} has no expansions yet: nothing to plot")
    calls = [p["call"] for p in view.curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        ax.step(calls, [p["best"] for p in view.curve], where="post", label="best accuracy (feedback set)")
        held = [(p["call"], p["heldout"]) for p in view.curve if p["heldout"] is not None]
        if held:
            ax.step([c for c, _ in held], [h for _, h in held], where="post", linestyle="--",
                    label="its held-out accuracy")
        ax.set_xlabel("LLM calls")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0.5, max(calls) + 0.5)
        env = (view.summary or {}).get("env")
        ax.set_title(f"{env or view.run_dir.name}: best program against calls")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        out = Path(out)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out
