"""Conversation memory persisted in SQLite, and long-term vector memory for agents."""
