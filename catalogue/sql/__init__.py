"""The read-only SQL endpoint: statement guard, sandboxed worker processes, pool, runner."""
