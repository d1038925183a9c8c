"""What a bench runs: its settings (``bench.json``), the (env, method, seed) matrix, and dry-run estimates.

Selection: ``all``, ``discrete``, ``continuous`` (the paper's split, decided by each environment's action
space) or a comma-separated list of benchmark names. Runs are ordered env-major, so a bench stopped early
has whole environments rather than a thin slice of every one.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cwm.envs.registry import BENCHMARK, benchmark_env
from cwm.errors import CwmError

SPLITS = ("all", "discrete", "continuous")


@dataclass
class BenchSpec:
    """Everything that decides a bench's numbers; stored as ``bench.json`` and fixed for its resumes."""

    llm: str
    envs: list[str]
    methods: list[str]
    budget: int = 10
    seeds: int = 1
    plan_episodes: int = 10
    concurrency: int = 1
    describe: str | None = None
    """``docs`` or ``docs+facts`` where the search supports it; None: the search's default."""
    cem: str = "paper"
    simulations: int = 25
    plan_max_steps: int | None = None
    max_new_tokens: int = 1500
    temperature: float = 1.0
    heldout: float = 0.2
    prices: str | None = None
    timeout_s: float = 1800.0
    read_timeout_s: float = 120.0
    allow_import: list[str] = field(default_factory=list)
    """Libraries the programs may import besides the standard library and numpy (tool-using models)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> BenchSpec:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in names})
        except (OSError, ValueError, TypeError) as exc:
            raise CwmError(f"{str(path)!r} is not a bench settings file: {exc}",
                           hint="pass the --out directory of an earlier `cwm bench`") from exc


@dataclass(frozen=True)
class RunSpec:
    env: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.env}/{self.method}/seed{self.seed}"

    def run_dir(self, bench_dir: Path) -> Path:
        return bench_dir / "runs" / self.env / self.method / f"seed{self.seed}"


def select_envs(text: str) -> list[str]:
    """Benchmark names for ``all|discrete|continuous|NAME,NAME…`` (exit 2 on an unknown name)."""
    if text in SPLITS:
        return [e.name for e in BENCHMARK if text == "all" or e.actions == text]
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        env = benchmark_env(part)
        if env is None:
            raise CwmError(f"--envs: {part!r} is not a CWMB environment",
                           hint="use all, discrete, continuous or names from `cwm envs`")
        if env.name not in names:
            names.append(env.name)
    if not names:
        raise CwmError("--envs selects no environment", hint="use all, discrete, continuous or NAME,NAME")
    return names


def split_of(env: str) -> str:
    bench = benchmark_env(env)
    return bench.actions if bench is not None else "discrete"


def matrix(spec: BenchSpec) -> list[RunSpec]:
    return [RunSpec(env, method, seed) for env in spec.envs for method in spec.methods for seed in range(spec.seeds)]


@dataclass(frozen=True)
class Estimate:
    run: RunSpec
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


FALLBACK_TOKENS = 3000
"""A generate prompt's size when the environment's prompt cannot be built here."""


def _tokens(text: str) -> int:
    """A generous token count: ~4 characters a token for prose, ~2 for digits (numbers split finely)."""
    digits = sum(c.isdigit() for c in text)
    return (len(text) - digits) // 4 + digits // 2 + 1


def _prompt_tokens(env: str, max_new_tokens: int) -> tuple[int, int]:
    """Tokens of the first call's prompt (generate) and of any later one: the largest repair prompt, an
    improve prompt carrying a program as long as a whole reply and a failing transition of each kind
    (next state, reward, done), built from the environment's first recorded transition."""
    try:
        from cwm.agents.prompts import generate, improve
        from cwm.envs.dataset import load_for_env
        from cwm.envs.describe import describe

        with warnings.catch_warnings():  # gymnasium's notes on old env versions are not the user's concern
            warnings.simplefilter("ignore")
            ds, text = load_for_env(env), describe(env)
        wrong = {"state": ds.state[0], "action": ds.action[0],
                 "expected": {"next_state": ds.next_state[0], "reward": float(ds.reward[0]), "done": False},
                 "predicted": {"next_state": ds.next_state[0], "reward": float(ds.reward[0]), "done": True},
                 "mismatch": ["next_state"]}
        program = "x = 0.0\n" * (max_new_tokens * 4 // 8)
        first = sum(_tokens(m.content) for m in generate(text, ds, ""))
        later = sum(_tokens(m.content) for m in improve(text, ds, program, [wrong, wrong, wrong]))
        return first, max(first, later)
    except (CwmError, ImportError, OSError, ValueError, IndexError):
        return FALLBACK_TOKENS, FALLBACK_TOKENS + 2 * max_new_tokens


def estimate(spec: BenchSpec, runs: list[RunSpec]) -> list[Estimate]:
    """Upper-bound tokens and cost per run: every call at the budget, every reply at ``max_new_tokens``,
    every call after the first with the largest repair prompt."""
    from cwm.agents.llm import PriceTable, parse_provider

    prices = PriceTable.from_file(spec.prices) if spec.prices else PriceTable()
    price = prices.lookup(parse_provider(spec.llm).model)
    per_env = {env: _prompt_tokens(env, spec.max_new_tokens) for env in {r.env for r in runs}}
    out = []
    for r in runs:
        first, later = per_env[r.env]
        tin = first + (spec.budget - 1) * later
        tout = spec.budget * spec.max_new_tokens
        cost = None if price is None else (tin * price[0] + tout * price[1]) / 1e6
        out.append(Estimate(r, spec.budget, tin, tout, cost))
    return out
