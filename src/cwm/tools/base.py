"""The tool interface and registry."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    schema: dict[str, Any]
    """JSON schema of the arguments (what an LLM with tool calling would fill in)."""

    async def __call__(self, **kwargs: Any) -> Any: ...


_REGISTRY: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    if not isinstance(tool, Tool):
        raise TypeError(f"{tool!r} does not implement the Tool protocol (name, description, schema, __call__)")
    _REGISTRY[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no tool named {name!r}; registered: {sorted(_REGISTRY)}") from None


def registered() -> list[str]:
    return sorted(_REGISTRY)
