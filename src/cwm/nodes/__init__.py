"""Node types: what an expansion of the search runs (generate, improve, fix, analyze, and plugins).

Write a node as ``async def my_node(ctx: NodeContext) -> str | None`` and register it with
``cwm.register_node("my-node", my_node)``, the entry-point group ``cwm.nodes``, or per run with
``cwm synthesize --node MODULE:ATTR``. See ``registry`` and ``context``.
"""

from cwm.nodes.context import BudgetedLLM, NodeBudget, NodeBudgetExceeded, NodeContext, ParentView
from cwm.nodes.registry import (
    ENTRY_POINT_GROUP,
    NodeSpec,
    load_entry_points,
    register_node,
    registered_nodes,
    resolve_node,
    run_nodes,
)

__all__ = ["ENTRY_POINT_GROUP", "BudgetedLLM", "NodeBudget", "NodeBudgetExceeded", "NodeContext", "NodeSpec",
           "ParentView", "load_entry_points", "register_node", "registered_nodes", "resolve_node", "run_nodes"]
