"""Search methods by name: a registry of controllers that the CLI's ``--method`` choices and the service read.

A method is a pure controller class (``select`` / ``apply`` / ``cancel``, persisted with ``to_dict`` /
``from_dict``) registered under its name with a version. Runs record both (``config.json`` and every
checkpointed controller), so a run always resumes under the rules it started with: a controller whose
rules change gets a new version, and a checkpoint of another version is refused, never reinterpreted.

Runs made before methods were versioned recorded ``gif-mcts`` for what is now ``gif-mcts-paper`` (the
paper's algorithm); ``LEGACY_NAMES`` maps them there, so they resume under the paper's rules.

Adding a method: write the controller (see ``Controller``) and call ``register(MethodSpec(...))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cwm.agents.results import ExpansionResult
from cwm.errors import CwmError
from cwm.graph.baselines import BestOfN, WorldCoderSearch
from cwm.graph.tree import ExtraAction, FeedbackGIFTree, GIFConfig, GIFTree, Node, Selection

DEFAULT_METHOD = "gif-mcts"
LEGACY_NAMES = {"gif-mcts": "gif-mcts-paper"}
"""Name recorded by a run (or a checkpoint) without a version -> the method that run actually used."""


class Controller(Protocol):
    """What the search graph needs from a method's controller."""

    nodes: list[Node]
    expansions: int
    kind: str
    version: int
    feedback_failures: int
    """How many failing transitions its improve prompts show."""
    known: dict[str, int]
    """Fingerprint of each distinct program -> its first node (for recognising duplicates unscored)."""

    def select(self) -> Selection | None: ...
    def apply(self, sel: Selection, res: ExpansionResult) -> Node: ...
    def cancel(self, sel: Selection) -> None: ...
    def solved(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...

    @property
    def best_node(self) -> Node | None: ...


@dataclass(frozen=True)
class MethodSpec:
    name: str
    version: int
    new: Callable[[int, GIFConfig | None, tuple[ExtraAction, ...]], Controller]
    """(seed, GIF-MCTS config or None, node types enabled beyond generate/improve/fix) -> a fresh controller.
    A method that cannot use extra node types raises ``CwmError`` when given some."""
    load: Callable[[dict[str, Any]], Controller]
    summary: str


METHODS: dict[str, MethodSpec] = {}
"""The registry, in the order the CLI lists them."""


def register(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def _paper_tree(seed: int, cfg: GIFConfig | None, extra: tuple[ExtraAction, ...]) -> Controller:
    if extra:
        raise CwmError("gif-mcts-paper searches with generate, improve and fix only",
                       hint=f"drop --node {extra[0].name}, or use --method gif-mcts")
    return GIFTree(cfg or GIFConfig(seed=seed))


def _one_extra(method: str, extra: tuple[ExtraAction, ...], *, needs_parent: bool) -> str | None:
    """The single node type a flat baseline uses in place of its refine (sample) step."""
    if not extra:
        return None
    if len(extra) > 1 or extra[0].needs_parent != needs_parent:
        kind = "refine (rewrites a program)" if needs_parent else "sample (writes from scratch)"
        raise CwmError(f"{method} takes one --node, used as its {kind} step",
                       hint=f"pass a single --node whose needs_parent is {needs_parent}")
    return extra[0].name


register(MethodSpec("gif-mcts", FeedbackGIFTree.version,
                    lambda seed, cfg, extra: FeedbackGIFTree(replace(cfg or GIFConfig(seed=seed),
                                                                     extra_actions=extra)),
                    FeedbackGIFTree.from_dict,
                    "GIF-MCTS that uses its feedback: improves predicted from their parent and measured gains; "
                    "every --node is one more action"))
register(MethodSpec("gif-mcts-paper", GIFTree.version, _paper_tree, GIFTree.from_dict,
                    "GIF-MCTS as in the paper (App. B) and its official code"))
register(MethodSpec("worldcoder", WorldCoderSearch.version,
                    lambda seed, _cfg, extra: WorldCoderSearch(
                        seed, refine=_one_extra("worldcoder", extra, needs_parent=True)),
                    WorldCoderSearch.from_dict, "the paper's WorldCoder* baseline (Thompson-sampled refinements)"))
register(MethodSpec("best-of-n", BestOfN.version,
                    lambda seed, _cfg, extra: BestOfN(seed, sample=_one_extra("best-of-n", extra,
                                                                              needs_parent=False)),
                    BestOfN.from_dict, "N independent generations, the best wins"))


def resolve(name: str, version: int | None) -> MethodSpec:
    """The registered method a run recorded as ``name`` (``version`` None: recorded before versions)."""
    if version is None:
        name, version = LEGACY_NAMES.get(name, name), 1
    spec = METHODS.get(name)
    if spec is None:
        raise CwmError(f"unknown search method {name!r}", hint=f"choose one of {', '.join(METHODS)}")
    if version != spec.version:
        raise CwmError(f"this run used {name} version {version}; this cwm implements version {spec.version}",
                       hint="resume it with the cwm release that started it, or start a new run")
    return spec


def new_controller(method: str, seed: int, config: GIFConfig | None = None,
                   extra: tuple[ExtraAction, ...] = ()) -> Controller:
    return resolve(method, METHODS[method].version if method in METHODS else None).new(seed, config, extra)


def load_controller(d: dict[str, Any]) -> Controller:
    """A checkpointed controller under the rules it was made with."""
    version = d.get("version")
    return resolve(str(d.get("kind")), None if version is None else int(version)).load(d)


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A run's saved ``config.json`` with its method made explicit: one saved before methods had versions
    resumes as the method it actually ran (``gif-mcts`` then meant ``gif-mcts-paper``)."""
    if data.get("method_version") is None and "method" in data:
        spec = resolve(str(data["method"]), None)
        return {**data, "method": spec.name, "method_version": spec.version}
    return data


def method_version(method: str, recorded: int | None = None) -> int:
    """The version a run of ``method`` records (checks a recorded one still applies)."""
    return resolve(method, METHODS[method].version if recorded is None and method in METHODS else recorded).version
