"""Prompt templates from YAML or Jinja files, addressed by name and version (see the index / RAG issue)."""
