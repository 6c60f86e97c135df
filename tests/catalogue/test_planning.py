"""Planning: the count query of a page after a cursor counts every match, built from the filters, not edited SQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue.query.cursors import PART_STRIDE, PROCESS_SECRET, cursor_scope, encode_cursor
from catalogue.schema.model import TableSchema
from catalogue.query.planning import CURSOR_FILTER, RecordsRequest, plan_records

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "zone", "type": "string"}]}


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("planning")
    out = []
    for number in range(2):
        path = Path(root) / f"p{number}.parquet"
        pq.write_table(pa.Table.from_pylist([{"id": number * 10 + i, "zone": "ab"[i % 2]} for i in range(10)]), path)
        out.append(str(path))
    return out


def after(parts: list[str], request: RecordsRequest, part: int, row: int) -> RecordsRequest:
    scope = cursor_scope(parts, request.where, request.refine, request.exclude)
    token = encode_cursor(1, part * PART_STRIDE + row, scope=scope, secret=PROCESS_SECRET)
    return RecordsRequest(where=request.where, refine=request.refine, limit=request.limit, cursor=token)


@pytest.mark.parametrize("request_", [
    RecordsRequest(limit=3), RecordsRequest(where="zone = 'a'", limit=3),
    RecordsRequest(where="id > 2", refine=["zone:b"], limit=3),
], ids=["unfiltered", "where", "where+refine"])
def test_a_cursor_narrows_the_rows_but_not_the_count(parts: list[str], request_: RecordsRequest) -> None:
    first = plan_records(request_, TableSchema.from_stored(SCHEMA), parts, 1)
    follow = plan_records(after(parts, request_, 1, 4), TableSchema.from_stored(SCHEMA), parts, 1)
    assert CURSOR_FILTER not in first.sql and CURSOR_FILTER in follow.sql
    assert follow.count_sql == first.count_sql and "cursor" not in follow.count_sql
    assert (follow.params["cursor_file"], follow.params["cursor_row"]) == (parts[1], 4)
    assert follow.params["scan"] == parts[1:]  # the part before the cursor's is not read
    assert follow.params["parts"] == parts  # ... but counted
