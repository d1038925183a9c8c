"""The ``cwm`` command line.

Exit codes: 0 success (for ``check``: every transition correct), 1 the program under test failed or
scored below 1.0, 2 bad input or setup (the message says what to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cwm import __version__
from cwm import cli_args as A
from cwm.errors import CwmError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fmt(v: Any, width: int = 100) -> str:
    if isinstance(v, float):
        text = f"{v:.6g}"
    elif isinstance(v, list):
        text = "[" + ", ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v) + "]"
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _ceiling(value: float | None) -> str:
    """The achievable figure beside a score (``cwm audit``): what the real environment itself reaches."""
    return f" (ceiling {'unknown' if value is None else f'{value:.4f}'})"


def _print_report(report: Any, program: str) -> None:
    out = sys.stdout
    r = report
    status = "PASSED" if r.passed else "FAILED"
    out.write(f"{r.env_id} · {program} · metric {r.metric}\n")
    out.write(f"{status}  accuracy {r.accuracy:.4f}{_ceiling(r.ceiling)}  strict accuracy "
              f"{r.strict_accuracy:.4f}{_ceiling(r.strict_ceiling)}  "
              f"({r.correct}/{r.transitions} transitions fully correct"
              f"{f', {r.exceptions} raised' if r.exceptions else ''})  in {r.elapsed_s:.2f} s\n")
    if r.excused:
        out.write(f"{r.excused} wrong transition{'s' if r.excused > 1 else ''} the real environment cannot "
                  f"produce from {'their' if r.excused > 1 else 'its'} recorded state (`cwm audit`): not "
                  f"counted against passing\n")
    if r.error is not None:
        out.write(f"\nerror ({r.error.kind}): {r.error.message}\n")
        if r.error.traceback:
            out.write("  " + r.error.traceback.rstrip().replace("\n", "\n  ") + "\n")
    from cwm.check_text import write_failures

    write_failures(out, r, _fmt)  # each distinct traceback once; nothing listed after a load error
    if r.output.strip():
        out.write(f"\nprogram output (first {len(r.output)} characters):\n{r.output.rstrip()}\n")


def _read_program(path: str) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CwmError(f"cannot read program {path!r}: {exc.strerror or exc}",
                       hint="pass the path of a Python file defining class Environment") from exc
    if len(data) > 1_000_000:
        raise CwmError(f"program {path!r} is {len(data)} bytes; the limit is 1 MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CwmError(f"program {path!r} is not UTF-8 text") from exc


def _sandbox_config(args: argparse.Namespace, hide: tuple[str, ...] = ()) -> Any:
    from cwm.sandbox import Limits, SandboxConfig

    limits = Limits(memory_mb=args.memory_mb, load_s=args.load_timeout)
    return SandboxConfig(limits=limits, isolation=args.isolation, hide=hide, preload=tuple(args.preload),
                         allow_import=tuple(args.allow_import))


def cmd_check(args: argparse.Namespace) -> int:
    from cwm.envs.dataset import load_for_env
    from cwm.envs.registry import benchmark_env, resolve_gym_id
    from cwm.sandbox import Sandbox, evaluate

    if benchmark_env(args.env) is None:
        resolve_gym_id(args.env)
    code = _read_program(args.program)
    _env_setup(args.env, args.env_kwargs)
    ds = load_for_env(args.env, args.dataset)
    _check_dataset_env(ds, args.env, args.env_kwargs)
    _warn_random(args.env, args.env_kwargs, "a program can predict only the most likely outcome, so expect "
                 "accuracy below 1.0")
    hide = (str(Path(args.dataset).resolve().parent),) if args.dataset else ()

    async def run() -> tuple[Any, str]:
        async with Sandbox(_sandbox_config(args, hide)) as sb:
            return await evaluate(sb, code, ds, metric=args.metric, max_failures=args.max_failures), \
                sb.policy_text()

    report, policy = asyncio.run(run())
    if args.json:
        payload = report.to_json()
        payload["program"] = args.program
        payload["import_policy"] = policy
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        _print_report(report, args.program)
        sys.stdout.write(f"\nimports: {policy}\n")
    return EXIT_OK if report.passed else EXIT_FAILED


def _planner_names() -> list[str]:
    from cwm.planning.planners import PLANNERS

    return list(PLANNERS)


def cmd_serve(args: argparse.Namespace) -> int:
    from cwm.service.serve import serve

    serve(args.host, args.port, Path(args.data), max_runs=args.max_runs, llm=args.llm,
          allow_llm=tuple(args.allow_llm), llm_concurrency=args.llm_concurrency)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from cwm.sandbox.worker import diagnose

    diag = asyncio.run(diagnose(_sandbox_config(args)))
    layers = diag.layers
    if args.json:
        sys.stdout.write(json.dumps({"launcher": diag.launcher, "error": diag.error, "import_policy": diag.policy,
                                     "layers": [{"name": lyr.name, "active": lyr.active, "detail": lyr.detail,
                                                 "stops": lyr.threat} for lyr in layers]}) + "\n")
        return EXIT_OK if diag.error is None else EXIT_FAILED
    sys.stdout.write(f"cwm {__version__} · Python {sys.version.split()[0]} · sandbox launcher: {diag.launcher}\n\n")
    for lyr in layers:
        mark = "on " if lyr.active else "OFF"
        sys.stdout.write(f"  [{mark}] {lyr.name:18s} {lyr.detail}\n")
        sys.stdout.write(f"        {'':18s} stops: {lyr.threat}\n")
    off = [lyr.name for lyr in layers if not lyr.active]
    sys.stdout.write(f"\nimports: {diag.policy}\n")
    if diag.error is not None:
        sys.stdout.write(f"the sandbox did not start: {diag.error}\n")
        return EXIT_FAILED
    sys.stdout.write(f"inactive layers: {', '.join(off)}\n" if off else "all isolation layers active\n")
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from cwm.nodes import registered_nodes

    rows = [{"name": s.name, "action": s.code, "prior": s.prior, "needs_parent": s.needs_parent,
             "max_turns": s.budget.max_turns, "max_tool_calls": s.budget.max_tool_calls, "source": s.source,
             "summary": s.summary} for s in registered_nodes().values()]
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return EXIT_OK
    for r in rows:
        sys.stdout.write(f"{r['name']:14s} turns {r['max_turns']:<3d} tools {r['max_tool_calls']:<3d} "
                         f"{r['summary']}\n")
    return EXIT_OK


def cmd_envs(args: argparse.Namespace) -> int:
    from cwm.envs.dataset import bundled_path, load
    from cwm.envs.registry import BENCHMARK

    rows = []
    for b in BENCHMARK:
        path = bundled_path(b.name)
        n = len(load(path)) if path else 0
        rows.append({"name": b.name, "gym_id": b.gym_id, "actions": b.actions, "transitions": n,
                     "extra": b.needs, "dynamics": b.dynamics_note})
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return EXIT_OK
    for r in rows:
        extra = f"[{r['extra']}]" if r["extra"] else ""
        sys.stdout.write(f"{r['name']:26s} → {r['gym_id']:26s} {r['actions']:10s} {r['transitions']:5d} "
                         f"transitions {extra}\n")
        if r["name"] != r["gym_id"]:
            sys.stdout.write(f"{'':29s}{r['dynamics']}\n")
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    from cwm.envs.describe import describe

    sys.stdout.write(describe(args.env, args.description, args.describe, args.env_kwargs) + "\n")
    return EXIT_OK


def _env_setup(env: str, env_kwargs: dict[str, Any], warn: str | None = None) -> None:
    """Check --env-kwargs against the environment itself (a bad one is exit 2 before any work) and, when
    ``warn`` is given, say on stderr (one line) that the environment's dynamics are random."""
    from cwm.envs.registry import make_env

    if env_kwargs:
        make_env(env, **env_kwargs).close()
    if warn:
        _warn_random(env, env_kwargs, warn)


def _warn_random(env: str, env_kwargs: dict[str, Any], consequence: str) -> None:
    from cwm.envs.registry import stochasticity

    why = stochasticity(env, env_kwargs)
    if why:
        sys.stderr.write(f"cwm: warning: {env} has random dynamics ({why}); {consequence}\n")


def _check_dataset_env(ds: Any, env: str, env_kwargs: dict[str, Any]) -> None:
    """Refuse (exit 2) a dataset recorded on another environment, or with other --env-kwargs."""
    from cwm.envs.registry import canonical_kwargs, dataset_mismatch

    why = dataset_mismatch(ds.env_id, ds.meta.get("env_kwargs"), env, env_kwargs)
    if why:
        kw = ds.meta.get("env_kwargs")
        raise CwmError(why, hint=f"pass --env {ds.env_id}" + (f" --env-kwargs '{canonical_kwargs(kw)}'" if kw else "")
                       + f", or a dataset recorded on {env}")


def cmd_collect(args: argparse.Namespace) -> int:
    from cwm.envs.collect import CollectConfig, collect

    cfg = CollectConfig(trajectories=args.trajectories, max_steps=args.max_steps, seed=args.seed,
                        policy=args.policy, cem_samples=args.cem_samples, cem_elites=args.cem_elites)
    out = Path(args.out or f"{args.env.replace('/', '_')}.npz")
    _env_setup(args.env, args.env_kwargs, warn="the recorded transitions are samples of random outcomes")
    ds = collect(args.env, cfg, env_kwargs=args.env_kwargs, audit=args.audit)
    ds.save(out)
    sys.stderr.write("\n" if sys.stderr.isatty() else "")
    sys.stdout.write(f"wrote {out}: {len(ds)} transitions in {ds.n_trajectories} trajectories "
                     f"({int(ds.terminated.sum())} terminated, {int(ds.truncated.sum())} truncated)\n")
    if args.audit:
        from cwm.envs.dataset import CONSISTENT, INCONSISTENT, UNKNOWN

        flags = ds.consistent
        ceiling = ds.ceiling()
        sys.stdout.write(f"audit: {int((flags == CONSISTENT).sum())} consistent, "
                         f"{int((flags == INCONSISTENT).sum())} inconsistent, {int((flags == UNKNOWN).sum())} "
                         f"unknown; ceiling {'unknown' if ceiling is None else f'{ceiling:.4f}'}\n")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    import warnings

    from cwm.envs.audit import audit_env
    from cwm.envs.dataset import bundled_path
    from cwm.envs.registry import BENCHMARK

    names = [b.name for b in BENCHMARK if bundled_path(b.name)] if args.all else list(args.env)
    results = []
    for name in names:
        with warnings.catch_warnings():  # gymnasium's "v4 is out of date" notes say nothing about the data
            warnings.simplefilter("ignore")
            ds, result = audit_env(name, args.dataset)
        row = result.to_json(ds)
        if args.write:
            path = Path(args.dataset) if args.dataset else bundled_path(name)
            assert path is not None  # load_for_env found it
            result.apply(ds).save(path)
            row["written"] = str(path)
        results.append(row)
        if not args.json:
            _print_audit(row)
    if args.json:
        sys.stdout.write(json.dumps({"envs": results}) + "\n")
    return EXIT_OK


def _print_audit(row: dict[str, Any]) -> None:
    out = sys.stdout
    ceiling = "unknown" if row["ceiling"] is None else f"{row['ceiling']:.4f}"
    strict = "unknown" if row["strict_ceiling"] is None else f"{row['strict_ceiling']:.4f}"
    out.write(f"{row['env_id']} ({row['gym_id']}): {row['transitions']} transitions: {row['consistent']} consistent, "
              f"{row['inconsistent']} inconsistent, {row['unknown']} unknown; ceiling {ceiling} (strict {strict}) "
              f"in {row['elapsed_s']:.2f} s\n")
    if row["inconsistent_steps"]:
        steps = ", ".join(f"step {s}: {n}" for s, n in row["inconsistent_steps"].items())
        out.write(f"    inconsistent at {steps}\n")
    for why, n in row["unknown_reasons"].items():
        out.write(f"    unknown ({n}): {why}\n")
    if row.get("written"):
        out.write(f"    wrote the flags into {row['written']}\n")


def _audit_targets(args: argparse.Namespace) -> str | None:
    if bool(args.env) == bool(args.all):
        return "name one or more environments, or --all (not both)"
    if args.dataset and (args.all or len(args.env) > 1):
        return "--dataset goes with a single environment"
    return None


def add_llm_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM")
    from cwm.agents.llm.spec import provider_names  # the registry alone: no client stack imported

    g.add_argument("--llm", type=A.llm_provider, default="local", metavar="PROVIDER",
                   help="NAME:MODEL[@URL] or local (default); registered names: " + ", ".join(provider_names()))
    g.add_argument("--concurrency", type=A.positive_int, default=8, help="concurrent calls to the provider")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    add_llm_io_flags(g, cache_default="~/.cache/cwm/llm; CWM_CACHE_DIR")


def add_llm_io_flags(g: Any, cache_default: str) -> None:
    """Cache, cassettes, prices, timeouts and streaming: the same flags on every command that calls an LLM."""
    g.add_argument("--cache-dir", type=A.writable_dir, help=f"response cache directory (default {cache_default})")
    g.add_argument("--record", type=A.writable_file, metavar="CASSETTE",
                   help="record every call into this JSON-lines cassette")
    g.add_argument("--replay", type=A.readable_file, metavar="CASSETTE",
                   help="answer every call from this cassette, offline")
    g.add_argument("--prices", type=A.readable_file, metavar="JSON",
                   help='price table {"model-prefix": [usd_in, usd_out] per 1M tokens}; models without a '
                        'price cost "unknown"')
    g.add_argument("--timeout", type=A.positive_float, default=1800.0, metavar="SECONDS",
                   help="give up on one call after this long, retries included (default 1800)")
    g.add_argument("--read-timeout", type=A.positive_float, default=120.0, metavar="SECONDS",
                   help="give up on an attempt after this long without a byte from the server (default 120)")
    g.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="stream replies (default; a server that stops writing is then detected by "
                        "--read-timeout however slow the model)")
    g.add_argument("--llm-concurrency", type=A.int_range(1, 256), default=None, metavar="N",
                   help="at most N calls to the provider in flight at once, whatever the other limits "
                        "(the provider's rate limit; `cwm serve` and `cwm bench` share it across runs)")


def make_llm_client(args: argparse.Namespace) -> Any:
    from cwm.agents.llm import Cassette, LLMClient, PriceTable, ProviderLimits, ResponseCache, TransportConfig

    if args.record and args.replay:
        raise CwmError("--record and --replay exclude each other")
    cassette = Cassette(args.record, "record") if args.record else (
        Cassette(args.replay, "replay") if args.replay else None)
    cache = None if args.no_cache or args.replay else ResponseCache(args.cache_dir)
    prices = PriceTable.from_file(args.prices) if args.prices else None
    limit = ProviderLimits(args.llm_concurrency).for_llm(args.llm)
    return LLMClient.from_string(args.llm, cache=cache, cassette=cassette, prices=prices, stream=args.stream,
                                 transport=TransportConfig(concurrency=args.concurrency, read_timeout=args.read_timeout,
                                                           call_timeout=args.timeout, shared_limit=limit))


def cmd_ask(args: argparse.Namespace) -> int:
    from cwm.agents.llm import Message, SamplingParams

    client = make_llm_client(args)
    messages = ([Message("system", args.system)] if args.system else []) + [Message("user", args.prompt)]
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)

    async def run() -> list[Any]:
        async with client:
            return list(await client.sample(messages, params, k=args.k))

    from cwm.agents.llm import LLMUnavailable

    try:
        outs = asyncio.run(run())
    except LLMUnavailable as exc:  # the provider failed (unreachable, overloaded, timed out): exit 1, not 2
        sys.stderr.write(f"cwm: LLM failed: {exc}\n")
        if args.json:
            sys.stdout.write(json.dumps({"error": str(exc), "attempts": exc.attempts}) + "\n")
        return EXIT_FAILED
    summary = client.accounting.summary()
    if args.json:
        sys.stdout.write(json.dumps({"completions": [
            {**c.to_json(), "cached": c.cached, "latency_s": round(c.latency_s, 4),
             "cost_usd": c.cost_usd if c.priced else None} for c in outs], **summary}) + "\n")
        return EXIT_OK
    for i, c in enumerate(outs):
        tag = "cached" if c.cached else f"{c.latency_s:.2f} s"
        sys.stdout.write(f"--- sample {i} ({c.model}, {c.usage.input_tokens}+{c.usage.output_tokens} tokens, "
                         f"{tag})\n{c.text}\n")
    sys.stdout.write(f"--- {summary['llm_calls']} paid calls, {summary['cached_calls']} cached, "
                     f"{summary['tokens']} tokens, {_usd(summary['cost_usd'])}\n")
    return EXIT_OK


def _usd(cost: float | None) -> str:
    return "$?" if cost is None else f"${cost:.4f}"


_RUN_FIELDS = {"timeout": "timeout_s", "read_timeout": "read_timeout_s", "stream": "stream", "prices": "prices",
               "cache_dir": "cache_dir", "record": "record", "replay": "replay", "memory_mb": "memory_mb",
               "load_timeout": "load_timeout_s", "isolation": "isolation", "preload": "preload",
               "allow_import": "allow_import", "describe": "describe", "env_kwargs": "env_kwargs",
               "llm_concurrency": "llm_concurrency"}
"""`synthesize` flags shared with `ask` and `check`, and the RunConfig field each sets."""
_RESUME_FLAGS = {"budget": "budget", "max_tokens": "max_tokens", "max_cost": "max_cost_usd",
                 "max_time": "max_seconds", "timeout": "timeout_s", "read_timeout": "read_timeout_s",
                 "prices": "prices", "record": "record", "llm_concurrency": "llm_concurrency"}
"""Flags a resume honours (it extends or re-limits the run); every other one is fixed by config.json."""
_NOT_RUN_FLAGS = {"resume", "json", "func", "command", "log_level", "log_format", "defaults_of", "imports", "otel"}


def _resume_config(args: argparse.Namespace, run_dir: Path) -> Any:
    """The run's saved config with the flags a resume honours applied; names the flags it ignores."""
    from cwm.graph.run import load_config

    cfg = load_config(run_dir)
    default = args.defaults_of
    ignored = []
    for dest, value in sorted(vars(args).items()):
        if dest in _NOT_RUN_FLAGS or value == default(dest):
            continue
        if dest in _RESUME_FLAGS:
            setattr(cfg, _RESUME_FLAGS[dest], value)
        else:
            ignored.append("--" + dest.replace("_", "-"))
    if ignored:
        sys.stderr.write(f"cwm: --resume ignores {', '.join(ignored)}: the run's config.json fixes them "
                         f"(a resume honours {', '.join('--' + d.replace('_', '-') for d in _RESUME_FLAGS)})\n")
    return cfg


def _synth_report(summary: dict[str, Any], run_dir: Path) -> None:
    """Why a run did not solve, on stderr: an LLM error, no program at all, replies without code."""
    if summary.get("llm_error"):
        sys.stderr.write(f"cwm: the search stopped on an LLM error: {summary['llm_error']}\n")
    if summary.get("no_program_replies"):
        sys.stderr.write(f"cwm: {summary['no_program_replies']} of {summary['nodes']} replies held no "
                         f"```python code block (the replies are in {run_dir / 'llm'})\n")
    if summary.get("program") is None:
        sys.stderr.write("cwm: the search produced no program\n")


def _check_nodes(method: str, seed: int, refs: list[str]) -> None:
    """Every --node resolves, and the method can use them (bad input: exit 2 before anything slow)."""
    from cwm.graph.methods import new_controller
    from cwm.nodes import run_nodes

    extra = tuple(s.action() for c, s in run_nodes(refs).items() if c not in ("g", "i", "f"))
    new_controller(method, seed, None, extra)


def cmd_synthesize(args: argparse.Namespace) -> int:
    import time as _time

    from cwm.agents.llm import parse_provider
    from cwm.graph.run import RunConfig, synthesize

    if args.resume:
        run_dir = Path(args.resume)
        cfg = _resume_config(args, run_dir)
    else:
        if not args.env:
            raise CwmError("--env is required (or --resume RUN_DIR)")
        if not args.replay:
            parse_provider(args.llm).require_key()  # before anything slow, and before any connection
        from cwm.envs.registry import resolve_gym_id

        resolve_gym_id(args.env)
        _check_nodes(args.method, args.seed, list(args.node or []))
        _env_setup(args.env, args.env_kwargs)
        if args.dataset or args.env_kwargs:
            from cwm.envs.dataset import load_for_env

            _check_dataset_env(load_for_env(args.env, args.dataset), args.env, args.env_kwargs)
        cfg = RunConfig(env=args.env, llm=args.llm, method=args.method, budget=args.budget,
                        concurrency=args.concurrency, seed=args.seed, dataset=args.dataset,
                        description=args.description, heldout_fraction=args.heldout,
                        temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                        max_tokens=args.max_tokens, max_cost_usd=args.max_cost, max_seconds=args.max_time,
                        plan_episodes=args.plan_episodes if args.plan else 0, nodes=list(args.node or []),
                        **{field: getattr(args, dest) for dest, field in _RUN_FIELDS.items()})
        run_dir = Path(args.out or f"runs/{cfg.env}-{cfg.method}-{_time.strftime('%Y%m%d-%H%M%S')}")
    quiet = args.json or not sys.stderr.isatty()

    def progress(p: dict[str, Any]) -> None:
        best = "-" if p["best"] is None else f"{p['best']:.4f}"
        held = "" if p["heldout"] is None else f" (held-out {p['heldout']:.4f})"
        curve = f" · rose at {p['curve']}" if p.get("curve") else ""
        line = (f"calls {p['calls']}/{p['budget']} · in flight {p['in_flight']} · best {best}{held}{curve} · "
                f"tokens {p['tokens']:,} · {_usd(p['cost_usd'])}" + (f" · stop: {p['stop']}" if p["stop"] else ""))
        sys.stderr.write(("\r" + line.ljust(100)) if not quiet else line + "\n")
        sys.stderr.flush()

    try:
        summary = asyncio.run(synthesize(cfg, run_dir, resume=bool(args.resume), on_progress=progress))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # asyncio.run re-raises a Ctrl-C as CancelledError when a library cancelled the task again meanwhile
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        sys.stderr.write(f"\ncwm: {what}; resume with: cwm synthesize --resume {run_dir}\n")
        return _interrupt_code(exc)
    if not quiet:
        sys.stderr.write("\n")
    _synth_report(summary, run_dir)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        held = summary["heldout_accuracy"]
        sys.stdout.write(
            f"{cfg.env} · {cfg.method} · {cfg.llm}: accuracy {summary['accuracy']:.4f}"
            f"{'' if held is None else f', held-out {held:.4f}'} · {summary['search_calls']} calls "
            f"({summary['llm_calls']} paid) · {summary['tokens']:,} tokens · {_usd(summary['cost_usd'])} · "
            f"{summary['wall_s']:.1f} s · stop: {summary['stop']}\n"
            f"best program: {summary['program']}\nrun directory: {run_dir}\n")
        if summary.get("import_policy"):
            sys.stdout.write(f"imports: {summary['import_policy']}"
                             + (" (a tool-using run, not the paper's setting)\n" if summary.get("allow_import")
                                else "\n"))
        plan_result = summary.get("plan")
        if plan_result:
            if plan_result.get("error"):
                err = plan_result["error"]
                sys.stdout.write(f"planning failed: {err['kind']}: {err['message']}\n")
            else:
                norm = plan_result.get("normalized_return")
                sys.stdout.write(f"planning: mean return {plan_result['mean_return']:.2f} over "
                                 f"{len(plan_result['returns'])} episodes"
                                 f"{'' if norm is None else f', normalized {norm:.3f}'}\n")
    return EXIT_OK if summary["solved"] else EXIT_FAILED


async def _plan_in_sandbox(cfg: Any, args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """Plan with a program model inside a sandbox built from the command's sandbox flags."""
    from cwm.planning.agent import plan
    from cwm.sandbox import Sandbox

    if cfg.model in ("oracle", "random"):
        return await plan(cfg, progress=progress)
    async with Sandbox(_sandbox_config(args)) as sandbox:
        result = await plan(cfg, sandbox=sandbox, progress=progress)
        result["import_policy"] = sandbox.policy_text()
        return result


def cmd_plan(args: argparse.Namespace) -> int:
    from cwm.envs.registry import resolve_gym_id
    from cwm.planning.agent import PlanConfig
    from cwm.planning.models import ModelFailed

    resolve_gym_id(args.env)
    cfg = PlanConfig(env=args.env, model=args.model, episodes=args.episodes, seed=args.seed, cem=args.cem,
                     planner=args.planner,
                     simulations=args.simulations, max_steps=args.max_steps, env_kwargs=args.env_kwargs)
    _env_setup(args.env, args.env_kwargs)
    from cwm.plan_text import PlanProgress

    # a terminal gets one live line; a log or pipe gets a plain line per episode (and a heartbeat)
    progress = PlanProgress(sys.stderr, tty=sys.stderr.isatty() and not args.json)

    try:
        result = asyncio.run(_plan_in_sandbox(cfg, args, progress))
    except ModelFailed as exc:
        err = exc.error
        if args.json:
            sys.stdout.write(json.dumps({"error": err.to_json(), "returns": [], "mean_return": None,
                                         "std_return": None, "normalized_return": None}) + "\n")
        else:
            sys.stderr.write(f"cwm: the model failed ({err.kind}): {err.message}\n")
            if err.traceback:
                sys.stderr.write(err.traceback.rstrip() + "\n")
        return EXIT_FAILED
    progress.finish()
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return EXIT_OK
    norm = result["normalized_return"]
    sys.stdout.write(f"{cfg.env} · {result['model']} · {result['planner']} · {cfg.episodes} episodes "
                     f"(seed {cfg.seed})\n")
    sys.stdout.write("returns: " + ", ".join(f"{r:.1f}" for r in result["returns"]) + "\n")
    if result.get("import_policy"):
        sys.stdout.write(f"imports: {result['import_policy']}\n")
    sys.stdout.write(f"mean {result['mean_return']:.2f} ± {result['std_return']:.2f} (std) · "
                     f"{result['elapsed_s']:.1f} s\n")
    if norm is not None:
        sys.stdout.write(f"normalized return {norm:.3f} (random {result['random_return']:.2f}, "
                         f"oracle {result['oracle_return']:.2f})\n")
    else:
        sys.stdout.write("normalized return: needs cached baselines with the same settings: run with --model random "
                         "and --model oracle (or the oracle equals random here)\n")
    return EXIT_OK


def cmd_plan_report(args: argparse.Namespace) -> int:
    from cwm.planning.agent import split_report

    results = []
    for path in args.results:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CwmError(f"cannot read plan result {path!r}: {exc}", hint="pass files written by `cwm plan --json`") \
                from exc
        if not isinstance(data, dict) or "env" not in data or "planner" not in data:
            raise CwmError(f"{path!r} is not a `cwm plan --json` result")
        results.append(data)
    from cwm.plan_text import format_report, pool_by_env

    rows = pool_by_env(results)  # a repeated env is pooled (episodes together), never counted twice
    report = {**split_report([dict(r) for r in rows]), "envs": rows}
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
        return EXIT_OK
    sys.stdout.write(format_report(rows, report) + "\n")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from cwm.show import format_table, load_run, plot_curve

    view = load_run(args.run_dir)
    if args.plot:
        plot_curve(view, args.plot)
    if args.json:
        sys.stdout.write(json.dumps({"nodes": [vars(r) for r in view.rows], "curve": view.curve,
                                     "best_node": view.best, "plot": args.plot}) + "\n")
        return EXIT_OK
    sys.stdout.write(format_table(view) + "\n")
    if args.plot:
        sys.stdout.write(f"curve: {args.plot}\n")
    return EXIT_OK


_ALLOW_IMPORT = A.allow_import


def _add_sandbox_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sandbox")
    g.add_argument("--isolation", choices=["auto", "bwrap", "unshare", "none"], default="auto",
                   help="how to start the fork-server (default: the strongest available)")
    g.add_argument("--memory-mb", type=A.positive_int, default=2048, help="address-space limit per program")
    g.add_argument("--load-timeout", type=A.positive_float, default=10.0, help="seconds to import and construct")
    g.add_argument("--preload", type=A.module_name, action="append", default=[], metavar="MODULE",
                   help="trusted reference models only: module the fork-server imports once (e.g. "
                        "gymnasium); turns the import policy off; repeatable")
    g.add_argument("--allow-import", type=_ALLOW_IMPORT, action="extend", default=[], metavar="MODULE[,MODULE]",
                   help="libraries programs may import besides the standard library and numpy (e.g. mujoco); "
                        "their dependencies come with them; the environment's own package never does")


def _add_env_kwargs_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-kwargs", type=A.env_kwargs, default={}, metavar="JSON|KEY=VALUE,...",
                   help="arguments to make the environment with: a JSON object or key=value pairs, e.g. "
                        "is_slippery=False (values read as JSON; True/False/None accepted)")


def _add_describe_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--describe", choices=["docs+facts", "docs"], default="docs+facts",
                   help="docs+facts (default): the description plus constants introspected from the installed "
                        "environment; docs: the description alone (the paper's prompts)")


def build_parser() -> argparse.ArgumentParser:
    parser = A.CliParser(prog="cwm", description="Code World Models: write, score and plan "
                                     "with LLM-written environment models.")
    parser.add_argument("--version", action="version", version=f"cwm {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "console", "json"],
                        help="events on stderr: console for people, json lines for log pipelines "
                             "(auto: console on a terminal, json otherwise)")
    parser.add_argument("--otel", choices=["console", "otlp"], default=None,
                        help="OpenTelemetry spans per LLM call, sandbox evaluation and expansion (extra `otel`): "
                             "to stderr, or to the OTLP endpoint of OTEL_EXPORTER_OTLP_*")
    parser.add_argument("--import", dest="imports", type=A.module_name, action="append", default=[],
                        metavar="MODULE", help="import MODULE first, so the environments it registers with "
                        "gymnasium.register can be named by --env (repeatable; before COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="score a Code World Model program against recorded transitions")
    p.add_argument("program", type=A.readable_file, help="Python file defining class Environment (set_state, step)")
    p.add_argument("--env", type=A.env_id, required=True, help="CWMB name (e.g. CartPole-v1) or any gymnasium id")
    p.add_argument("--dataset", type=A.readable_file, help="cwm dataset (.npz); default: the benchmark's bundled one")
    p.add_argument("--metric", choices=["cwm", "official"], default="cwm",
                   help="cwm: paper accuracy without the official ceilings; official: the paper's numbers")
    p.add_argument("--max-failures", type=A.non_negative_int, default=5, help="failures to show (default 5)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    _add_env_kwargs_flag(p)
    _add_sandbox_flags(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("audit", help="replay recorded transitions with the real simulator: which ones can a "
                       "perfect model get right (consistent flags, ceiling)")
    p.add_argument("env", type=A.env_id, nargs="*", help="CWMB name(s) or gymnasium id(s)")
    p.add_argument("--all", action="store_true", help="every benchmark environment with a bundled dataset")
    p.add_argument("--dataset", type=A.readable_file, help="cwm dataset (.npz); default: the bundled one")
    p.add_argument("--write", action="store_true",
                   help="store the per-transition flags in the dataset file (format v2)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"envs": [...]}')
    A.add_check(p, _audit_targets)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("doctor", help="show which sandbox isolation layers are active on this machine")
    p.add_argument("--json", action="store_true")
    _add_sandbox_flags(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("serve", help="run the long-lived agent: an HTTP API, live traces and a web page")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (non-loopback requires the bearer token)")
    p.add_argument("--port", type=A.int_range(1, 65535), default=8765)
    p.add_argument("--data", default="cwm-data", help="directory for the SQLite store, datasets and runs")
    p.add_argument("--max-runs", type=A.int_range(1, 64), default=2, help="searches running at once")
    p.add_argument("--llm-concurrency", type=A.int_range(1, 256), default=None,
                   help="LLM calls in flight per provider, shared by all runs (default: each run's own limit)")
    p.add_argument("--llm", type=A.llm_provider, default="local", help="default provider of run requests")
    p.add_argument("--allow-llm", action="append", default=[], metavar="PROVIDER|URL-PREFIX",
                   help="providers or base-URL prefixes a run request may name (repeatable; always allowed: "
                        "--llm and http://127.0.0.1:)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("nodes", help="list the registered node types (built-ins, entry points)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("envs", help="list the benchmark environments and their gymnasium ids")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("describe", help="print the description of an environment used in prompts")
    p.add_argument("env", type=A.non_empty_text)
    p.add_argument("--description", type=A.readable_file, help="file with a description for a custom environment")
    _add_describe_flag(p)
    _add_env_kwargs_flag(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("synthesize", help="search for a Code World Model with an LLM (GIF-MCTS or a baseline)")
    p.add_argument("--env", type=A.env_id, help="CWMB name or gymnasium id")
    p.add_argument("--llm", type=A.llm_provider, default="local", metavar="PROVIDER",
                   help="as for `cwm ask` (default: local)")
    p.add_argument("--budget", type=A.positive_int, default=10, help="LLM calls the search may make (default 10)")
    p.add_argument("--concurrency", type=A.positive_int, default=1, help="expansions in flight at once (default 1)")
    from cwm.graph.methods import DEFAULT_METHOD, METHODS  # the registry (pure modules, no langgraph)

    p.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD,
                   help="search method (default gif-mcts; gif-mcts-paper is the paper's exact algorithm)")
    p.add_argument("--node", action="append", type=A.non_empty_text, metavar="NAME|MODULE:ATTR",
                   help="enable a node type besides generate/improve/fix (repeatable): a registered name "
                        "(`cwm nodes`, e.g. analyze) or MODULE:ATTR of your own")
    p.add_argument("--out", type=A.writable_dir, help="run directory (default runs/ENV-METHOD-TIME)")
    p.add_argument("--resume", type=A.run_dir, metavar="RUN_DIR", help="continue a run that was interrupted")
    p.add_argument("--dataset", type=A.readable_file, help="cwm dataset (.npz) for a custom environment")
    p.add_argument("--description", type=A.readable_file, help="description file for a custom environment")
    _add_describe_flag(p)
    _add_env_kwargs_flag(p)
    p.add_argument("--heldout", type=A.float_range(0, 1, high_open=True), default=0.2,
                   help="fraction of trajectories never shown (0.2)")
    p.add_argument("--seed", type=A.non_negative_int, default=0)
    p.add_argument("--temperature", type=A.temperature, default=1.0)
    p.add_argument("--max-new-tokens", type=A.positive_int, default=1500)
    p.add_argument("--max-tokens", type=A.positive_int, help="stop after this many tokens in total")
    p.add_argument("--max-cost", type=A.positive_float, help="stop after this many USD")
    p.add_argument("--max-time", type=A.positive_float, help="stop after this many seconds")
    p.add_argument("--plan", action="store_true", help="then act in the real env with the best program")
    p.add_argument("--plan-episodes", type=A.positive_int, default=3, help="episodes for --plan (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    add_llm_io_flags(p.add_argument_group("LLM"), cache_default="RUN_DIR/llm-cache")
    _add_sandbox_flags(p)
    A.add_check(p, A.required_unless("env", "resume"))
    A.add_check(p, A.exclusive("record", "replay"))
    p.set_defaults(func=cmd_synthesize, defaults_of=p.get_default)

    p = sub.add_parser("plan", help="act in the real environment with a Code World Model (or the baselines)")
    p.add_argument("--env", type=A.env_id, required=True)
    p.add_argument("--model", type=A.plan_model, required=True,
                   help="program file, run directory, 'oracle' or 'random'")
    p.add_argument("--episodes", type=A.positive_int, default=10)
    p.add_argument("--seed", type=A.non_negative_int, default=0)
    p.add_argument("--cem", choices=["mpc", "paper"], default="mpc",
                   help="continuous actions: receding-horizon CEM (default) or the paper's open-loop CEM")
    p.add_argument("--simulations", type=A.positive_int, default=25,
                   help="MCTS simulations per step (discrete actions)")
    p.add_argument("--planner", choices=_planner_names(), default=None,
                   help="a registered planner (default: mcts for discrete actions, cem for continuous)")
    p.add_argument("--max-steps", type=A.positive_int,
                   help="cut episodes at this many steps (default: the env's limit)")
    p.add_argument("--json", action="store_true")
    _add_env_kwargs_flag(p)
    _add_sandbox_flags(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("show", help="a run's search tree as a table, and its accuracy-against-calls curve as a PNG")
    p.add_argument("run_dir", type=A.existing_dir, help="run directory of `cwm synthesize`")
    p.add_argument("--plot", type=A.writable_file, metavar="FILE.png",
                   help="also draw best accuracy against LLM calls (needs matplotlib: cwm[plot])")
    p.add_argument("--json", action="store_true", help="print the rows and the curve as one JSON object")
    p.set_defaults(func=cmd_show)

    from cwm.bench.command import add_parser as add_bench_parser

    add_bench_parser(sub)

    p = sub.add_parser("plan-report", help="normalized returns per env and per split from `cwm plan --json` files")
    p.add_argument("results", type=A.readable_file, nargs="+", help="JSON files written by `cwm plan --json`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan_report)

    p = sub.add_parser("ask", help="send one prompt to an LLM provider (check a provider, cache, cassette)")
    p.add_argument("prompt", type=A.non_empty_text)
    p.add_argument("--system", help="system message")
    p.add_argument("-k", type=A.positive_int, default=1, help="samples, sent as k concurrent calls")
    p.add_argument("--temperature", type=A.temperature, default=0.6)
    p.add_argument("--top-p", type=A.float_range(0, 1, low_open=True), default=0.8)
    p.add_argument("--max-tokens", type=A.positive_int, default=512)
    p.add_argument("--json", action="store_true")
    add_llm_flags(p)
    A.add_check(p, A.exclusive("record", "replay"))
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("collect", help="record a dataset for any gymnasium environment")
    p.add_argument("env", type=A.env_id, help="CWMB name or gymnasium id")
    p.add_argument("--out", type=A.dataset_out, help="output .npz (default: ENV.npz)")
    p.add_argument("--trajectories", type=A.positive_int, default=10)
    p.add_argument("--max-steps", type=A.positive_int, default=100)
    p.add_argument("--seed", type=A.non_negative_int, default=0)
    p.add_argument("--policy", choices=["spread", "random"], default="spread",
                   help="spread: random to competent (the paper's protocol); random: uniform actions")
    p.add_argument("--cem-samples", type=A.positive_int, default=1000, help="CEM samples per iteration (continuous)")
    p.add_argument("--cem-elites", type=A.positive_int, default=100)
    p.add_argument("--audit", action=argparse.BooleanOptionalAction, default=True,
                   help="replay the recording with the real env and store each transition's verdict, as "
                        "`cwm audit --write` does (default; --no-audit leaves them unknown)")
    _add_env_kwargs_flag(p)
    A.add_check(p, A.at_most("cem_elites", "cem_samples"))
    p.set_defaults(func=cmd_collect)
    return parser


def _usage_error(exc: CwmError, as_json: bool) -> int:
    """Bad input: one line on stderr and, when JSON was asked for, one JSON object on stdout; exit 2."""
    prog = exc.prog if isinstance(exc, A.UsageError) else "cwm"
    line = " ".join(f"{prog}: error: {exc}".split())
    sys.stderr.write(line + "\n")
    if as_json:
        sys.stdout.write(json.dumps({"error": {"kind": "bad-input", "message": str(exc)}}) + "\n")
    return EXIT_USAGE


def import_user_modules(argv: list[str]) -> list[str]:
    """Import the ``--import MODULE`` modules named before the command, so that the environments they
    register exist when ``--env`` is checked (which happens while the arguments are parsed)."""
    names: list[str] = []
    for i, tok in enumerate(argv):
        if not tok.startswith("-"):
            break  # the command: options after it belong to it
        if tok == "--import" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif tok.startswith("--import="):
            names.append(tok.split("=", 1)[1])
    if names and "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a module next to the user, as `python -m` would find it
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the user's module: any failure is theirs to fix, in one line
            raise CwmError(f"--import {name}: {type(exc).__name__}: {exc}",
                           hint="check the module name and that it imports on its own "
                                f"(python -c 'import {name}')") from exc
    return names


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that a command stops the same way: runs at their last checkpoint,
    ``finally`` blocks and exit handlers run (the embedded llama.cpp server is stopped, not orphaned)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _interrupt_code(exc: BaseException) -> int:
    return 143 if isinstance(exc, Terminated) else 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        import_user_modules(argv)
    except CwmError as exc:
        return _usage_error(exc, A.wants_json(argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        A.run_checks(args)
    except CwmError as exc:
        return _usage_error(exc, A.wants_json(argv))
    from cwm.tracing import configure

    configure(args.log_level, fmt=args.log_format)
    main_thread = threading.current_thread() is threading.main_thread()
    # `cwm serve` installs its own graceful drain over this; an embedding caller gets its handler back
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        if args.otel is not None:
            from cwm.telemetry import enable

            enable(exporter=args.otel)
        code: int = args.func(args)
        return code
    except CwmError as exc:
        return _usage_error(exc, A.wants_json(argv, args))
    except KeyboardInterrupt as exc:
        sys.stderr.write("cwm: " + ("terminated" if isinstance(exc, Terminated) else "interrupted") + "\n")
        return _interrupt_code(exc)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
