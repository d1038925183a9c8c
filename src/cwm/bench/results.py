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


def _algorithm_version() -> Any:
    """The search's own version marker, when this version of cwm has one."""
    for module in ("cwm.graph.run", "cwm.graph.search"):
        mod = importlib.import_module(module)
        for name in ("ALGORITHM_VERSION", "ALGORITHM", "SEARCH_VERSION"):
            if hasattr(mod, name):
                return getattr(mod, name)
    return None


def versions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from cwm import __version__

    models = sorted({m for r in rows for m in (r.get("models") or [])})
    return {"cwm": __version__, "gymnasium": _version("gymnasium"), "mujoco": _version("mujoco"),
            "numpy": _version("numpy"), "python": platform.python_version(),
            "models": models, "prompt_set": prompt_set(), "algorithm": _algorithm_version()}


def write_results(bench_dir: Path, spec: dict[str, Any], rows: list[dict[str, Any]],
                  status: dict[str, Any]) -> dict[str, Any]:
    doc = {"bench": spec, "status": status, "versions": versions(rows), "runs": rows}
    tmp = bench_dir / "results.json.part"
    tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    tmp.replace(bench_dir / "results.json")
    return doc
