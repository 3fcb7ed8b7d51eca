"""Persistent storage: the SQLite database and the stores built on it."""
