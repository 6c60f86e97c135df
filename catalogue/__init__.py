"""urbandata kernel: metadata, versioned store, validation, queries, site builder.

Imports no web framework and no HTTP client (a contract test enforces it).
"""
