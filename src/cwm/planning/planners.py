"""Planners by registration: which planner acts in an environment, and what keys its baselines.

A planner is registered with the action spaces it can act in, how to build it from a ``PlanConfig`` and
the configuration that identifies its results (the oracle baseline is cached under it). ``plan`` takes
``PlanConfig.planner`` by name, or else the first registered planner that applies to the environment's
action space: MCTS for discrete actions and CEM for continuous ones, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cwm.errors import CwmError
from cwm.planning.cem import PRESETS, CEMPlanner
from cwm.planning.mcts import MCTSConfig, MCTSPlanner

if TYPE_CHECKING:
    from cwm.planning.agent import PlanConfig
    from cwm.planning.models import PlanningModel


class Planner(Protocol):
    def reset(self, seed: int) -> None: ...
    async def act(self, model: PlanningModel, state: Any, remaining: int) -> Any: ...


@dataclass(frozen=True)
class PlannerSpec:
    name: str
    applies: Callable[[Any], bool]
    """Whether the planner can act in this action space."""
    build: Callable[[Any, PlanConfig], Planner]
    """(action space, config) -> a planner, seeded with ``config.seed``."""
    config: Callable[[PlanConfig], dict[str, Any]]
    """The settings that identify this planner's results (part of the oracle baseline's cache key)."""
    split: str = "discrete"
    """Which half of the paper's report its environments belong to: discrete or continuous."""


PLANNERS: dict[str, PlannerSpec] = {}


def register_planner(spec: PlannerSpec) -> PlannerSpec:
    PLANNERS[spec.name] = spec
    return spec


def planner_for(action_space: Any, name: str | None = None) -> PlannerSpec:
    """The named planner (refused where it cannot act), or the first registered one that applies."""
    if name is not None:
        spec = PLANNERS.get(name)
        if spec is None:
            raise CwmError(f"unknown planner {name!r}", hint=f"choose one of {', '.join(PLANNERS)}")
        if not spec.applies(action_space):
            raise CwmError(f"planner {name!r} cannot act in the action space {action_space}")
        return spec
    for spec in PLANNERS.values():
        if spec.applies(action_space):
            return spec
    raise CwmError(f"no registered planner acts in the action space {action_space}",
                   hint=f"registered: {', '.join(PLANNERS)}")


def _discrete(space: Any) -> bool:
    return hasattr(space, "n")


def _cem_config(cfg: PlanConfig) -> dict[str, Any]:
    if cfg.cem not in PRESETS:
        raise CwmError(f"unknown CEM preset {cfg.cem!r}", hint=f"choose one of {', '.join(PRESETS)}")
    return asdict(PRESETS[cfg.cem])


register_planner(PlannerSpec(
    "mcts", _discrete,
    lambda space, cfg: MCTSPlanner(int(space.n), MCTSConfig(simulations=cfg.simulations), cfg.seed),
    lambda cfg: asdict(MCTSConfig(simulations=cfg.simulations)), "discrete"))
register_planner(PlannerSpec(
    "cem", lambda space: not _discrete(space) and hasattr(space, "low"),
    lambda space, cfg: CEMPlanner(space.low, space.high, PRESETS[cfg.cem], cfg.seed),
    _cem_config, "continuous"))
