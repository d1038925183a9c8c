"""Continual repair: a finished run whose data grew is re-scored and its search continues from its tree.

New transitions can show that the best program is wrong. Starting over would pay again for every call the
run already made; instead every node of the existing tree is re-scored on the grown feedback set (scoring
is cheap, LLM calls are not), nodes that now fail are offered an improve again, the best node is chosen
anew, and the run resumes from its checkpoint with a larger budget. The held-out trajectories are fixed
to the ones the run started with, so data added later joins the feedback set and never reshuffles them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from cwm.agents.expand import _error_text, showable_failures
from cwm.envs.dataset import load_for_env
from cwm.errors import CwmError
from cwm.graph.methods import load_controller
from cwm.graph.run import THREAD, RunConfig, load_config, split_heldout
from cwm.graph.search import build_graph
from cwm.graph.tree import first_key, key_type
from cwm.sandbox import Sandbox, SandboxConfig, evaluate

log = structlog.get_logger("cwm.repair")


async def prepare_repair(run_dir: Path, dataset: str, extra_budget: int) -> dict[str, Any]:
    """Re-score every node of the run at ``run_dir`` on ``dataset`` and make the run resumable with
    ``extra_budget`` more calls. Returns what changed; resume it with ``synthesize(..., resume=True)``."""
    if extra_budget < 1:
        raise CwmError("the repair budget must be at least 1")
    cfg = load_config(run_dir)
    old = load_for_env(cfg.env, cfg.dataset)
    _, old_held = split_heldout(old, cfg.heldout_fraction, cfg.seed, cfg.heldout_trajectories)
    held_ids = sorted({int(t) for t in old_held.trajectory}) if old_held is not None else []
    grown = load_for_env(cfg.env, dataset)
    feedback, heldout = split_heldout(grown, cfg.heldout_fraction, cfg.seed, held_ids)

    async with AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoint.sqlite")) as saver:
        app = build_graph().compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": THREAD}}
        state = (await app.aget_state(config)).values
        if not state.get("controller"):
            raise CwmError(f"{str(run_dir)!r} has no search state to repair")
        ctrl = load_controller(state["controller"])
        before = ctrl.best_node.score if ctrl.best_node is not None else None
        rescored = await _rescore(ctrl, feedback, heldout, cfg)
        best = max((n for n in ctrl.nodes if n.program is not None), key=lambda n: (n.score, -n.id), default=None)
        ctrl.best = best.id if best is not None else None  # type: ignore[attr-defined]
        await app.aupdate_state(config, {"controller": ctrl.to_dict(), "stop": None}, as_node="expand")
        calls = int(state.get("calls", 0))

    cfg.dataset, cfg.heldout_trajectories = dataset, held_ids
    cfg.budget = calls + extra_budget  # the budget counts every call of the run: this many more
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1, default=str), encoding="utf-8")
    result = {"nodes": rescored, "best_before": before, "best_now": best.score if best else None,
              "best_node": best.id if best else None, "budget": cfg.budget,
              "feedback_transitions": len(feedback)}
    log.info("run.repair", **{k: v for k, v in result.items() if k != "nodes"})
    return result


async def _rescore(ctrl: Any, feedback: Any, heldout: Any, cfg: RunConfig) -> list[dict[str, Any]]:
    out = []
    originals: dict[int, Any] = {}
    box = SandboxConfig(allow_import=tuple(cfg.allow_import))
    async with Sandbox(box) as sandbox:
        for node in ctrl.nodes:
            if node.program is None:
                continue
            src = originals.get(node.duplicate_of) if node.duplicate_of is not None else None
            if src is None:
                report = await evaluate(sandbox, node.program, feedback, max_failures=len(feedback))
                held = None
                if heldout is not None and report.error is None:
                    held = (await evaluate(sandbox, node.program, heldout, max_failures=0)).accuracy
                shown = showable_failures(report)
                src = (report.accuracy, held, shown, _error_text(report) if report.error or report.exceptions
                       else None)
                originals[node.id] = src
            before = node.score
            node.score, node.heldout, node.failures = src[0], src[1], src[2]
            node.feedback = src[2][0] if src[2] else None
            if node.error is None:
                node.error = src[3]
            if node.failures and not node.bug and node.duplicate_of is None and \
                    not any(key_type(k) == "i" for k in node.children):
                node.children[first_key("i")] = None  # wrong again: it may be improved again
            out.append({"node": node.id, "before": before, "accuracy": node.score})
    return out
