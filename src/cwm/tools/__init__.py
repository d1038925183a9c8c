"""Tools that agent nodes call: typed async callables with a name, a description and a JSON schema.

Third parties add their own with ``register``; agents look them up by name, so a tool-using node can be
written without importing the sandbox.
"""

from cwm.tools.base import Tool, get_tool, register, registered
from cwm.tools.check import CheckProgram

__all__ = ["CheckProgram", "Tool", "get_tool", "register", "registered"]
