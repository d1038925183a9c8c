"""The paper's three actions as nodes: generate, improve and fix, each one LLM call with its prompt."""

from __future__ import annotations

from typing import Any

from cwm.agents import prompts
from cwm.agents.llm.types import Message
from cwm.agents.parsing import extract_program
from cwm.envs.dataset import Dataset
from cwm.nodes.context import NodeContext, ParentView
from cwm.nodes.registry import register_node


def parent_view(parent: dict[str, Any] | None) -> ParentView | None:
    """The controller's view of a parent node as a typed record (older nodes carry ``feedback`` only)."""
    if not parent:
        return None
    failures = parent.get("failures")
    if failures is None:  # a node made before failures were recorded
        failures = [parent["feedback"]] if parent.get("feedback") else []
    return ParentView(int(parent.get("id") or 0), parent.get("program"), parent.get("state_code") or "",
                      parent.get("error"), tuple(failures))


def messages_for(action: str, description: str, feedback: Dataset, parent: ParentView | None,
                 allowed: tuple[str, ...], show_failures: int = 1) -> list[Message]:
    """The prompt of a built-in action ('g', 'i' or 'f') at ``parent``."""
    if action == "g":
        return prompts.generate(description, feedback, parent.state_code if parent else "", allowed)
    program = (parent.program if parent else None) or ""
    if action == "f":
        return prompts.fix(description, feedback, program, (parent.error if parent else None) or "unknown error",
                           allowed)
    failures = list(parent.failures) if parent else []
    if not failures:  # nothing wrong that may be shown: ask for a rewrite that keeps it so (rare)
        return prompts.generate(description, feedback, program, allowed)
    return prompts.improve(description, feedback, program, failures[:max(1, show_failures)], allowed)


async def _one_call(ctx: NodeContext, action: str) -> str | None:
    messages = messages_for(action, ctx.description, ctx.transitions, ctx.parent, ctx.allowed_imports,
                            ctx.show_failures)
    completion = await ctx.llm.complete(messages)
    return extract_program(completion.text)


async def generate(ctx: NodeContext) -> str | None:
    """Write a program (or continue the parent's first lines) from the description and sample data."""
    return await _one_call(ctx, "g")


async def improve(ctx: NodeContext) -> str | None:
    """Rewrite the parent program given transitions it predicts wrongly."""
    return await _one_call(ctx, "i")


async def fix(ctx: NodeContext) -> str | None:
    """Repair the parent program given its error and traceback."""
    return await _one_call(ctx, "f")


register_node("generate", generate, code="g", prior=0.5, needs_parent=False)
register_node("improve", improve, code="i", prior=0.55)
register_node("fix", fix, code="f", prior=0.5)
