"""agentkit.chains: LCEL chains over local models (RAG with citations, summarise, classify, route).

Filled by the index / RAG issue; installed as `agentkit.chains` (see pyproject package-dir)."""
