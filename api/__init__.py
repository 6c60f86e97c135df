"""Outward interfaces: the HTTP API and the command line (the composition root)."""
