"""Tools that agent nodes call: typed async callables with a name, a description and a JSON schema.

Shipped: ``check_program``, ``run_analysis``, ``show_transitions``, ``describe_env``. Each is registered
as a factory (``register_tool``) and built per run by ``bind_tools`` from that run's ``ToolDeps`` (the
sandbox and the training transitions, never the held-out ones), so nodes use tools without importing the
sandbox. ``register``/``get_tool`` keep the older registry of ready-made tool instances.
"""

from cwm.tools.base import Tool, get_tool, register, registered
from cwm.tools.box import ToolBox, ToolDeps, ToolLimitReached, bind_tools, register_tool, tool_names
from cwm.tools.check import CheckProgram

__all__ = ["CheckProgram", "Tool", "ToolBox", "ToolDeps", "ToolLimitReached", "bind_tools", "get_tool",
           "register", "register_tool", "registered", "tool_names"]
