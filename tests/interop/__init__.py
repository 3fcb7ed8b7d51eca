"""Programs run as subprocesses by the interop tests (not test modules)."""
