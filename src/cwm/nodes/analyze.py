"""``analyze``: a tool-using node that studies the failures and the data before rewriting the program.

The loop is bounded twice: by LLM turns (each one a call of the run's budget; the expansion's turns are
also capped by what the budget has left) and by tool calls (their own limit). A tool's error goes back to
the model as the tool's result; when either limit is near, the model is asked, without tools, for the
program. Every tool call is logged as a ``tool.call`` event bound to the run and the expansion.
"""

from __future__ import annotations

from cwm.agents import prompts
from cwm.agents.llm.types import Message
from cwm.agents.parsing import extract_program
from cwm.nodes.context import NodeBudget, NodeContext
from cwm.nodes.registry import register_node

FINAL = ("You have used your tool calls. Reply now with the complete corrected program in a single ```python "
         "code block.")


async def analyze(ctx: NodeContext) -> str | None:
    """Inspect failures and data with tools (run_analysis, show_transitions, check_program), then rewrite."""
    parent = ctx.parent
    if parent is None or parent.program is None:
        return None
    specs = ctx.tools.specs()
    messages = prompts.analyze(ctx.description, ctx.transitions, parent.program, parent.error,
                               parent.failures[:max(1, ctx.show_failures)], [s.name for s in specs],
                               ctx.allowed_imports)
    while True:
        last = ctx.llm.turns_left <= 1 or ctx.tools.calls >= ctx.budget.max_tool_calls
        if last:
            reply = await ctx.llm.complete([*messages, Message("user", FINAL)])
            return extract_program(reply.text)
        reply = await ctx.llm.complete(messages, tools=specs)
        if not reply.tool_calls:
            return extract_program(reply.text)
        messages.append(Message("assistant", reply.text, tool_calls=reply.tool_calls))
        for call in reply.tool_calls:
            if ctx.tools.calls >= ctx.budget.max_tool_calls:
                result = ctx.tools.refuse(call.name, "tool call limit reached; write the program now")
            elif not call.valid:
                result = ctx.tools.refuse(call.name, "the arguments are not a JSON object: "
                                          f"{call.raw_arguments[:200]}")
            else:
                result = await ctx.tools.call(call.name, call.arguments)
            messages.append(Message("tool", result, tool_call_id=call.id, name=call.name))


register_node("analyze", analyze, prior=0.5, prior_gain=0.1, needs_parent=True,
              budget=NodeBudget(max_turns=6, max_tool_calls=8, max_tokens=200_000))
