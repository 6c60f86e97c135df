"""NDJSON deliveries split at line feeds only: a JSON string may hold U+2028, U+0085 or a form feed raw."""

from __future__ import annotations

import json
from typing import Any

from catalogue.query.engine import QueryEngine


def test_a_line_separator_inside_a_string_stays_in_its_record(make_catalogue: Any) -> None:
    texts = ["Zeile\u2028zwei", "next\u0085line", "form\x0cfeed"]
    content = "\r\n".join(json.dumps({"id": i, "label": t}, ensure_ascii=False) for i, t in enumerate(texts))
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"}], "primaryKey": ["id"]}
    hub = make_catalogue("lines", schema, content.encode("utf-8"), fmt="ndjson")
    engine = QueryEngine(hub)
    try:
        ref = engine.version("lines")
        rows = engine.cursor().execute(f"SELECT id, label FROM read_parquet({list(ref.uris)!r}) ORDER BY id").fetchall()
    finally:
        engine.close()
    assert rows == list(enumerate(texts))
