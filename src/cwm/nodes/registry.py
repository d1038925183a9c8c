"""Node types by name, like gymnasium's ``register``/``make``.

A node is an async callable ``(ctx) -> str | None`` (the new program, or None when it has none) or an
object (or class) with such a ``run`` method. ``register_node`` files it under a name with what the
search needs to treat it as an action: its prior, whether it rewrites a parent program, its default
per-expansion budget. The built-ins generate, improve and fix keep the single-letter action types
('g', 'i', 'f') that every checkpoint records; every other node's action type is its name.

Three ways in: ``cwm.register_node`` in Python, the entry-point group ``cwm.nodes`` (each entry point
names a node, or a ``NodeSpec``), and ``cwm synthesize --node MODULE:ATTR`` for one run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cwm.errors import CwmError
from cwm.graph.tree import ExtraAction
from cwm.nodes.context import NodeBudget, NodeContext

NodeFn = Callable[[NodeContext], Awaitable[str | None]]
ENTRY_POINT_GROUP = "cwm.nodes"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    run: NodeFn
    prior: float = 0.5
    prior_gain: float = 0.05
    needs_parent: bool = True
    summary: str = ""
    budget: NodeBudget = field(default_factory=NodeBudget)
    code: str = ""
    """Action type in the tree: 'g', 'i', 'f' for the built-ins, else the name."""
    source: str = "python"
    """Where it came from: builtin, python, entry point, or MODULE:ATTR."""

    def action(self) -> ExtraAction:
        return ExtraAction(self.name, self.prior, self.prior_gain, self.needs_parent)


_NODES: dict[str, NodeSpec] = {}
_loaded = {"builtins": False, "entry_points": False}


def as_node_fn(node: Any) -> NodeFn:
    """The async ``(ctx) -> str | None`` behind a function, an object with ``run``, or such a class."""
    if inspect.isclass(node):
        node = node()
    fn = getattr(node, "run", node)
    if not callable(fn):
        raise CwmError(f"{node!r} is not a node", hint="a node is an async function (ctx) -> str | None, or "
                       "has such a run method")
    return fn  # type: ignore[no-any-return]


def _check_name(name: str, code: str) -> None:
    if code in ("g", "i", "f"):
        return
    if len(name) < 2 or "#" in name or ":" in name or not name.replace("-", "_").isidentifier():
        raise CwmError(f"bad node name {name!r}", hint="use a word of two or more letters, digits, _ or -")


def make_spec(name: str, node: Any, *, prior: float = 0.5, prior_gain: float = 0.05, needs_parent: bool = True,
              summary: str | None = None, budget: NodeBudget | None = None, code: str | None = None,
              source: str = "python") -> NodeSpec:
    if isinstance(node, NodeSpec):
        return node
    code = code or name
    _check_name(name, code)
    doc = summary if summary is not None else (inspect.getdoc(node) or "").split("\n")[0]
    return NodeSpec(name, as_node_fn(node), prior, prior_gain, needs_parent, doc, budget or NodeBudget(),
                    code, source)


def _declared(obj: Any) -> dict[str, Any]:
    """What a node object declares about itself (class or function attributes ``prior``, ``prior_gain``,
    ``needs_parent``, ``budget``, ``summary``), for nodes loaded by entry point or MODULE:ATTR."""
    out: dict[str, Any] = {}
    for key, cast in (("prior", float), ("prior_gain", float), ("needs_parent", bool)):
        if hasattr(obj, key):
            out[key] = cast(getattr(obj, key))
    if isinstance(getattr(obj, "budget", None), NodeBudget):
        out["budget"] = obj.budget
    if isinstance(getattr(obj, "summary", None), str):
        out["summary"] = obj.summary
    return out


def register_node(name: str, node: Any, *, prior: float = 0.5, prior_gain: float = 0.05,
                  needs_parent: bool = True, summary: str | None = None, budget: NodeBudget | None = None,
                  code: str | None = None) -> NodeSpec:
    """Register ``node`` under ``name`` so ``--node NAME`` enables it (re-registering replaces it)."""
    spec = make_spec(name, node, prior=prior, prior_gain=prior_gain, needs_parent=needs_parent,
                     summary=summary, budget=budget, code=code)
    _NODES[spec.name] = spec
    return spec


def _load_builtins() -> None:
    if not _loaded["builtins"]:
        _loaded["builtins"] = True
        for module in ("cwm.nodes.builtin", "cwm.nodes.analyze"):  # generate, improve, fix, then analyze
            importlib.import_module(module)


def load_entry_points() -> list[str]:
    """Register the nodes third-party packages declare under the ``cwm.nodes`` entry-point group."""
    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise CwmError(f"cannot load node entry point {ep.name} ({ep.value}): {exc}",
                           hint="fix or uninstall the package that declares it") from exc
        spec = make_spec(ep.name, obj, source=f"entry point {ep.value}", **_declared(obj))
        _NODES[spec.name] = spec
        names.append(spec.name)
    return names


def registered_nodes() -> dict[str, NodeSpec]:
    """Every registered node type: built-ins first, then entry points and Python registrations."""
    _load_builtins()
    if not _loaded["entry_points"]:
        _loaded["entry_points"] = True
        load_entry_points()
    return dict(_NODES)


def resolve_node(ref: str) -> NodeSpec:
    """A registered name, or ``MODULE:ATTR`` (imported; registered under the attribute's ``node_name``
    or its own name unless ATTR already is a ``NodeSpec``)."""
    nodes = registered_nodes()
    if ":" not in ref:
        if ref not in nodes:
            raise CwmError(f"unknown node {ref!r}", hint=f"registered: {', '.join(nodes)}; or MODULE:ATTR")
        return nodes[ref]
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CwmError(f"cannot load node {ref}: {exc}", hint="MODULE must be importable (check PYTHONPATH) "
                       "and define ATTR") from exc
    if isinstance(obj, NodeSpec):
        return obj
    name = str(getattr(obj, "node_name", attr.split(".")[-1]))
    return make_spec(name, obj, source=ref, **_declared(obj))


def run_nodes(refs: list[str]) -> dict[str, NodeSpec]:
    """The node types a run uses, by action type: the three built-ins and every ``--node``."""
    nodes = registered_nodes()
    out = {nodes[n].code: nodes[n] for n in ("generate", "improve", "fix")}
    for ref in refs:
        spec = resolve_node(ref)
        if spec.code in ("g", "i", "f"):
            continue  # always on
        if spec.code in out and out[spec.code] is not spec:
            raise CwmError(f"two --node arguments are both named {spec.name!r}", hint="rename one")
        out[spec.code] = spec
    return out
