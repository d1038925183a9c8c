"""An example node plugin for cwm: rewrite a program after looking at one kind of failure up close.

Enable it for one run with ``cwm synthesize --env CartPole-v1 --node plugin_node:Focus`` (with this
directory on PYTHONPATH), or register it for good with ``cwm.register_node`` or the ``cwm.nodes``
entry-point group. It uses two of the run's tools (bound to the sandbox and the training transitions)
and one LLM call; both are counted and traced like any node's.
"""

from __future__ import annotations

from cwm.agents.llm.types import Message
from cwm.agents.parsing import extract_program
from cwm.agents.prompts import SYSTEM, contract
from cwm.nodes import NodeBudget, NodeContext

KINDS = ("next_state", "reward", "done")


class Focus:
    """Show every wrong prediction of the program's first failing kind, then ask for the fixed program."""

    node_name = "focus"
    needs_parent = True
    prior = 0.5
    budget = NodeBudget(max_turns=1, max_tool_calls=2)

    async def run(self, ctx: NodeContext) -> str | None:
        parent = ctx.parent
        if parent is None or parent.program is None or not parent.failures:
            return None  # nothing to focus on: the search records an expansion without a program
        mismatch = parent.failures[0].get("mismatch") or ["next_state"]
        kind = next(k for k in KINDS if k in mismatch)
        wrong = await ctx.tools.call("show_transitions", {"kind": kind, "limit": 5})
        stats = await ctx.tools.call("run_analysis", {"code": (
            "print('reward values:', np.unique(reward).tolist())\n"
            "print('episodes ending:', int(done.sum()), 'of', len(done))")})
        ctx.log.info("focus.inspected", kind=kind, parent=parent.id)
        user = (f"{ctx.description}\n\n{contract(ctx.transitions, ctx.allowed_imports)}\n\n"
                f"## Current program\n```python\n{parent.program}\n```\n\n"
                f"## Wrong predictions of {kind}\n{wrong}\n\n## Facts from the data\n{stats}\n\n"
                "Find why these predictions are wrong and reply with the complete corrected program in a "
                "single ```python code block.")
        reply = await ctx.llm.complete([Message("system", SYSTEM), Message("user", user)])
        return extract_program(reply.text)
