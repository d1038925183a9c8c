"""Oracle and random returns for the normalized return, and where each figure came from.

The normalized return (R_model − R_random) / (R_oracle − R_random) is only comparable across runs when
both baselines were measured with the same planner settings, episodes and seed as the model. Lookup order:

1. ``computed``: shipped package data (``data/baselines.json``), measured once with the settings stored
   beside each figure, so CI and users never recompute them;
2. ``cache``: the user's baseline cache (``cwm plan --model oracle|random``, ``cwm bench --baselines-only``);
3. ``paper``: Table 12's figure, used only when the planner is the paper's (MCTS with 25 simulations, or
   ``--cem paper``) over whole episodes, and marked as such in results and reports.

Anything else leaves the normalized return null rather than mixing settings.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Literal

from cwm.bench.paper import table12

Which = Literal["random", "oracle"]
Source = Literal["computed", "cache", "paper"]


@dataclass(frozen=True)
class Baseline:
    mean_return: float
    source: Source
    std_return: float | None = None


def settings_key(plan_result_or_key: dict[str, Any], which: Which) -> dict[str, Any]:
    """What must match for a baseline to apply: the random policy ignores the planner."""
    k = plan_result_or_key
    key: dict[str, Any] = {"env": k["env"], "episodes": k["episodes"], "seed": k["seed"],
                           "max_steps": k.get("max_steps")}
    if which == "oracle":
        key |= {"planner": k["planner"], "config": k["config"]}
    return key


def shipped() -> list[dict[str, Any]]:
    """The package's computed baselines (each with ``key``, ``which``, returns, settings and time)."""
    try:
        text = resources.files("cwm.bench").joinpath("data/baselines.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries: list[dict[str, Any]] = json.loads(text).get("baselines", [])
    return entries


def _paper_applies(planner_key: dict[str, Any]) -> bool:
    """Table 12 measured whole episodes with the paper's planner; any other settings measure something else."""
    if planner_key.get("max_steps") is not None:
        return False
    cfg = planner_key["config"]
    if planner_key["planner"] == "mcts":
        return bool(cfg.get("simulations") == 25)
    return bool(cfg.get("horizon") == 100 and cfg.get("samples") == 1000 and cfg.get("execute") == "best")


def lookup(planner_key: dict[str, Any], which: Which, cached: float | None = None) -> Baseline | None:
    """The baseline for these planner settings (``PlanConfig.planner_key``), or None."""
    want = settings_key(planner_key, which)
    for entry in shipped():
        if entry["which"] == which and entry["key"] == want:
            return Baseline(float(entry["mean_return"]), "computed", entry.get("std_return"))
    if cached is not None:
        return Baseline(float(cached), "cache")
    row = table12(planner_key["env"])
    if row is not None and row.get(which) is not None and _paper_applies(planner_key):
        return Baseline(float(row[which]), "paper")  # type: ignore[arg-type]
    return None


def normalized(r_model: float | None, rnd: Baseline | None, orc: Baseline | None) -> float | None:
    if r_model is None or rnd is None or orc is None or math.isclose(orc.mean_return, rnd.mean_return,
                                                                     abs_tol=1e-9):
        return None
    return (r_model - rnd.mean_return) / (orc.mean_return - rnd.mean_return)


async def compute(env: str, which: Which, *, episodes: int, seed: int, cem: str, simulations: int = 25,
                  max_steps: int | None = None) -> dict[str, Any]:
    """Measure one baseline (it is also written to the user cache) as a package-data entry."""
    from cwm import __version__
    from cwm.planning.agent import PlanConfig, plan

    cfg = PlanConfig(env=env, model=which, episodes=episodes, seed=seed, cem=cem, simulations=simulations,
                     max_steps=max_steps)
    t0 = time.perf_counter()
    result = await plan(cfg)
    took = time.perf_counter() - t0
    key = cfg.planner_key(result["planner"] == "mcts")
    return {"which": which, "key": settings_key(key, which), "settings": asdict(cfg) | {"planner": key["planner"],
                                                                                      "config": key["config"]},
            "mean_return": result["mean_return"], "std_return": result["std_return"], "returns": result["returns"],
            "lengths": result["lengths"], "elapsed_s": round(took, 1), "cwm_version": __version__,
            "measured": time.strftime("%Y-%m-%d", time.gmtime())}
