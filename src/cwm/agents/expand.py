"""The generate, improve and fix agents: prompt the LLM, extract the program, score it with the sandbox tool.

One function serves the three action types; the prompt is what differs. The agent never raises for a
bad program (it becomes a buggy child that a fix action can repair); only LLM failures escape, and the
graph turns those into a cancelled expansion or a stopped run.
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


def build_messages(deps: AgentDeps, action_type: str, parent: dict[str, Any]) -> list[Message]:
    if action_type == "g":
        return prompts.generate(deps.description, deps.feedback, parent.get("state_code") or "")
    program = parent.get("program") or ""
    if action_type == "f":
        return prompts.fix(deps.description, deps.feedback, program, parent.get("error") or "unknown error")
    failure = parent.get("feedback")
    if not failure:  # nothing wrong on the feedback set: ask for a rewrite that keeps it so (rare)
        return prompts.generate(deps.description, deps.feedback, program)
    return prompts.improve(deps.description, deps.feedback, program, failure)


def _error_text(report: ScoreReport) -> str | None:
    """What a fix prompt shows: the program's own traceback, cut to its frames."""
    if report.error is not None:
        tb = report.error.traceback or ""
        return f"{report.error.kind}: {report.error.message}" + (f"\n{tb}" if tb else "")
    for f in report.failures:
        if f.get("traceback"):
            return (f"Raised on input state {f['state']} with action {f['action']}:\n{f['traceback']}")
    return None


def _first_wrong(report: ScoreReport) -> dict[str, Any] | None:
    for f in report.failures:
        if not f.get("traceback") and f.get("predicted") is not None:
            return {k: f[k] for k in ("index", "state", "action", "expected", "predicted", "mismatch")}
    return None


async def run_expansion(deps: AgentDeps, action_type: str, index: int, parent: dict[str, Any]
                        ) -> tuple[ExpansionResult, dict[str, Any]]:
    """One LLM call and one scoring: the child program and what it is worth.

    ``index`` is the expansion's global number; it is the LLM sample index, so a re-run of the same
    expansion (a resumed run) is answered from the cache instead of being paid for twice."""
    messages = build_messages(deps, action_type, parent)
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
    t1 = time.perf_counter()
    report: ScoreReport = await CheckProgram(deps.sandbox, deps.feedback, limits=deps.limits)(code=program)
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
    return ExpansionResult(program, report.accuracy, bug, heldout, _first_wrong(report),
                           _error_text(report) if bug else None), meta
