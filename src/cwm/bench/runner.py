"""One bench run: the search (or its resume), a scoring of its best program on every recorded transition,
and a planning evaluation. Everything goes through the same functions the CLI calls
(``cwm.graph.run.synthesize``, ``cwm.sandbox.evaluate``, ``cwm.planning.agent.plan``).

Resume: a run whose ``bench-row.json`` exists is done. Otherwise a run directory holding a checkpoint is
resumed by the search itself (every reply it already paid for comes from the run's cache, and its ledger
keeps the bill), and a run that finished its search (``summary.json``) only repeats the free evaluation.
Fields the search or the scorer may not provide in this version (``ceiling``, ``curve``) are read with
``.get`` and stay null where absent.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cwm.bench import baselines
from cwm.bench.matrix import BenchSpec, RunSpec
from cwm.bench.paper import COMPARABLE_METHODS

if TYPE_CHECKING:
    from cwm.agents.llm import HttpPool, ProviderLimits

ROW_FILE = "bench-row.json"
RERUN_STOPS = ("cost limit",)
"""A search that stopped on these is continued by a resume (the bench's --max-cost may have grown)."""

Progress = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Shared:
    """What the runs one host executes together lend each other: pooled connections (the host opens and
    closes them) and each provider's cap on calls in flight (``--llm-concurrency``)."""

    http: HttpPool | None = None
    limits: ProviderLimits | None = None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def read_row(run_dir: Path) -> dict[str, Any] | None:
    try:
        row: dict[str, Any] = json.loads((run_dir / ROW_FILE).read_text(encoding="utf-8"))
        return row
    except (OSError, ValueError):
        return None


def _config(spec: BenchSpec, run: RunSpec, max_cost: float | None) -> Any:
    """A RunConfig for this run, passing only the fields this version of the search has."""
    from cwm.graph.run import RunConfig

    have = {f.name for f in dataclasses.fields(RunConfig)}
    wanted: dict[str, Any] = {
        "env": run.env, "llm": spec.llm, "method": run.method, "budget": spec.budget,
        "concurrency": spec.concurrency, "seed": run.seed, "heldout_fraction": spec.heldout,
        "temperature": spec.temperature, "max_new_tokens": spec.max_new_tokens, "max_cost_usd": max_cost,
        "prices": spec.prices, "timeout_s": spec.timeout_s, "read_timeout_s": spec.read_timeout_s,
    }
    if spec.describe is not None:
        wanted["describe"] = spec.describe
    if spec.allow_import:
        wanted["allow_import"] = list(spec.allow_import)
    return RunConfig(**{k: v for k, v in wanted.items() if k in have})


async def search(spec: BenchSpec, run: RunSpec, run_dir: Path, max_cost: float | None,
                 progress: Progress | None, shared: Shared | None = None) -> dict[str, Any]:
    """The run's search summary: read back when finished, else started or resumed."""
    from cwm.graph.run import load_config, make_client, synthesize

    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("stop") not in RERUN_STOPS and not summary.get("llm_error"):
            return summary
    resume = (run_dir / "checkpoint.sqlite").is_file()
    if resume:
        cfg = load_config(run_dir)
        cfg.budget, cfg.max_cost_usd, cfg.prices = spec.budget, max_cost, spec.prices
    else:
        cfg = _config(spec, run, max_cost)

    def on_progress(p: dict[str, Any]) -> None:
        if progress is not None:
            progress(run.key, p)

    shared = shared or Shared()
    limit = shared.limits.for_llm(cfg.llm) if shared.limits is not None else None
    async with make_client(cfg, run_dir, http=shared.http, limit=limit) as client:
        result: dict[str, Any] = await synthesize(cfg, run_dir, resume=resume, on_progress=on_progress,
                                                  client=client)
    return result


async def _score(env: str, code: str, allow_import: list[str]) -> dict[str, Any]:
    """The best program on every recorded transition, with the cwm and the paper's (official) metric."""
    from cwm.envs.dataset import load_for_env
    from cwm.sandbox import Sandbox, SandboxConfig, evaluate

    ds = load_for_env(env)
    async with Sandbox(SandboxConfig(allow_import=tuple(allow_import))) as sb:
        ours = (await evaluate(sb, code, ds, metric="cwm")).to_json()
        official = (await evaluate(sb, code, ds, metric="official")).to_json()
    return {"accuracy": ours["accuracy"], "strict_accuracy": ours["strict_accuracy"],
            "official_accuracy": official["accuracy"], "ceiling": ours.get("ceiling"),
            "transitions": ours["transitions"], "score_error": ours["error"]}


def _plan_config(spec: BenchSpec, run: RunSpec, program: Path | None) -> Any:
    from cwm.planning.agent import PlanConfig

    # every run plans on the same seeded episodes (seed 0), so the shipped baselines apply to all of them
    return PlanConfig(env=run.env, model=str(program or "random"), episodes=spec.plan_episodes, seed=0,
                      cem=spec.cem, simulations=spec.simulations, max_steps=spec.plan_max_steps)


async def _plan(spec: BenchSpec, run: RunSpec, program: Path, allow_import: list[str]) -> dict[str, Any]:
    from cwm.planning.agent import plan
    from cwm.planning.models import ModelFailed
    from cwm.sandbox import Sandbox, SandboxConfig

    cfg = _plan_config(spec, run, program)
    try:
        async with Sandbox(SandboxConfig(allow_import=tuple(allow_import))) as sb:
            result = await plan(cfg, code=program.read_text(encoding="utf-8"), sandbox=sb)
    except ModelFailed as exc:
        return {"plan_error": exc.error.to_json(), "mean_return": None, "returns": []}
    return {"plan_error": None, "mean_return": result["mean_return"], "returns": result["returns"],
            "cached_random": result.get("random_return"), "cached_oracle": result.get("oracle_return"),
            "plan_s": result.get("elapsed_s")}


def baselines_discrete(env: str) -> bool:
    from cwm.bench.matrix import split_of

    return split_of(env) == "discrete"


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved config.json (describe mode, method version), {} if unreadable."""
    try:
        cfg: dict[str, Any] = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        return cfg
    except (OSError, ValueError):
        return {}


def _ledger_models(run_dir: Path) -> list[str]:
    models: set[str] = set()
    try:
        for line in (run_dir / "llm-ledger.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                models.add(str(json.loads(line).get("model", "")))
    except (OSError, ValueError):
        pass
    return sorted(m for m in models if m)


async def run_one(spec: BenchSpec, run: RunSpec, bench_dir: Path, *, max_cost: float | None = None,
                  progress: Progress | None = None, shared: Shared | None = None) -> dict[str, Any]:
    """Search, score and plan one (env, method, seed); returns (and writes) its results row."""
    run_dir = run.run_dir(bench_dir)
    done = read_row(run_dir)
    if done is not None:
        return done
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    summary = await search(spec, run, run_dir, max_cost, progress, shared)
    t0 = time.perf_counter()
    allow = list(summary.get("allow_import") or [])
    program = run_dir / "best_program.py"
    scored: dict[str, Any] = {"accuracy": None, "strict_accuracy": None, "official_accuracy": None,
                              "ceiling": None, "transitions": None, "score_error": None}
    planned: dict[str, Any] = {"plan_error": None, "mean_return": None, "returns": []}
    if program.is_file():
        code = program.read_text(encoding="utf-8")
        scored = await _score(run.env, code, allow)
        if spec.plan_episodes > 0:
            planned = await _plan(spec, run, program, allow)
    # the baselines are looked up even without a program: the paper counts a failed synthesis as 𝓡 = 0
    planner_key = _plan_config(spec, run, None).planner_key(baselines_discrete(run.env))
    rnd = baselines.lookup(planner_key, "random", planned.get("cached_random"))
    orc = baselines.lookup(planner_key, "oracle", planned.get("cached_oracle"))
    saved = _run_config(run_dir)
    # a config without the field predates --describe: those runs were described by the docs alone
    describe = summary.get("describe") or saved.get("describe") or "docs"
    row = {
        "env": run.env, "method": run.method, "seed": run.seed, "describe": describe, "llm": spec.llm,
        "comparable": run.method in COMPARABLE_METHODS and describe == "docs" and not allow,
        "allow_import": allow,
        "accuracy": scored["accuracy"], "train_accuracy": summary.get("accuracy"),
        "official_accuracy": scored["official_accuracy"], "strict_accuracy": scored["strict_accuracy"],
        "heldout_accuracy": summary.get("heldout_accuracy"), "ceiling": scored["ceiling"],
        "transitions": scored["transitions"], "score_error": scored["score_error"],
        "normalized_return": baselines.normalized(planned["mean_return"], rnd, orc),
        "mean_return": planned["mean_return"], "returns": planned["returns"],
        "random_return": None if rnd is None else rnd.mean_return,
        "oracle_return": None if orc is None else orc.mean_return,
        "baseline_source": {"random": None if rnd is None else rnd.source,
                            "oracle": None if orc is None else orc.source},
        "planner": planner_key, "plan_error": planned["plan_error"],
        "llm_calls": summary.get("llm_calls"), "search_calls": summary.get("search_calls"),
        "tokens": summary.get("tokens"), "input_tokens": summary.get("input_tokens"),
        "output_tokens": summary.get("output_tokens"), "cost_usd": summary.get("cost_usd"),
        "search_wall_s": summary.get("wall_s"), "eval_s": None, "wall_s": None, "curve": summary.get("curve"),
        "stop": summary.get("stop"), "solved": summary.get("solved"), "llm_error": summary.get("llm_error"),
        "models": _ledger_models(run_dir), "method_version": summary.get("method_version", saved.get("method_version")),
        "run_dir": str(run_dir),
    }
    row["eval_s"] = round(time.perf_counter() - t0, 3)
    row["wall_s"] = round(float(summary.get("wall_s") or 0.0) + row["eval_s"], 3)  # running time, no downtime
    _write_json(run_dir / ROW_FILE, row)
    return row

