"""The read path: versions resolved, ODSQL, records, facets, pruning, caches, exports."""
