"""Autonomous agents: `goal.yaml` specs, the LangGraph loop (plan -> act -> observe -> critique),
`Agent` / `AgentResult`, run traces under `runs/<run-id>/`, and their export as training data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.agents.agent import Agent, AgentResult
    from agentkit.agents.spec import Budgets, GoalSpec, load_goal
    from agentkit.agents.trace import RunStore

# Lazy: langgraph and langchain load on first use, not when `agentkit.agents` is imported.
_LAZY = {
    "Agent": "agentkit.agents.agent",
    "AgentResult": "agentkit.agents.agent",
    "Budgets": "agentkit.agents.spec",
    "GoalSpec": "agentkit.agents.spec",
    "load_goal": "agentkit.agents.spec",
    "RunStore": "agentkit.agents.trace",
}
__all__ = ["Agent", "AgentResult", "Budgets", "GoalSpec", "RunStore", "load_goal"]


__getattr__ = lazy_exports(__name__, _LAZY)
