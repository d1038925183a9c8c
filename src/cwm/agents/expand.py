"""One expansion: run the selected node type, then score its program with the sandbox tool.

The node (generate, improve, fix, analyze or a plugin; see ``cwm.nodes``) gets a ``NodeContext``: the
description, the feedback transitions, its parent's program and check report, the run's LLM client
behind a per-expansion budget, and the run's tools bound to the sandbox and the training data. The
expansion never raises for a bad program or a failing plugin (either becomes a buggy child a fix can
repair); only LLM failures escape, and the graph turns those into a cancelled expansion or a stopped run.

A program that repeats one the search already holds (equal up to layout and comments, see
``cwm.agents.normalize``) is not scored again: the result names the node it duplicates and the
controller copies that node's numbers. Its LLM calls still count.

What an improve prompt may show is chosen here, from every failing transition of the scoring: the first
failure of each kind (next state, reward, done), never one the dataset's audit marked inconsistent
(``consistent`` False: the real environment does not produce it from its recorded state, so no program
can match it and showing it only wastes a call).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cwm.agents.llm.client import LLMClient
from cwm.agents.llm.types import LLMError, Message, SamplingParams
from cwm.agents.normalize import program_key
from cwm.agents.results import ExpansionResult
from cwm.envs.dataset import Dataset
from cwm.nodes.builtin import messages_for, parent_view
from cwm.nodes.context import BudgetedLLM, NodeBudgetExceeded, NodeContext
from cwm.nodes.registry import NodeSpec, run_nodes
from cwm.telemetry import traced
from cwm.tools.box import ToolDeps, ToolLimitReached, bind_tools
from cwm.tools.check import CheckProgram

if TYPE_CHECKING:
    from cwm.sandbox.evaluate import ScoreReport
    from cwm.sandbox.worker import Limits, Sandbox

log = structlog.get_logger("cwm.agents")


@dataclass
class AgentDeps:
    """What every expansion needs: injected at run time, never checkpointed."""

    llm: LLMClient
    sandbox: Sandbox
    feedback: Dataset
    heldout: Dataset | None
    description: str
    params: SamplingParams
    limits: Limits | None = None
    run_dir: Path | None = None
    nodes: dict[str, NodeSpec] = field(default_factory=lambda: run_nodes([]))
    """The run's node types by action type ('g', 'i', 'f', then each ``--node`` by name)."""
    run_id: str | None = None


def build_messages(deps: Any, action_type: str, parent: dict[str, Any], show_failures: int = 1
                   ) -> list[Message]:
    """The prompt of a built-in action for a controller's parent view (see ``cwm.nodes.builtin``)."""
    allowed = tuple(deps.sandbox.config.allow_import)  # the prompt lists exactly what the sandbox lets in
    return messages_for(action_type, deps.description, deps.feedback, parent_view(parent), allowed,
                        show_failures)


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
NO_PROGRAM = ("The reply contained no Python program: answer with the complete program in a ```python code "
              "block.")


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


def node_context(deps: AgentDeps, spec: NodeSpec, index: int, parent: dict[str, Any], *, show_failures: int,
                 turns_left: int | None) -> NodeContext:
    """The context one expansion's node runs with; its LLM turns are capped by the run's calls left."""
    budget = spec.budget
    if turns_left is not None:
        budget = replace(budget, max_turns=max(1, min(budget.max_turns, turns_left)))
    bound = log.bind(run_id=deps.run_id, index=index, node=spec.name)
    view = parent_view(parent)
    tools = bind_tools(ToolDeps(deps.sandbox, deps.feedback, deps.description, deps.limits,
                                view.program if view else None), max_calls=budget.max_tool_calls, log=bound)
    return NodeContext(spec.name, index, deps.description, deps.feedback, view,
                       BudgetedLLM(deps.llm, deps.params, budget, index), deps.params, tools, budget, bound,
                       tuple(deps.sandbox.config.allow_import), show_failures)


async def run_node(spec: NodeSpec, ctx: NodeContext) -> tuple[str | None, str | None]:
    """The node's program, or None and why. A plugin's own exception is a failed expansion, not a crash."""
    try:
        program = await spec.run(ctx)
    except LLMError:
        raise
    except (NodeBudgetExceeded, ToolLimitReached) as exc:
        ctx.log.info("node.limit", reason=str(exc))
        return None, f"The {spec.name} node stopped without a program: {exc}."
    except Exception as exc:
        ctx.log.warning("node.failed", error=repr(exc)[:500])
        return None, f"The {spec.name} node failed: {exc!r}"[:2000]
    if program is not None and not isinstance(program, str):
        return None, f"The {spec.name} node returned {type(program).__name__}, not a program (str)"
    return program, None if program else NO_PROGRAM


@traced("cwm.expand")
async def run_expansion(deps: AgentDeps, action_type: str, index: int, parent: dict[str, Any], *,
                        known: dict[str, int] | None = None, show_failures: int = 1,
                        turns_left: int | None = None) -> tuple[ExpansionResult, dict[str, Any]]:
    """Run one node and score its program: the child and what it is worth.

    ``index`` is the expansion's global number; it is the LLM sample index, so a re-run of the same
    expansion (a resumed run) is answered from the cache instead of being paid for twice. ``known`` maps
    the fingerprints of the search's programs to their nodes; a repeat is returned unscored."""
    spec = deps.nodes.get(action_type) or run_nodes([]).get(action_type)
    if spec is None:
        raise LLMError(f"this run has no node type {action_type!r}", hint="resume with the same --node flags")
    ctx = node_context(deps, spec, index, parent, show_failures=show_failures, turns_left=turns_left)
    t0 = time.perf_counter()
    program, why = await run_node(spec, ctx)
    usage = ctx.llm.usage
    meta: dict[str, Any] = {"tokens": usage.tokens, "cost_usd": usage.cost_usd,
                            "cached": usage.all_cached and usage.turns > 0, "turns": usage.turns,
                            "tool_calls": ctx.tools.calls, "llm_s": round(time.perf_counter() - t0, 3)}
    if deps.run_dir is not None:
        _write_transcript(deps.run_dir, index, action_type, parent, ctx)
    if program is None:
        log.info("sandbox.result", index=index, bug=True, error=why)
        return ExpansionResult(None, 0.0, True, None, None, why), meta
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


def _write_transcript(run_dir: Path, index: int, action_type: str, parent: dict[str, Any],
                      ctx: NodeContext) -> None:
    """``RUN_DIR/llm/NNNNNN.json``: the last turn's prompt and reply (as before nodes), and every turn."""
    turns = ctx.llm.transcript
    last = turns[-1] if turns else {"messages": [], "response": ""}
    (run_dir / "llm").mkdir(exist_ok=True)
    (run_dir / "llm" / f"{index:06d}.json").write_text(json.dumps({
        "index": index, "action": action_type, "node": ctx.node, "parent": parent.get("id"),
        "messages": last["messages"], "response": last["response"], "turns": turns if len(turns) > 1 else None,
        "tool_calls": ctx.tools.calls, "notes": ctx.notes or None,
        "usage": {"tokens": ctx.llm.usage.tokens},
    }, indent=1, default=str), encoding="utf-8")
