"""The `finish` tool: the agent's last action. It returns the answer; the agent loop treats a call to
`finish` as the end of the run."""

from __future__ import annotations

from agentkit.tools.registry import ToolContext, ToolFactory, register_tool

FINISH = "finish"


def _build(context: ToolContext, options: object):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def finish(answer: str) -> str:
        """Finish with the final answer."""
        return str(answer)

    return StructuredTool.from_function(finish, name=FINISH, description="Finish with the final answer.")


register_tool(ToolFactory(FINISH, _build, "end the run with the final answer"))
