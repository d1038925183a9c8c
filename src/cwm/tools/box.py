"""Tools bound to one run: each registered tool factory gets the run's dependencies, never the held-out data.

A tool is registered as a factory ``(ToolDeps) -> Tool``; ``bind_tools`` builds every one for a run, so a
node calls ``ctx.tools.call("check_program", {...})`` without knowing about the sandbox or the dataset.
``ToolDeps`` has no field for held-out transitions: no tool can reach them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from cwm.agents.llm.types import ToolSpec
from cwm.tools.base import Tool

if TYPE_CHECKING:
    from cwm.envs.dataset import Dataset
    from cwm.sandbox.worker import Limits, Sandbox

RESULT_CHARS = 6000
"""A tool's result is cut to this many characters before it goes back to the LLM."""


@dataclass(frozen=True)
class ToolDeps:
    """What a run hands its tools: the sandbox and the feedback (training) transitions only."""

    sandbox: Sandbox
    transitions: Dataset
    description: str
    limits: Limits | None = None
    parent_program: str | None = None
    """The program the node works on (``show_transitions`` lists its failures of a kind)."""


ToolFactory = Callable[[ToolDeps], Tool]
_FACTORIES: dict[str, ToolFactory] = {}


def register_tool(name: str, factory: ToolFactory) -> ToolFactory:
    """Register a tool under ``name``; ``factory`` builds it for each run from that run's ``ToolDeps``."""
    _FACTORIES[name] = factory
    return factory


def tool_names() -> list[str]:
    _load_builtins()
    return sorted(_FACTORIES)


def _load_builtins() -> None:
    import cwm.tools.builtin  # noqa: F401 - registers the shipped tools


class ToolLimitReached(Exception):
    """The node used all the tool calls it was allowed."""


@dataclass
class ToolBox:
    """The tools of one node run: looked up by name, called with JSON arguments, counted and traced.

    ``call`` never raises for a tool's own failure (bad arguments, a crash): the error text is the
    result, so the LLM can read it and try again. Only running out of calls raises."""

    tools: dict[str, Tool]
    max_calls: int = 8
    log: Any = field(default_factory=lambda: structlog.get_logger("cwm.tools"))
    calls: int = 0
    errors: int = 0

    def specs(self, names: list[str] | None = None) -> list[ToolSpec]:
        return [ToolSpec(t.name, t.description, t.schema) for n, t in sorted(self.tools.items())
                if names is None or n in names]

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        if self.calls >= self.max_calls:
            raise ToolLimitReached(f"tool call limit ({self.max_calls}) reached")
        self.calls += 1
        tool = self.tools.get(name)
        try:
            if tool is None:
                raise KeyError(f"no tool named {name!r}; available: {', '.join(sorted(self.tools))}")
            text = render(await tool(**arguments))
            ok = True
        except Exception as exc:  # the LLM reads what went wrong; the run goes on
            text, ok = f"error: {type(exc).__name__}: {exc}", False
            self.errors += 1
        text = text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + f"\n... ({len(text)} chars, cut)"
        self.log.info("tool.call", tool=name, arguments=_short(arguments), ok=ok, chars=len(text),
                      calls=self.calls)
        return text


    def refuse(self, name: str, reason: str) -> str:
        """A call that is not run (arguments that are not JSON, no calls left): traced, and the error text
        for the LLM. It does not use up a call."""
        self.errors += 1
        self.log.info("tool.call", tool=name, ok=False, refused=reason, calls=self.calls)
        return f"error: {reason}"


def render(value: Any) -> str:
    if isinstance(value, str):
        return value
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        value = to_json()
    return json.dumps(value, default=str)


def _short(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:200] + "..." if isinstance(v, str) and len(v) > 200 else v) for k, v in arguments.items()}


def bind_tools(deps: ToolDeps, *, max_calls: int = 8, log: Any = None) -> ToolBox:
    """Every registered tool, built for this run."""
    _load_builtins()
    tools = {name: factory(deps) for name, factory in _FACTORIES.items()}
    box = ToolBox(tools, max_calls=max_calls)
    if log is not None:
        box.log = log
    return box
