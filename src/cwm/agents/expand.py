"""The generate, improve and fix agents: prompt the LLM, extract the program, score it with the sandbox tool.

One function serves the three action types; the prompt is what differs. The agent never raises for a
bad program (it becomes a buggy child that a fix action can repair); only LLM failures escape, and the
graph turns those into a cancelled expansion or a stopped run.

A reply whose program repeats one the search already holds (equal up to layout and comments, see
``cwm.agents.normalize``) is not scored again: the result names the node it duplicates and the
controller copies that node's numbers. The call itself still counts.

What an improve prompt may show is chosen here, from every failing transition of the scoring: the first
failure of each kind (next state, reward, done), never one the dataset's audit marked inconsistent
(``consistent`` False: the real environment does not produce it from its recorded state, so no program
can match it and showing it only wastes a call).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cwm.agents import prompts
from cwm.agents.llm.client import LLMClient
from cwm.agents.llm.types import Message, SamplingParams
from cwm.agents.normalize import program_key
from cwm.agents.parsing import extract_program
from cwm.agents.results import ExpansionResult
from cwm.envs.dataset import Dataset
from cwm.sandbox.evaluate import ScoreReport
from cwm.sandbox.worker import Limits, Sandbox
from cwm.tools.check import CheckProgram

log = structlog.get_logger("cwm.agents")


@dataclass
class AgentDeps:
    """What every agent node needs: injected at run time, never checkpointed."""

    llm: LLMClient
    sandbox: Sandbox
    feedback: Dataset
    heldout: Dataset | None
    description: str
    params: SamplingParams
    limits: Limits | None = None
    run_dir: Path | None = None


def build_messages(deps: AgentDeps, action_type: str, parent: dict[str, Any], show_failures: int = 1
                   ) -> list[Message]:
    allowed = deps.sandbox.config.allow_import  # the prompt lists exactly what the sandbox lets in
    if action_type == "g":
        return prompts.generate(deps.description, deps.feedback, parent.get("state_code") or "", allowed)
    program = parent.get("program") or ""
    if action_type == "f":
        return prompts.fix(deps.description, deps.feedback, program, parent.get("error") or "unknown error",
                           allowed)
    failures = parent.get("failures")
    if failures is None:  # a node made before failures were recorded
        failures = [parent["feedback"]] if parent.get("feedback") else []
    if not failures:  # nothing wrong that may be shown: ask for a rewrite that keeps it so (rare)
        return prompts.generate(deps.description, deps.feedback, program, allowed)
    return prompts.improve(deps.description, deps.feedback, program, failures[:max(1, show_failures)],
                           allowed)


def _error_text(report: ScoreReport) -> str | None:
    """What a fix prompt shows: the program's own traceback, cut to its frames."""
    if report.error is not None:
        tb = report.error.traceback or ""
        return f"{report.error.kind}: {report.error.message}" + (f"\n{tb}" if tb else "")
    for f in report.failures:
        if f.get("traceback"):
            return (f"Raised on input state {f['state']} with action {f['action']}:\n{f['traceback']}")
    return None


FAILURE_KINDS = ("next_state", "reward", "done")
_SHOWN_KEYS = ("index", "state", "action", "expected", "predicted", "mismatch")


def showable_failures(report: ScoreReport) -> list[dict[str, Any]]:
    """The failures an improve prompt may show, by transition index: the first wrong prediction of each
    kind (next state, reward, done), skipping transitions the audit marked inconsistent (``consistent``
    False; a missing key means unknown, which may be shown) and those that raised (fix shows those)."""
    chosen: dict[int, dict[str, Any]] = {}
    for kind in FAILURE_KINDS:
        for f in report.failures:
            if (not f.get("traceback") and f.get("predicted") is not None and f.get("consistent") is not False
                    and kind in (f.get("mismatch") or [])):
                chosen.setdefault(int(f["index"]), {k: f[k] for k in _SHOWN_KEYS})
                break
    return [chosen[i] for i in sorted(chosen)]


async def run_expansion(deps: AgentDeps, action_type: str, index: int, parent: dict[str, Any], *,
                        known: dict[str, int] | None = None, show_failures: int = 1
                        ) -> tuple[ExpansionResult, dict[str, Any]]:
    """One LLM call and one scoring: the child program and what it is worth.

    ``index`` is the expansion's global number; it is the LLM sample index, so a re-run of the same
    expansion (a resumed run) is answered from the cache instead of being paid for twice. ``known`` maps
    the fingerprints of the search's programs to their nodes; a repeat is returned unscored."""
    messages = build_messages(deps, action_type, parent, show_failures)
    t0 = time.perf_counter()
    completion = await deps.llm.complete(messages, deps.params, sample_index=index)
    program = extract_program(completion.text)
    meta: dict[str, Any] = {"tokens": completion.usage.total, "cost_usd": completion.cost_usd,
                            "cached": completion.cached, "llm_s": round(time.perf_counter() - t0, 3)}
    if deps.run_dir is not None:
        (deps.run_dir / "llm").mkdir(exist_ok=True)
        (deps.run_dir / "llm" / f"{index:06d}.json").write_text(json.dumps({
            "index": index, "action": action_type, "parent": parent.get("id"),
            "messages": [m.to_json() for m in messages], "response": completion.text,
            "usage": {"input": completion.usage.input_tokens, "output": completion.usage.output_tokens},
        }, indent=1), encoding="utf-8")
    if program is None:
        log.info("sandbox.result", index=index, bug=True, error="no program in the reply")
        return ExpansionResult(None, 0.0, True, None, None,
                               "The reply contained no Python program: answer with the complete program in a "
                               "```python code block."), meta
    dup = (known or {}).get(program_key(program))
    if dup is not None:
        log.info("sandbox.result", index=index, duplicate=dup, skipped=True)
        return ExpansionResult(program, 0.0, False, duplicate_of=dup), meta
    t1 = time.perf_counter()
    report: ScoreReport = await CheckProgram(deps.sandbox, deps.feedback, limits=deps.limits,
                                             max_failures=len(deps.feedback))(code=program)
    heldout = None
    if deps.heldout is not None and report.error is None:
        held: ScoreReport = await CheckProgram(deps.sandbox, deps.heldout, limits=deps.limits,
                                               max_failures=1)(code=program)
        heldout = held.accuracy
    bug = report.error is not None or report.exceptions > 0
    meta["sandbox_s"] = round(time.perf_counter() - t1, 3)
    log.info("sandbox.result", index=index, accuracy=round(report.accuracy, 6),
             strict=round(report.strict_accuracy, 6), heldout=heldout, bug=bug,
             error_kind=report.error.kind if report.error else None, exceptions=report.exceptions,
             seconds=meta["sandbox_s"])
    shown = showable_failures(report)
    return ExpansionResult(program, report.accuracy, bug, heldout, shown[0] if shown else None,
                           _error_text(report) if bug else None, shown), meta
