"""A Table Schema for a dataset found in a remote catalogue, inferred from its data.

A dataset defined in datasets/ comes with its Table Schema; one discovered in a CKAN portal or
a DCAT catalogue does not, so its first delivery is read (as text, by the hub's own readers)
and each column gets the narrowest type every non-empty cell matches, checked column-wise with
pyarrow. The rules are deliberately plain (ISO dates, a dot as decimal mark): a cell they do not
cover makes the column a string, never a guess that later rows could break.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from catalogue.errors import MalformedFeed, SchemaError
from catalogue.ingest.readers import NO_FIELDS, open_csv, open_delivery
from catalogue.schema.model import TableSchema

# Narrowest first; a column takes the first type all its non-empty cells match.
TYPE_PATTERNS = (
    ("boolean", r"^(true|false|True|False|TRUE|FALSE)$"),
    # A leading zero (01234: a postcode, a key) is text: as a number it would lose the zero.
    ("integer", r"^[+-]?(0|[1-9][0-9]{0,17})$"),
    ("number", r"^[+-]?(0|[1-9][0-9]*)(\.[0-9]+)?$"),
    ("date", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    ("datetime", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?$"),
)
AMBIGUOUS_NUMBER = r"^[+-]?[0-9]{1,3}\.[0-9]{3}$"  # a thousands dot or three decimals: cannot tell
SNIFF_BYTES = 64 << 10
DELIMITERS = (";", ",", "\t", "|")


def sniff_csv_options(source: bytes | Path) -> dict[str, Any]:
    """Delimiter and encoding of a CSV file from its first 64 KiB (UTF-8 unless it does not decode; then cp1252)."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    else:
        head = source[:SNIFF_BYTES]
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        encoding = "utf-8"
    except UnicodeDecodeError:
        text, encoding = head.decode("cp1252", errors="replace"), "cp1252"
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    delimiter = max(DELIMITERS, key=header.count)
    return {"delimiter": delimiter if header.count(delimiter) else ",", "encoding": encoding}


def infer_schema(source: bytes | Path, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """A Table Schema descriptor for the delivery ``source`` (checked; MalformedFeed if it cannot be read)."""
    raw = open_delivery(source, fmt, options, _as_text(source, options) if fmt == "csv" else NO_FIELDS,
                        exact_types=False)
    _check_labels(raw.labels)
    columns: dict[str, list[pa.Array]] = {label: [] for label in raw.labels}
    for batch in raw.batches:
        for name, column in zip(batch.schema.names, batch.columns):
            columns.setdefault(name, []).append(column.cast(pa.string()))
    if not columns:
        raise MalformedFeed("The resource has no columns; a Table Schema cannot be inferred from it.")
    fields = []
    for name, chunks in columns.items():
        kind = "geojson" if fmt == "geojson" and name == "geometry" else _narrowest(pa.chunked_array(chunks, pa.string()))
        fields.append({"name": name, "type": kind})
    descriptor = {"fields": fields, "missingValues": [""]}
    TableSchema.parse(descriptor)  # raises SchemaError (a name it cannot take...) with the reason
    return descriptor


def _check_labels(labels: list[str]) -> None:
    """A blank or repeated column name is refused (they would make a nameless field, or merge two columns)."""
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    blank = [str(i + 1) for i, label in enumerate(labels) if not label.strip()]
    if repeated or blank:
        raise SchemaError(
            "The resource's columns cannot become a Table Schema: "
            + "; ".join(([f"the name(s) {', '.join(repeated)} appear more than once"] if repeated else [])
                        + ([f"column(s) {', '.join(blank)} have no name"] if blank else []))
            + ". Ask the publisher for one distinct name per column.",
            details={"repeated": repeated, "blank_columns": blank})


def _as_text(source: bytes | Path, options: dict[str, Any]) -> TableSchema:
    """Every column of the CSV file as a string field: the types are inferred from the cells as written.

    Read without a schema, pyarrow would guess types first and hand back its own spelling of
    them: ``01234`` as ``1234`` (an integer, the leading zero lost), ``1.100`` as ``1.1`` (past the
    ambiguity check), ``2026-11-20T08:15:00`` as ``2026-11-20 08:15:00`` (no longer a datetime).
    """
    labels = open_csv(source, options, NO_FIELDS, exact_types=False, block_bytes=1 << 20, whole_file=False).labels
    _check_labels(labels)
    return TableSchema.from_stored({"fields": [{"name": label, "type": "string"} for label in labels]})


def _narrowest(cells: pa.ChunkedArray) -> str:
    filled = pc.filter(cells, pc.and_(pc.is_valid(cells), pc.not_equal(cells, "")))
    if len(filled) == 0:
        return "string"
    for kind, pattern in TYPE_PATTERNS:
        if pc.all(pc.match_substring_regex(filled, pattern)).as_py():
            # 1.100 is 1100 in a German file and 1.1 in an English one: such a column is not guessed.
            if kind == "number" and pc.all(pc.match_substring_regex(filled, AMBIGUOUS_NUMBER)).as_py():
                return "string"
            return kind
    return "string"
