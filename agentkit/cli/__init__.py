"""The `agentkit` command line (typer + rich)."""
