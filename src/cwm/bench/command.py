"""``cwm bench``: the CLI entry. Parses into a ``BenchSpec``, schedules the runs on an executor, keeps
one progress line, enforces ``--max-cost`` across all runs, and writes ``results.json`` and ``report.md``.

``--max-cost`` holds for the whole bench: each run starts with the money left as its own limit (the
search stops itself there), and when the runs' total reaches the limit the bench cancels what is
running, starts nothing more, writes what it has and exits 1; ``--resume`` with a larger limit continues.
Exit codes: 0 every run evaluated, 1 stopped early or some run failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from cwm import cli_args as A
from cwm.errors import CwmError

EXIT_OK, EXIT_FAILED = 0, 1

SPEC_FLAGS = ("llm", "envs", "methods", "budget", "seeds", "describe", "allow_import", "plan_episodes", "cem",
              "simulations", "plan_max_steps", "concurrency", "max_new_tokens", "temperature", "timeout",
              "read_timeout")
"""Flags that decide a bench's numbers: ``bench.json`` fixes them, so a resume refuses to change them."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="run the paper's CWMB tables: envs × methods × seeds, then a report",
                       description="Run every (env, method, seed) as a search and a planning evaluation, then "
                       "write DIR/results.json and DIR/report.md beside the paper's Tables 2, 10 and 11. Rows "
                       "are comparable with the paper only for --methods gif-mcts-paper,worldcoder with "
                       "--describe docs. --resume --out DIR continues a bench with the settings it started with "
                       "(only --max-cost, --prices, --parallel, --llm-concurrency and the executor may change).")
    p.add_argument("--llm", type=A.llm_provider, default="local", metavar="PROVIDER", help="as for `cwm ask`")
    p.add_argument("--envs", type=A.non_empty_text, default="all",
                   help="all, discrete, continuous, or NAME,NAME (default all)")
    p.add_argument("--methods", type=A.non_empty_text, default="gif-mcts,worldcoder",
                   help="comma-separated search methods: gif-mcts, gif-mcts-paper, worldcoder, best-of-n "
                        "(default gif-mcts,worldcoder)")
    p.add_argument("--budget", type=A.positive_int, default=10, help="LLM calls per run (default 10)")
    p.add_argument("--seeds", type=A.positive_int, default=1, help="seeds per (env, method) (default 1)")
    p.add_argument("--describe", choices=["docs", "docs+facts"],
                   help="what the prompts describe (default: the search's own default)")
    p.add_argument("--allow-import", type=A.allow_import, action="extend", default=[], metavar="MODULE[,MODULE]",
                   help="libraries programs may import besides the standard library and numpy (tool-using "
                        "models; rows are labelled as ours)")
    p.add_argument("--plan-episodes", type=A.non_negative_int, default=10,
                   help="planning episodes per run (default 10; 0 skips planning)")
    p.add_argument("--cem", choices=["paper", "mpc"], default="paper",
                   help="CEM preset for continuous actions (default paper, as the paper's 𝓡)")
    p.add_argument("--simulations", type=A.positive_int, default=25, help="MCTS simulations per step (25)")
    p.add_argument("--plan-max-steps", type=A.positive_int, help="cut planning episodes at this many steps")
    p.add_argument("--concurrency", type=A.positive_int, default=1, help="expansions in flight per run (1)")
    p.add_argument("--parallel", type=A.positive_int, default=1, help="runs at once (default 1)")
    p.add_argument("--llm-concurrency", type=A.int_range(1, 256), default=None, metavar="N",
                   help="at most N LLM calls in flight per provider across all the bench's runs, on every node "
                        "(default: each run's --concurrency only)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local threads, or tasks on a Ray cluster (extra `ray`)")
    p.add_argument("--ray-address", type=A.non_empty_text, help="Ray cluster address (default: a local cluster)")
    p.add_argument("--out", type=A.writable_dir, help="bench directory (default bench/TIME)")
    p.add_argument("--resume", action="store_true", help="continue the bench in --out")
    p.add_argument("--max-cost", type=A.positive_float, metavar="USD", help="stop the whole bench at this cost")
    p.add_argument("--prices", type=A.readable_file, metavar="JSON", help="price table, as for `cwm ask`")
    p.add_argument("--max-new-tokens", type=A.positive_int, default=1500, help="reply cap per call (1500, the paper's)")
    p.add_argument("--temperature", type=A.temperature, default=1.0, help="sampling temperature (1.0)")
    p.add_argument("--timeout", type=A.positive_float, default=1800.0, metavar="SECONDS",
                   help="one LLM call's whole time, retries included (1800)")
    p.add_argument("--read-timeout", type=A.positive_float, default=120.0, metavar="SECONDS",
                   help="silence allowed while reading a reply (120)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and estimate tokens and cost; run nothing")
    p.add_argument("--baselines-only", action="store_true",
                   help="measure the oracle and random returns of the selected envs with these planner settings")
    p.add_argument("--json", action="store_true", help="print results.json (or the dry-run plan) on stdout")
    p.set_defaults(func=cmd_bench, bench_default=p.get_default)


def _methods(text: str) -> list[str]:
    from cwm.graph.search import METHODS

    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise CwmError(f"--methods: unknown method {', '.join(bad) or '(none)'}",
                       hint=f"choose from {', '.join(METHODS)}")
    return names


def _spec(args: argparse.Namespace) -> Any:
    from cwm.bench.matrix import BenchSpec, select_envs

    return BenchSpec(llm=args.llm, envs=select_envs(args.envs), methods=_methods(args.methods), budget=args.budget,
                     seeds=args.seeds, plan_episodes=args.plan_episodes, concurrency=args.concurrency,
                     describe=args.describe, cem=args.cem, simulations=args.simulations,
                     plan_max_steps=args.plan_max_steps, max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, prices=args.prices, timeout_s=args.timeout,
                     read_timeout_s=args.read_timeout, allow_import=list(args.allow_import))


def _bench_dir(args: argparse.Namespace) -> Path:
    return Path(args.out or f"bench/{time.strftime('%Y%m%d-%H%M%S')}")


def cmd_bench(args: argparse.Namespace) -> int:
    from cwm.bench.matrix import BenchSpec

    _check_flags(args)
    bench_dir = _bench_dir(args)
    saved = bench_dir / "bench.json"
    changed = False
    if args.resume:
        if not saved.is_file():
            raise CwmError(f"--resume: {str(bench_dir)!r} holds no bench", hint="pass the --out of an earlier bench")
        spec = BenchSpec.load(saved)
        limit = spec.extra.get("max_cost_usd")
        changed = bool(args.prices) or (args.max_cost is not None and args.max_cost != limit)
        if args.prices:
            spec.prices = args.prices
        if args.max_cost is None:
            args.max_cost = limit  # a resume keeps the bench's cost limit unless given a new one
        spec.extra["max_cost_usd"] = args.max_cost
    else:
        spec = _spec(args)
        spec.extra["max_cost_usd"] = args.max_cost
        if saved.is_file() and not args.dry_run:
            raise CwmError(f"{str(bench_dir)!r} already holds a bench", hint="continue it with --resume, or "
                           "choose another --out")
    _check_provider(spec, args)
    if args.dry_run:
        return _dry_run(spec, bench_dir, args.json)
    if args.baselines_only:
        return _baselines_only(spec, bench_dir, args)
    bench_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume or changed:  # the prices and the limit a later resume starts from
        spec.save(saved)
    return _run(spec, bench_dir, args)


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse flags that contradict each other or that a resume would silently ignore."""
    if args.resume and not args.out:
        raise CwmError("--resume needs --out DIR: the bench to continue")
    if args.ray_address and args.executor != "ray":
        raise CwmError("--ray-address needs --executor ray", hint="add --executor ray, or drop --ray-address")
    if args.dry_run and args.baselines_only:
        raise CwmError("--dry-run and --baselines-only do not go together",
                       hint="--dry-run lists the search runs; --baselines-only measures baselines")
    default = getattr(args, "bench_default", None)
    if args.resume and default is not None:
        changed = ["--" + d.replace("_", "-") for d in SPEC_FLAGS if getattr(args, d) != default(d)]
        if changed:
            raise CwmError(f"--resume keeps the settings in {args.out}/bench.json; {', '.join(changed)} "
                           "cannot change them", hint="drop them, or start a new bench with another --out")


def _check_provider(spec: Any, args: argparse.Namespace) -> None:
    """Refuse before anything slow: a hosted provider without its key, --max-cost at an unknown price."""
    from cwm.agents.llm import PriceTable, parse_provider

    provider = parse_provider(spec.llm)
    if args.dry_run or args.baselines_only:
        return
    provider.require_key()
    if args.max_cost is not None:
        prices = PriceTable.from_file(spec.prices) if spec.prices else PriceTable()
        if prices.lookup(provider.model) is None:
            raise CwmError(f"--max-cost cannot be enforced: the price of {provider.model!r} is unknown",
                           hint="pass --prices FILE")


def _dry_run(spec: Any, bench_dir: Path, as_json: bool) -> int:
    from cwm.bench.matrix import estimate, matrix
    from cwm.bench.runner import read_row

    items: list[dict[str, Any]] = []
    for e in estimate(spec, matrix(spec)):
        run_dir = e.run.run_dir(bench_dir)
        row = read_row(run_dir)
        done = row is not None and not row.get("llm_error")  # a run the provider failed is retried
        state = "done" if done else ("resumable" if (run_dir / "checkpoint.sqlite").exists() else "new")
        items.append({"env": e.run.env, "method": e.run.method, "seed": e.run.seed, "state": state,
                      "calls": e.calls, "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
                      "cost_usd": e.cost_usd, "run_dir": str(run_dir)})
    todo = [i for i in items if i["state"] != "done"]
    costs = [i["cost_usd"] for i in todo]
    total = {"runs": len(items), "to_run": len(todo), "calls": sum(i["calls"] for i in todo),
             "input_tokens": sum(i["input_tokens"] for i in todo),
             "output_tokens": sum(i["output_tokens"] for i in todo),
             "cost_usd": None if any(c is None for c in costs) else round(sum(c or 0.0 for c in costs), 4),
             "basis": "upper bound: every call made, every reply at --max-new-tokens"}
    if as_json:
        sys.stdout.write(json.dumps({"dry_run": True, "runs": items, "total": total}) + "\n")
        return EXIT_OK
    for i in items:
        cost = "$?" if i["cost_usd"] is None else f"${i['cost_usd']:.4f}"
        sys.stdout.write(f"{i['env']:28s} {i['method']:16s} seed {i['seed']}  {i['state']:9s} {i['calls']:4d} calls  "
                         f"~{i['input_tokens']:,} in + {i['output_tokens']:,} out tokens  {cost}\n")
    tcost = "unknown (no price for this model; pass --prices)" if total["cost_usd"] is None else \
        f"${total['cost_usd']:.4f}"
    sys.stdout.write(f"{total['to_run']} of {total['runs']} runs to go · {total['calls']} calls · "
                     f"~{total['input_tokens']:,} input + {total['output_tokens']:,} output tokens · {tcost} "
                     f"({total['basis']})\n")
    return EXIT_OK


def _prior_cost(run_dir: Path) -> float:
    """What an unfinished run already spent in earlier segments (its ledger), for --max-cost."""
    from cwm.agents.llm import PaidLedger

    path = run_dir / "llm-ledger.jsonl"
    if not path.is_file():
        return 0.0
    return float(PaidLedger(path).totals().cost_usd or 0.0)


def _run(spec: Any, bench_dir: Path, args: argparse.Namespace) -> int:
    from cwm.bench.executors import EXECUTORS, Job
    from cwm.bench.matrix import matrix
    from cwm.bench.progress import BenchProgress, usd
    from cwm.bench.report import write_report
    from cwm.bench.results import write_results
    from cwm.bench.runner import ROW_FILE, read_row

    runs = matrix(spec)
    progress = BenchProgress(len(runs), spec.budget, tty=sys.stderr.isatty())
    rows: dict[str, dict[str, Any]] = {}
    pending = []
    for run in runs:
        row = read_row(run.run_dir(bench_dir))
        if row is not None and row.get("llm_error"):
            # the provider failed, not the model: evaluate the run again (its paid replies are cached)
            (run.run_dir(bench_dir) / ROW_FILE).unlink(missing_ok=True)
            row = None
        if row is not None:
            rows[run.key] = row
            progress.run_done(run.key, row, prior=True)
        else:
            prior = _prior_cost(run.run_dir(bench_dir))
            if prior:
                progress.run_progress(run.key, {"cost_usd": prior})
            pending.append(run)
    executor = EXECUTORS[args.executor](args.parallel, args.ray_address, progress.run_progress,
                                         args.llm_concurrency)
    running: dict[str, Any] = {}
    errors: dict[str, str] = {}
    executor_stats: dict[str, Any] = {}
    state = "complete"
    try:
        while pending or running:
            while state == "complete" and pending and len(running) < args.parallel:
                left = None if args.max_cost is None else args.max_cost - progress.cost
                if left is not None and left <= 0:
                    state = "stopped: --max-cost reached"
                    break
                run = pending.pop(0)
                own = progress.runs[run.key].cost if run.key in progress.runs else 0.0
                executor.submit(Job(spec, run, bench_dir, None if left is None else own + left))
                running[run.key] = run
            if not running:
                break
            for out in executor.wait(0.5):
                running.pop(out.job.run.key, None)
                if out.status == "ok" and out.row is not None and out.row.get("llm_error"):
                    # an outage is not a failed synthesis: keep it out of the tables; a resume retries it
                    errors[out.job.run.key] = f"LLM error: {out.row['llm_error']}"
                    progress.run_done(out.job.run.key, out.row)
                elif out.status == "ok" and out.row is not None:
                    rows[out.job.run.key] = out.row
                    progress.run_done(out.job.run.key, out.row)
                elif out.status == "error":
                    errors[out.job.run.key] = out.error or "unknown error"
                    progress.run_done(out.job.run.key, None)
            if args.max_cost is not None and progress.cost >= args.max_cost and state == "complete" and \
                    (running or pending):
                state = "stopped: --max-cost reached"
                executor.cancel_all()
            progress.show()
    except KeyboardInterrupt:
        state = "interrupted"
        executor.cancel_all()
        for out in executor.wait(5.0):
            if out.status == "ok" and out.row is not None and not out.row.get("llm_error"):
                rows[out.job.run.key] = out.row
    finally:
        with contextlib.suppress(Exception):  # figures for the record; never a reason to lose the results
            executor_stats = executor.stats()
        executor.close()
        progress.finish()
    ordered = [rows[r.key] for r in runs if r.key in rows]
    if state == "complete" and errors:
        state = "incomplete: some runs failed"
    status = {"state": state, "runs": len(runs), "evaluated": len(ordered), "errors": errors,
              "not_evaluated": [r.key for r in runs if r.key not in rows], **progress.snapshot(), **executor_stats}
    doc = write_results(bench_dir, _spec_json(spec), ordered, status)
    report = write_report(doc, bench_dir)
    for key, err in errors.items():
        sys.stderr.write(f"cwm: bench run {key} failed: {err}\n")
    if state != "complete":
        sys.stderr.write(f"cwm: bench {state}; continue with: cwm bench --resume --out {bench_dir}"
                         f"{' --max-cost MORE' if 'max-cost' in state else ''}\n")
    if args.json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
    else:
        sys.stdout.write(f"{len(ordered)} of {len(runs)} runs evaluated · {status['paid_calls']} paid calls · "
                         f"{usd(status['cost_usd'])} · results {bench_dir / 'results.json'} · report {report}\n")
    if state == "interrupted":
        return 130
    return EXIT_OK if state == "complete" else EXIT_FAILED


def _spec_json(spec: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out: dict[str, Any] = asdict(spec)
    return out


def _baselines_only(spec: Any, bench_dir: Path, args: argparse.Namespace) -> int:
    """Measure random and oracle returns (user cache + ``DIR/baselines.json``), in the package-data format."""
    from cwm.bench.baselines import compute

    bench_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(env, which) for env in spec.envs for which in ("random", "oracle")]
    kwargs = {"episodes": spec.plan_episodes or 10, "seed": 0, "cem": spec.cem, "simulations": spec.simulations,
              "max_steps": spec.plan_max_steps}
    entries: list[dict[str, Any]] = []
    if args.executor == "ray":
        from cwm.bench.executors import ray_baselines

        entries = ray_baselines(jobs, kwargs, args.parallel, args.ray_address)
    else:
        for env, which in jobs:
            entries.append(asyncio.run(compute(env, which, **kwargs)))  # type: ignore[arg-type]
            sys.stderr.write(f"{env} {which}: {entries[-1]['mean_return']:.1f} in {entries[-1]['elapsed_s']} s\n")
    doc = {"baselines": entries}
    (bench_dir / "baselines.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    return EXIT_OK
