"""Test tools (the scansion scenario runner, a hostile client): not the server."""
