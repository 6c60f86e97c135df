"""Table Schemas: typed fields parsed once, field parsing in DuckDB, SQL quoting."""
