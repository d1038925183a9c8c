"""The failing transitions of a ``cwm check`` report, as text for people.

Why grouped: a program for the wrong environment raises the same exception on every transition, and
printing that traceback once per transition buries the one useful line. Each distinct traceback is
printed once, at its first transition; later transitions with the same traceback are folded into one
line ("same error in 4 more transitions shown"). And when the program never loaded, no transition was
run at all, so listing them as "wrong missing" says nothing the load error does not: they are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO


def loaded(error: Any, failures: list[dict[str, Any]]) -> bool:
    """False when a program-level error left every listed transition unscored (nothing predicted)."""
    return error is None or any(f.get("predicted") is not None or f.get("traceback") for f in failures)


def write_failures(out: TextIO, report: Any, fmt: Callable[[Any], str]) -> None:
    """Write the report's failures, each distinct traceback once."""
    failures: list[dict[str, Any]] = list(report.failures)
    if not loaded(report.error, failures):
        out.write(f"\nno transition was run: the program failed before its first step "
                  f"({report.transitions} transitions unscored)\n")
        return
    same: dict[str, list[int]] = {}
    for f in failures:
        tb = (f.get("traceback") or "").strip()
        if tb:
            same.setdefault(tb, []).append(int(f["index"]))
    for f in failures:
        tb = (f.get("traceback") or "").strip()
        if tb and same[tb][0] != int(f["index"]):
            continue  # folded into the first transition that raised it
        impossible = "  (the real environment cannot produce it either)" if f.get("consistent") is False else ""
        out.write(f"\n✗ transition {f['index']} (trajectory {f['trajectory']}, step {f['step']}): "
                  f"wrong {', '.join(f['mismatch'])}{impossible}\n")
        out.write(f"    state     {fmt(f['state'])}   action {fmt(f['action'])}\n")
        e, p = f["expected"], f["predicted"]
        trunc = "  (time-limit cut: done not scored)" if e["truncated"] else ""
        out.write(f"    expected  next_state {fmt(e['next_state'])}  reward {fmt(e['reward'])}  "
                  f"done {e['done']}{trunc}\n")
        if p is not None:
            out.write(f"    predicted next_state {fmt(p['next_state'])}  reward {fmt(p['reward'])}  "
                      f"done {p['done']}\n")
        if tb:
            out.write("    " + tb.replace("\n", "\n    ") + "\n")
            more = same[tb][1:]
            if more:
                listed = ", ".join(str(i) for i in more)
                out.write(f"    same error in {len(more)} more transition{'s' if len(more) > 1 else ''} "
                          f"shown ({listed})\n")
    if len(same) == 1 and report.exceptions > len(failures):
        out.write(f"\n{report.exceptions} transitions raised in all; the first {len(failures)} raised this same "
                  f"error (--max-failures N looks at more)\n")
