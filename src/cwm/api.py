"""The Python API: the same operations as the CLI, as async functions (and one synchronous environment).

    import asyncio, cwm.api as cwm_api

    report = asyncio.run(cwm_api.check(open("model.py").read(), "CartPole-v1"))
    summary = asyncio.run(cwm_api.synthesize("CartPole-v1", "openai:gpt-4o", out="runs/cp", budget=10))
    result = asyncio.run(cwm_api.plan("CartPole-v1", "runs/cp", episodes=3))
    env = cwm_api.as_env("runs/cp/best_program.py", env="CartPole-v1")

Each call builds its own run context (client, sandbox, trace) from its arguments, exactly as the CLI
does, so a process can hold many of them at once; nothing is kept between calls. A program hosting many
searches on one event loop lends them its connections and the provider's call cap:

    async with HttpPool() as pool:
        limits = ProviderLimits(4)   # at most 4 calls in flight per provider, over all the searches
        await asyncio.gather(*(cwm_api.synthesize(env, llm, out=f"runs/{env}", http=pool, limits=limits)
                               for env in ("CartPole-v1", "Taxi-v3")))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cwm.model_env import as_env

if TYPE_CHECKING:
    from cwm.agents.llm import HttpPool, ProviderLimits

__all__ = ["as_env", "check", "plan", "synthesize"]


async def check(program: str, env: str, *, dataset: str | Path | None = None, metric: str = "cwm",
                max_failures: int = 5, allow_import: tuple[str, ...] = ()) -> Any:
    """Score ``program`` (source text) on ``env``'s recorded transitions (or ``dataset``); a ScoreReport."""
    from cwm.envs.dataset import load_for_env
    from cwm.sandbox import SandboxConfig, check_program

    ds = load_for_env(env, dataset)
    return await check_program(program, ds, metric=metric, max_failures=max_failures,  # type: ignore[arg-type]
                               config=SandboxConfig(allow_import=allow_import))


async def synthesize(env: str, llm: str, *, out: str | Path, budget: int = 10, method: str = "gif-mcts",
                     resume: bool = False, http: HttpPool | None = None, limits: ProviderLimits | None = None,
                     **config: Any) -> dict[str, Any]:
    """Search for a model of ``env`` with ``llm``; ``config`` takes any ``RunConfig`` field (concurrency,
    describe, allow_import, nodes, max_cost_usd, ...). Returns the summary ``cwm synthesize --json`` prints.
    ``http`` and ``limits``: the caller's connection pool and per-provider caps, lent to this search and
    left open; without them the search opens and closes its own."""
    from cwm.graph.run import RunConfig, make_client
    from cwm.graph.run import synthesize as run_search

    cfg = RunConfig(env=env, llm=llm, budget=budget, method=method, **config)
    if http is None and limits is None:
        return await run_search(cfg, Path(out), resume=resume)
    limit = limits.for_llm(llm) if limits is not None else None
    async with make_client(cfg, Path(out), http=http, limit=limit) as client:
        return await run_search(cfg, Path(out), resume=resume, client=client)


async def plan(env: str, model: str, *, episodes: int = 10, seed: int = 0, **config: Any) -> dict[str, Any]:
    """Act in the real ``env`` with ``model`` (a program file, a run directory, ``oracle`` or ``random``);
    ``config`` takes any ``PlanConfig`` field (planner, simulations, cem, max_steps, env_kwargs)."""
    from cwm.planning.agent import PlanConfig, resolve_program
    from cwm.planning.agent import plan as run_plan

    code = None
    if model not in ("oracle", "random"):
        code = resolve_program(model).read_text(encoding="utf-8")
    return await run_plan(PlanConfig(env=env, model=model, episodes=episodes, seed=seed, **config), code=code)
