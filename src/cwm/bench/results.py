"""``results.json``: one row per run (see ``cwm.bench.runner``) and the versions that shaped the numbers."""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
from importlib import resources
from pathlib import Path
from typing import Any


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", None) or "unknown")


def prompt_set() -> str:
    """Identity of the prompt set: a digest of ``cwm.agents.prompts`` (any wording change shows)."""
    text = resources.files("cwm.agents").joinpath("prompts.py").read_bytes()
    return "sha256:" + hashlib.sha256(text).hexdigest()[:16]


def _algorithm_version(rows: list[dict[str, Any]]) -> Any:
    """Each method's rules version as the runs recorded it (``method_version``), else the registry's."""
    recorded = {r["method"]: r.get("method_version") for r in rows if r.get("method_version") is not None}
    if recorded:
        return recorded
    try:
        methods = importlib.import_module("cwm.graph.methods").METHODS
    except ImportError:
        return None
    return {name: getattr(m, "version", None) for name, m in methods.items()}


def versions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from cwm import __version__

    models = sorted({m for r in rows for m in (r.get("models") or [])})
    return {"cwm": __version__, "gymnasium": _version("gymnasium"), "mujoco": _version("mujoco"),
            "numpy": _version("numpy"), "python": platform.python_version(),
            "models": models, "prompt_set": prompt_set(), "algorithm": _algorithm_version(rows)}


def write_results(bench_dir: Path, spec: dict[str, Any], rows: list[dict[str, Any]],
                  status: dict[str, Any]) -> dict[str, Any]:
    doc = {"bench": spec, "status": status, "versions": versions(rows), "runs": rows}
    tmp = bench_dir / "results.json.part"
    tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    tmp.replace(bench_dir / "results.json")
    return doc
