"""A synthesis run: its directory, its checkpoint, resuming it, and its summary.

Run directory:
    config.json        what was asked (resume reads it back)
    checkpoint.sqlite  LangGraph checkpoints, one per superstep (durability "sync")
    llm-cache/         every LLM response, content-addressed: a resumed run replays, never re-pays
    llm/NNNNNN.json    prompt and response text of expansion N
    trace.jsonl        every event (selection, LLM call, sandbox result, expansion, backprop, new best)
    tree.json          the search tree after the last superstep
    best_program.py    the chosen Code World Model
    summary.json       accuracy, held-out accuracy, calls, tokens, cost, wall time

Held-out check: a seeded fifth of the trajectories (at least one when there are two or more) is never
shown to the LLM. The search optimises accuracy on the rest (the feedback set); the best program is the
one with the highest feedback accuracy, the earliest on ties, and its held-out accuracy is reported next
to it. The held-out set never influences the search, so it stays an honest estimate.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from cwm.agents.expand import AgentDeps
from cwm.agents.llm import LLMClient, ResponseCache, SamplingParams, TransportConfig, close_shared_session
from cwm.envs.dataset import Dataset, load_for_env
from cwm.envs.describe import describe
from cwm.errors import CwmError
from cwm.graph.search import Budget, Method, SearchDeps, build_graph, load_controller
from cwm.sandbox.worker import Limits, Sandbox, SandboxConfig
from cwm.tracing import trace_to

log = structlog.get_logger("cwm.run")
THREAD = "search"


@dataclass
class RunConfig:
    env: str
    llm: str = "local"
    method: Method = "gif-mcts"
    budget: int = 10
    concurrency: int = 1
    seed: int = 0
    dataset: str | None = None
    description: str | None = None
    heldout_fraction: float = 0.2
    temperature: float = 1.0
    top_p: float = 0.8
    max_new_tokens: int = 1500
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    plan_episodes: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def split_heldout(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    trajs = np.unique(ds.trajectory)
    n_hold = 0 if len(trajs) < 2 or fraction <= 0 else max(1, round(fraction * len(trajs)))
    if n_hold == 0:
        return ds, None
    held = set(np.random.default_rng(seed).permutation(trajs)[:n_hold].tolist())
    mask = np.isin(ds.trajectory, list(held))
    return ds.subset(np.flatnonzero(~mask)), ds.subset(np.flatnonzero(mask))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def load_config(run_dir: Path) -> RunConfig:
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        return RunConfig(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise CwmError(f"{str(run_dir)!r} is not a cwm run directory: {exc}",
                       hint="pass the --out directory of an earlier `cwm synthesize`") from exc


async def synthesize(cfg: RunConfig, run_dir: Path, *, resume: bool = False,
                     on_progress: Any = None) -> dict[str, Any]:
    """Run (or resume) a search; returns the summary also written to ``summary.json``."""
    if cfg.budget < 1 or cfg.concurrency < 1:
        raise CwmError("--budget and --concurrency must be at least 1")
    if not 0 <= cfg.heldout_fraction < 1:
        raise CwmError("--heldout must be in [0, 1)")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        if (run_dir / "checkpoint.sqlite").exists():
            raise CwmError(f"{str(run_dir)!r} already holds a run", hint=f"resume it with --resume {run_dir}, "
                           "or choose another --out")
        _write_json(run_dir / "config.json", asdict(cfg))
    with trace_to(run_dir / "trace.jsonl"), structlog.contextvars.bound_contextvars(run_id=cfg.run_id):
        return await _synthesize(cfg, run_dir, resume, on_progress)


async def _synthesize(cfg: RunConfig, run_dir: Path, resume: bool, on_progress: Any) -> dict[str, Any]:
    ds = load_for_env(cfg.env, cfg.dataset)
    feedback, heldout = split_heldout(ds, cfg.heldout_fraction, cfg.seed)
    description = describe(cfg.env, cfg.description)
    client = LLMClient.from_string(cfg.llm, cache=ResponseCache(run_dir / "llm-cache"),
                                   transport=TransportConfig(concurrency=max(cfg.concurrency, 1)))
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens)
    t0 = time.monotonic()
    hide = (str(Path(cfg.dataset).resolve().parent),) if cfg.dataset else ()
    graph = build_graph()
    try:
        async with Sandbox(SandboxConfig(hide=(*hide, str(run_dir.resolve())))) as sandbox, \
                AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoint.sqlite")) as saver:
            agents = AgentDeps(llm=client, sandbox=sandbox, feedback=feedback, heldout=heldout,
                               description=description, params=params, limits=Limits(), run_dir=run_dir)
            deps = SearchDeps(agents=agents, method=cfg.method, seed=cfg.seed, budget=Budget(
                cfg.budget, cfg.concurrency, cfg.max_tokens, cfg.max_cost_usd, cfg.max_seconds),
                env_id=cfg.env, plan_episodes=cfg.plan_episodes)
            app = graph.compile(checkpointer=saver)
            config: Any = {"configurable": {"thread_id": THREAD}, "recursion_limit": 4 * cfg.budget + 50}
            snapshot = await app.aget_state(config)
            if resume and not snapshot.values:
                resume = False  # killed before the first checkpoint: start over
            if resume and not snapshot.next:
                log.info("run.already_finished", run_dir=str(run_dir))
            else:
                async for update in app.astream(None if resume else {}, config, context=deps,
                                                stream_mode="updates", durability="sync"):
                    ctl = update.get("controller") if isinstance(update, dict) else None
                    if isinstance(ctl, dict) and "controller" in ctl:
                        _write_json(run_dir / "tree.json", ctl["controller"])
                        if on_progress is not None:
                            on_progress(_progress(ctl, cfg))
            final = (await app.aget_state(config)).values
    finally:
        await close_shared_session()
    return _finish(cfg, run_dir, final, time.monotonic() - t0)


def _progress(update: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    ctrl = load_controller(update["controller"])
    best = ctrl.best_node
    return {"calls": update.get("calls", 0), "budget": cfg.budget, "best": best.score if best else None,
            "heldout": best.heldout if best else None, "tokens": update.get("tokens", 0),
            "cost_usd": update.get("cost_usd", 0.0), "stop": update.get("stop"),
            "in_flight": len(update.get("inflight") or {})}


def _finish(cfg: RunConfig, run_dir: Path, state: dict[str, Any], wall: float) -> dict[str, Any]:
    if not state.get("controller"):
        raise CwmError("the run produced no search state", hint="check the trace for the error")
    ctrl = load_controller(state["controller"])
    _write_json(run_dir / "tree.json", state["controller"])
    best = ctrl.best_node
    program_path = run_dir / "best_program.py"
    if best is not None and best.program is not None:
        program_path.write_text(best.program, encoding="utf-8")
    summary = {
        "env": cfg.env, "method": cfg.method, "llm": cfg.llm, "run_id": cfg.run_id,
        "accuracy": best.score if best else 0.0,
        "heldout_accuracy": best.heldout if best else None,
        "best_node": best.id if best else None,
        "llm_calls": int(state.get("paid_calls", 0)), "search_calls": int(state.get("calls", 0)),
        "tokens": int(state.get("tokens", 0)), "cost_usd": round(float(state.get("cost_usd", 0.0)), 6),
        "wall_s": round(wall, 3), "search_s": round(float(state.get("elapsed_s", 0.0)), 3),
        "stop": state.get("stop"), "nodes": len(ctrl.nodes) - 1, "run_dir": str(run_dir),
        "program": str(program_path) if program_path.exists() else None,
        "plan": state.get("plan"),
    }
    _write_json(run_dir / "summary.json", summary)
    log.info("run.summary", **summary)
    return summary
