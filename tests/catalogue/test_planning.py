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


GEO = {"fields": [{"name": "id", "type": "integer"}, {"name": "geometry", "type": "geojson"}]}


def test_a_box_given_as_numbers_is_bound_like_in_bbox_and_binds_its_cursor(parts: list[str]) -> None:
    """RecordsRequest.bbox (OGC items) renders the test in_bbox() renders, with the same parameters, and a cursor
    made for one box is refused for another (its scope holds the box) while the box's own is followed."""
    from catalogue.errors import QueryError, UrbandataError

    schema = TableSchema.from_stored(GEO)
    box = ("geometry", 9.9, 53.5, 10.1, 53.6)
    numbers = plan_records(RecordsRequest(bbox=box, limit=3), schema, parts, 1)
    text = plan_records(RecordsRequest(where="in_bbox(`geometry`, 53.5, 9.9, 53.6, 10.1)", limit=3), schema, parts, 1)
    assert sorted(v for k, v in numbers.params.items() if k[1:].isdigit()) == [9.9, 10.1, 53.5, 53.6]
    assert sorted(v for k, v in text.params.items() if k[1:].isdigit()) == [9.9, 10.1, 53.5, 53.6]
    assert numbers.sql.upper().count("ST_INTERSECTS") == text.sql.upper().count("ST_INTERSECTS") == 2

    scope = cursor_scope(parts, None, [], [], box)
    token = encode_cursor(1, 1 * PART_STRIDE + 4, scope=scope, secret=PROCESS_SECRET)
    followed = plan_records(RecordsRequest(bbox=box, limit=3, cursor=token), schema, parts, 1)
    assert (followed.params["cursor_file"], followed.params["cursor_row"]) == (parts[1], 4)
    with pytest.raises(UrbandataError):
        plan_records(RecordsRequest(bbox=("geometry", 9.0, 53.5, 10.1, 53.6), limit=3, cursor=token), schema, parts, 1)
    with pytest.raises(UrbandataError):  # ... and for the same rows without a box
        plan_records(RecordsRequest(limit=3, cursor=token), schema, parts, 1)
    with pytest.raises(QueryError, match="geometry field"):
        plan_records(RecordsRequest(bbox=("id", 9.9, 53.5, 10.1, 53.6), limit=3), schema, parts, 1)
    with pytest.raises(QueryError, match="latitudes"):
        plan_records(RecordsRequest(bbox=("geometry", 9.9, 95.0, 10.1, 96.0), limit=3), schema, parts, 1)


@pytest.mark.parametrize(("select", "group_by"), [
    (None, None), ("id", None), ("zone, id", None), ("count(*) as n", None), ("count(distinct zone) as d", None),
    ("zone, count(id) as n", "zone"), (None, "zone"),
])
def test_output_types_known_without_binding_are_the_ones_duckdb_gives(parts: list[str], select: str | None,
                                                                      group_by: str | None) -> None:
    """Selected fields and counts are typed from the schema (no LIMIT 0 query to describe them); the types are
    DuckDB's own for the same query."""
    import duckdb

    from catalogue.query.records import HIDDEN, _used, output_columns

    plan = plan_records(RecordsRequest(select=select, group_by=group_by, limit=3), TableSchema.from_stored(SCHEMA),
                        parts, 1)
    assert plan.columns is not None
    with duckdb.connect() as con:
        described = [c for c in output_columns(con, plan.sql, _used(plan.sql, plan.params)) if c[0] not in HIDDEN]
    assert plan.columns == described


@pytest.mark.parametrize("select", ["id + 1 as x", "count(*) + 1 as n", "max(id) as m", "zone, upper(zone) as z"])
def test_a_computed_output_is_left_for_duckdb_to_type(parts: list[str], select: str) -> None:
    assert plan_records(RecordsRequest(select=select, limit=3), TableSchema.from_stored(SCHEMA), parts, 1).columns is None
