"""Built-in LangChain tools (the agents issue adds `register_tool` and the workspace tools)."""
