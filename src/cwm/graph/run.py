"""A synthesis run: its directory, its checkpoint, resuming it, and its summary.

Run directory:
    config.json        what was asked (resume reads it back)
    checkpoint.sqlite  LangGraph checkpoints, one per superstep (durability "sync")
    llm-cache/         every LLM response, content-addressed: a resumed run replays, never re-pays
    llm-ledger.jsonl   every paid call (tokens, cost), on disk before its reply enters the cache
    segments.json      start and last-seen time of each running segment (wall time excludes downtime)
    llm/NNNNNN.json    prompt and response text of expansion N
    trace.jsonl        every event (selection, LLM call, sandbox result, expansion, backprop, new best)
    tree.json          the search tree after the last superstep
    best_program.py    the chosen Code World Model
    summary.json       accuracy, held-out accuracy, calls, tokens, cost, wall time, anytime curve

Accounting across interruptions: paid calls, tokens and cost come from the ledger, so a reply billed just
before a crash is counted once, as paid, even though the resumed run serves it from the cache (see
``cwm.agents.llm.ledger``). ``wall_s`` and ``--max-time`` count running time only (``cwm.graph.progress``).
A finished run resumed with a larger ``--budget`` continues its search; a run stopped by an LLM error
retries. Cost is null (unknown) when a paid call's model has no known price; ``--max-cost`` then refuses
to start.

Held-out check: a seeded fifth of the trajectories (at least one when there are two or more) is never
shown to the LLM. The search optimises accuracy on the rest (the feedback set); the best program is the
one with the highest feedback accuracy, the earliest on ties, and its held-out accuracy is reported next
to it. The held-out set never influences the search, so it stays an honest estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from cwm.agents.expand import AgentDeps
from cwm.agents.llm import (
    CallLimit,
    Cassette,
    HttpPool,
    LLMClient,
    PaidLedger,
    PriceTable,
    ProviderLimits,
    ResponseCache,
    SamplingParams,
    TransportConfig,
    parse_provider,
)
from cwm.envs.dataset import Dataset, load_for_env
from cwm.envs.describe import describe
from cwm.errors import CwmError
from cwm.graph.methods import method_version, upgrade_config
from cwm.graph.progress import Segments, anytime_curve, curve_summary, no_program_replies
from cwm.graph.search import Budget, Method, SearchDeps, build_graph, load_controller
from cwm.nodes.registry import run_nodes
from cwm.sandbox.worker import Limits, Sandbox, SandboxConfig
from cwm.tracing import trace_to

log = structlog.get_logger("cwm.run")
THREAD = "search"


@dataclass
class RunConfig:
    env: str
    llm: str = "local"
    method: Method = "gif-mcts"
    method_version: int | None = None
    """The method's rules version (``cwm.graph.methods``); filled in when the run starts. A config without
    one predates versions: it resumes as the method it ran (``gif-mcts`` then was ``gif-mcts-paper``)."""
    budget: int = 10
    concurrency: int = 1
    seed: int = 0
    dataset: str | None = None
    description: str | None = None
    describe: str = "docs+facts"
    """What the prompts describe the environment with: docs+facts or docs (the paper's); see cwm.envs.describe."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments the environment is made with (--env-kwargs): for its facts and for --plan."""
    heldout_fraction: float = 0.2
    temperature: float = 1.0
    top_p: float = 0.8
    max_new_tokens: int = 1500
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    plan_episodes: int = 0
    plan_timeout_s: float = 600.0
    """Deadline of the planning after the search (``--plan``)."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # LLM transport and I/O (as for `cwm ask`)
    timeout_s: float = 1800.0
    read_timeout_s: float = 120.0
    llm_concurrency: int | None = None
    """At most this many calls to the provider in flight (``--llm-concurrency``); a host's shared cap,
    when it lends one, takes its place."""
    stream: bool = True
    prices: str | None = None
    cache_dir: str | None = None
    """Response cache; default RUN_DIR/llm-cache."""
    record: str | None = None
    replay: str | None = None
    # sandbox (as for `cwm check`)
    memory_mb: int = 2048
    load_timeout_s: float = 10.0
    isolation: str = "auto"
    preload: list[str] = field(default_factory=list)
    allow_import: list[str] = field(default_factory=list)
    """Libraries candidates may import besides the standard library and numpy (--allow-import)."""
    nodes: list[str] = field(default_factory=list)
    """Node types enabled beyond generate/improve/fix (--node NAME or MODULE:ATTR; see cwm.nodes)."""
    heldout_trajectories: list[int] | None = None
    """Fixed held-out trajectories (set when a run's data grows, so new data never reshuffles the split)."""


RESUME_SETTABLE = ("budget", "max_tokens", "max_cost_usd", "max_seconds", "timeout_s", "read_timeout_s",
                   "prices", "record")
"""RunConfig fields a resume may change; every other field is fixed by the run's config.json."""


def split_heldout(ds: Dataset, fraction: float, seed: int,
                  fixed: list[int] | None = None) -> tuple[Dataset, Dataset | None]:
    if fixed is not None:  # the split a run started with; trajectories added later all join the feedback
        mask = np.isin(ds.trajectory, fixed)
        return ds.subset(np.flatnonzero(~mask)), (ds.subset(np.flatnonzero(mask)) if mask.any() else None)
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
        data.setdefault("describe", "docs")  # runs from before --describe were described by docs alone
        return RunConfig(**upgrade_config(data))
    except (OSError, ValueError, TypeError) as exc:
        raise CwmError(f"{str(run_dir)!r} is not a cwm run directory: {exc}",
                       hint="pass the --out directory of an earlier `cwm synthesize`") from exc


def make_client(cfg: RunConfig, run_dir: Path, *, http: HttpPool | None = None,
                limit: CallLimit | None = None) -> LLMClient:
    """The run's LLM client (its cache, ledger and prices live in the run directory). Refuses (exit 2),
    before any file or connection is made, a hosted provider without its API key and a ``--max-cost``
    for a model whose price is unknown. A host lends ``http`` (its connection pool) and ``limit`` (the
    provider's call cap it shares among its runs); the caller closes the client."""
    spec = parse_provider(cfg.llm)
    prices = PriceTable.from_file(cfg.prices) if cfg.prices else PriceTable()
    if cfg.max_cost_usd is not None and prices.lookup(spec.model) is None:
        raise CwmError(f"--max-cost cannot be enforced: the price of {spec.model!r} is unknown",
                       hint=f'pass --prices FILE holding {{"{spec.model}": [usd_per_mtok_in, usd_per_mtok_out]}}')
    if cfg.record and cfg.replay:
        raise CwmError("--record and --replay exclude each other")
    cassette = Cassette(cfg.record, "record") if cfg.record else (
        Cassette(cfg.replay, "replay") if cfg.replay else None)
    if limit is None:
        limit = ProviderLimits(cfg.llm_concurrency).for_llm(cfg.llm)
    return LLMClient(spec, cache=ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "llm-cache"),
                     cassette=cassette, prices=prices, stream=cfg.stream,
                     ledger=PaidLedger(run_dir / "llm-ledger.jsonl"), http=http,
                     transport=TransportConfig(concurrency=max(cfg.concurrency, 1), read_timeout=cfg.read_timeout_s,
                                               call_timeout=cfg.timeout_s, shared_limit=limit))


def sandbox_config(cfg: RunConfig, run_dir: Path) -> SandboxConfig:
    """The sandbox a run's candidates are scored in: the run directory and the dataset's folder hidden
    (a candidate must not read its own answers), the run's import policy and limits."""
    if cfg.preload:  # LLM-written candidates never run where the environment is already in memory
        raise CwmError("--preload is for trusted reference models (cwm check); synthesize scores "
                       "untrusted programs", hint="drop --preload; use --allow-import for libraries")
    hide = (str(Path(cfg.dataset).resolve().parent),) if cfg.dataset else ()
    return SandboxConfig(limits=Limits(memory_mb=cfg.memory_mb, load_s=cfg.load_timeout_s),
                         isolation=cfg.isolation,  # type: ignore[arg-type]
                         hide=(*hide, str(run_dir.resolve())), allow_import=tuple(cfg.allow_import))


async def synthesize(cfg: RunConfig, run_dir: Path, *, resume: bool = False, on_progress: Any = None,
                     client: LLMClient | None = None, sandbox: Sandbox | None = None) -> dict[str, Any]:
    """Run (or resume) a search; returns the summary also written to ``summary.json``.

    Dependencies are injected: a host running many runs (the service, the bench) passes each run a
    ``client`` from ``make_client(cfg, run_dir, http=its_pool, limit=its_cap)`` and may pass an open
    ``sandbox`` built from ``sandbox_config(cfg, run_dir)``; it owns and closes both. What is not passed
    is built from ``cfg`` here and closed when the run ends, so nothing a run opened outlives it and
    nothing it borrowed is closed under another run.
    """
    if cfg.budget < 1 or cfg.concurrency < 1:
        raise CwmError("--budget and --concurrency must be at least 1")
    if not 0 <= cfg.heldout_fraction < 1:
        raise CwmError("--heldout must be in [0, 1)")
    if not resume and (run_dir / "checkpoint.sqlite").exists():
        raise CwmError(f"{str(run_dir)!r} already holds a run", hint=f"resume it with --resume {run_dir}, "
                       "or choose another --out")
    if resume and (run_dir / "config.json").is_file():  # the method is the run's, whoever resumes it
        with contextlib.suppress(CwmError):
            saved = load_config(run_dir)
            cfg.method, cfg.method_version = saved.method, saved.method_version
    cfg.method_version = method_version(cfg.method, cfg.method_version)
    # what the caller lends is entered as is (it closes it); what is built here is closed at the run's end
    box: contextlib.AbstractAsyncContextManager[Sandbox] = \
        Sandbox(sandbox_config(cfg, run_dir)) if sandbox is None else contextlib.nullcontext(sandbox)
    llm: contextlib.AbstractAsyncContextManager[LLMClient] = \
        make_client(cfg, run_dir) if client is None else contextlib.nullcontext(client)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", asdict(cfg))  # a resume may have raised the budget or limits
    async with llm as run_client:
        with trace_to(run_dir / "trace.jsonl"), structlog.contextvars.bound_contextvars(run_id=cfg.run_id):
            return await _synthesize(cfg, run_dir, resume, on_progress, run_client, box)


async def _synthesize(cfg: RunConfig, run_dir: Path, resume: bool, on_progress: Any,
                      client: LLMClient, box: contextlib.AbstractAsyncContextManager[Sandbox]) -> dict[str, Any]:
    segments = Segments(run_dir / "segments.json")
    segments.begin()
    beat = asyncio.create_task(segments.heartbeat())
    downtime = 0.0
    try:
        ds = load_for_env(cfg.env, cfg.dataset)
        feedback, heldout = split_heldout(ds, cfg.heldout_fraction, cfg.seed, cfg.heldout_trajectories)
        description = describe(cfg.env, cfg.description, cfg.describe, cfg.env_kwargs)
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens)
        graph = build_graph()
        async with box as sandbox, \
                AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoint.sqlite")) as saver:
            app = graph.compile(checkpointer=saver)
            config: Any = {"configurable": {"thread_id": THREAD}, "recursion_limit": 4 * cfg.budget + 50}
            snapshot = await app.aget_state(config)
            if resume and not snapshot.values:
                resume = False  # killed before the first checkpoint: start over
            prior: dict[str, Any] = dict(snapshot.values) if resume else {}
            if prior.get("started"):
                downtime = segments.downtime_since(float(prior["started"]))
            run = True
            # finished = nothing left in the step at all: ``next`` omits tasks that completed (their writes are
            # saved) before a kill cut the step short, and those must be applied by resuming, not dropped
            if resume and not snapshot.next and not snapshot.tasks:
                if prior.get("stop") == "solved":
                    log.info("run.already_finished", run_dir=str(run_dir))
                    run, downtime = False, 0.0
                else:  # a finished run, resumed with a larger budget or limit (or after an LLM error)
                    log.info("run.extend", run_dir=str(run_dir), previous_stop=prior.get("stop"),
                             calls=prior.get("calls"), budget=cfg.budget)
                    await app.aupdate_state(config, {"stop": None}, as_node="expand")
            agents = AgentDeps(llm=client, sandbox=sandbox, feedback=feedback, heldout=heldout,
                               description=description, params=params, limits=sandbox.config.limits,
                               run_dir=run_dir,
                               nodes=run_nodes(list(cfg.nodes)), run_id=cfg.run_id)
            # the search measures time from its first step, downtime included: give the limit that back
            max_seconds = None if cfg.max_seconds is None else cfg.max_seconds + downtime
            deps = SearchDeps(agents=agents, method=cfg.method, seed=cfg.seed, budget=Budget(
                cfg.budget, cfg.concurrency, cfg.max_tokens, cfg.max_cost_usd, max_seconds),
                env_id=cfg.env, plan_episodes=cfg.plan_episodes, env_kwargs=cfg.env_kwargs,
                plan_timeout_s=cfg.plan_timeout_s)
            if run:
                async for update in app.astream(None if resume else {}, config, context=deps,
                                                stream_mode="updates", durability="sync"):
                    ctl = update.get("controller") if isinstance(update, dict) else None
                    if isinstance(ctl, dict) and "controller" in ctl:
                        _write_json(run_dir / "tree.json", ctl["controller"])
                        if on_progress is not None:
                            on_progress(_progress(ctl, cfg, client))
            final = {**(await app.aget_state(config)).values, "import_policy": sandbox.policy_text()}
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        segments.tick()
    return _finish(cfg, run_dir, final, segments, downtime, client)


def _accounting(state: dict[str, Any], client: LLMClient) -> dict[str, Any]:
    """Paid calls, tokens and cost: the ledger's, unless the run predates it (then the search state's)."""
    totals = client.ledger.totals() if client.ledger is not None else None
    if totals is not None and totals.calls >= int(state.get("paid_calls", 0)):
        return totals.to_json()
    tokens = int(state.get("tokens", 0))
    return {"llm_calls": int(state.get("paid_calls", 0)), "input_tokens": None, "output_tokens": None,
            "tokens": tokens, "cost_usd": round(float(state.get("cost_usd", 0.0)), 6), "unpriced_calls": 0}


def _progress(update: dict[str, Any], cfg: RunConfig, client: LLMClient) -> dict[str, Any]:
    ctrl = load_controller(update["controller"])
    best = ctrl.best_node
    acct = _accounting(update, client)
    return {"calls": update.get("calls", 0), "budget": cfg.budget, "best": best.score if best else None,
            "heldout": best.heldout if best else None, "paid_calls": acct["llm_calls"], "tokens": acct["tokens"],
            "cost_usd": acct["cost_usd"], "stop": update.get("stop"),
            "in_flight": len(update.get("inflight") or {}), "curve": curve_summary(anytime_curve(ctrl.nodes))}


def _finish(cfg: RunConfig, run_dir: Path, state: dict[str, Any], segments: Segments, downtime: float,
            client: LLMClient) -> dict[str, Any]:
    if not state.get("controller"):
        raise CwmError("the run produced no search state", hint="check the trace for the error")
    ctrl = load_controller(state["controller"])
    _write_json(run_dir / "tree.json", state["controller"])
    best = ctrl.best_node
    program_path = run_dir / "best_program.py"
    if best is not None and best.program is not None:
        program_path.write_text(best.program, encoding="utf-8")
    stop = state.get("stop")
    acct = _accounting(state, client)
    summary = {
        "env": cfg.env, "method": cfg.method, "llm": cfg.llm, "run_id": cfg.run_id,
        "accuracy": best.score if best else 0.0,
        "heldout_accuracy": best.heldout if best else None,
        "best_node": best.id if best else None,
        "solved": stop == "solved",
        "llm_calls": acct["llm_calls"], "search_calls": int(state.get("calls", 0)),
        "tokens": acct["tokens"], "input_tokens": acct["input_tokens"], "output_tokens": acct["output_tokens"],
        "cost_usd": acct["cost_usd"], "unpriced_calls": acct["unpriced_calls"],
        "wall_s": round(segments.running_s, 3), "segments": len(segments.items),
        "search_s": round(max(0.0, float(state.get("elapsed_s", 0.0)) - downtime), 3),
        "stop": stop,
        "llm_error": stop[len("LLM error: "):] if isinstance(stop, str) and stop.startswith("LLM error: ") else None,
        "no_program_replies": no_program_replies(ctrl.nodes),
        "nodes": len(ctrl.nodes) - 1, "run_dir": str(run_dir),
        "program": str(program_path) if program_path.exists() else None,
        "plan": state.get("plan"),
        "allow_import": list(cfg.allow_import), "import_policy": state.get("import_policy"),
        "curve": anytime_curve(ctrl.nodes),
    }
    _write_json(run_dir / "summary.json", summary)
    log.info("run.summary", **{k: v for k, v in summary.items() if k != "curve"})
    return summary
