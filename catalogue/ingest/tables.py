"""Names of the scratch tables that ingest modules share in one DuckDB connection.

Validation and the CSV scan fill ``TYPED`` (and ``ERRRAW``, the raw text of
rows with errors); the append diff writes ``NEW``. One place for the names,
so a module that reads a table another one wrote cannot misspell it.
"""

from __future__ import annotations

TYPED = "__typed"  # the delivery's rows, typed, with one error column per field
ERRRAW = "__errraw"  # the delivered text of the rows with errors (for the report)
NEW = "__new"  # append mode: the delivered rows not yet in the current version
