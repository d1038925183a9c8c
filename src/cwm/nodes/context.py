"""What a node gets for one expansion: ``NodeContext``, and the budgeted LLM handle it calls through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cwm.agents.llm.types import Completion, Message, SamplingParams, ToolSpec
from cwm.tools.box import ToolBox

if TYPE_CHECKING:
    from cwm.agents.llm.client import LLMClient
    from cwm.envs.dataset import Dataset


class NodeBudgetExceeded(Exception):
    """The node asked for more LLM turns or tokens than it was given (it ends with no program)."""


@dataclass(frozen=True)
class NodeBudget:
    """Per-expansion limits. ``max_turns`` is also capped by what is left of the run's call budget."""

    max_turns: int = 1
    max_tool_calls: int = 0
    max_tokens: int | None = None
    """Tokens (input + output, all turns) this expansion may use."""


@dataclass(frozen=True)
class ParentView:
    """The program a node works on, and what checking it found."""

    id: int
    program: str | None
    state_code: str = ""
    error: str | None = None
    """Its error and traceback (a buggy program)."""
    failures: tuple[dict[str, Any], ...] = ()
    """Wrong transitions that may be shown: index, state, action, expected, predicted, mismatch."""


@dataclass
class Usage:
    turns: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    all_cached: bool = True


class BudgetedLLM:
    """The run's LLM client, counting this expansion's turns, tokens and cost and refusing past its budget.

    Every turn of a node is one LLM call of the run: the search adds ``usage.turns`` to its call count."""

    def __init__(self, client: LLMClient, params: SamplingParams, budget: NodeBudget, index: int) -> None:
        self.client = client
        self.params = params
        self.budget = budget
        self.index = index
        self.usage = Usage()
        self.transcript: list[dict[str, Any]] = []

    @property
    def turns_left(self) -> int:
        return self.budget.max_turns - self.usage.turns

    async def complete(self, messages: Sequence[Message], params: SamplingParams | None = None, *,
                       tools: Sequence[ToolSpec] = (), tool_choice: str = "auto") -> Completion:
        if self.usage.turns >= self.budget.max_turns:
            raise NodeBudgetExceeded(f"LLM turn limit ({self.budget.max_turns}) reached")
        if self.budget.max_tokens is not None and self.usage.tokens >= self.budget.max_tokens:
            raise NodeBudgetExceeded(f"token limit ({self.budget.max_tokens}) reached")
        self.usage.turns += 1
        extra: dict[str, Any] = {"tools": tuple(tools), "tool_choice": tool_choice} if tools else {}
        out = await self.client.complete(list(messages), params or self.params, sample_index=self.index,
                                         **extra)
        self.usage.tokens += out.usage.total
        self.usage.cost_usd += out.cost_usd
        self.usage.all_cached = self.usage.all_cached and out.cached
        self.transcript.append({"messages": [m.to_json() for m in messages], "response": out.text,
                                "tool_calls": [c.to_json() for c in out.tool_calls]})
        return out


@dataclass
class NodeContext:
    """Everything a node may use for one expansion. The held-out transitions are not here, on purpose."""

    node: str
    """The node type's registered name."""
    index: int
    """Global expansion index (the LLM sample index: a resumed run replays it from the cache)."""
    description: str
    transitions: Dataset
    """The feedback (training) transitions."""
    parent: ParentView | None
    llm: BudgetedLLM
    params: SamplingParams
    tools: ToolBox
    budget: NodeBudget
    log: Any
    """A structlog logger bound to the run, the expansion index and the node type."""
    allowed_imports: tuple[str, ...] = ()
    """Libraries the sandbox lets programs import besides the standard library and numpy."""
    show_failures: int = 1
    """How many failing transitions the controller wants an improve prompt to show."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Free-form record a node may fill (saved with the expansion's LLM transcript)."""
