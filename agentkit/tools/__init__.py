"""Agent tools: `register_tool` + the `agentkit.tools` entry-point group, `build_tools` for goal.yaml
`tools:`, `invoke_tool` (never raises), and the built-ins (workspace files, calculator, index search
and RAG, python and http_fetch (off by default), ask_model, classify, finish)."""

from agentkit.tools.registry import (
    ENTRY_POINT_GROUP,
    NoOptions,
    ToolContext,
    ToolError,
    ToolFactory,
    ToolOutcome,
    build_tools,
    get_factory,
    invoke_tool,
    register_tool,
    tool_names,
    tool_timeout,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "NoOptions",
    "ToolContext",
    "ToolError",
    "ToolFactory",
    "ToolOutcome",
    "build_tools",
    "get_factory",
    "invoke_tool",
    "register_tool",
    "tool_names",
    "tool_timeout",
]
