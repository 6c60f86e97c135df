"""ODSQL's in_bbox() and intersects() test the bounding boxes first (catalogue.query.odsql._intersects): the
rows they keep are exactly the rows ST_Intersects alone keeps, for points, lines and polygons whose boxes
overlap the query's shape without touching it."""

from __future__ import annotations

import duckdb
import pytest

from catalogue import duck
from catalogue.query.odsql import Compiler
from catalogue.schema.model import TableSchema

SCHEMA = TableSchema.from_stored({"fields": [{"name": "id", "type": "integer"}, {"name": "shape", "type": "geojson"}]})
SHAPES = [
    "POINT (10 53.5)", "POINT (10.5 53.5)", "POINT (11 54)",  # inside, on the edge, outside
    # An L whose box covers the query box, though the line itself stays outside it.
    "LINESTRING (9 52, 9 55, 12 55)",
    # A thin diagonal polygon whose box covers the query box; it crosses the box.
    "POLYGON ((9 52, 9.1 52, 12 55, 11.9 55, 9 52))",
    # A ring around the box: its box covers the box, its area (with a hole) does not touch it.
    "POLYGON ((8 51, 13 51, 13 56, 8 56, 8 51), (9.5 53, 10.6 53, 10.6 54, 9.5 54, 9.5 53))",
    "MULTIPOINT ((9 52), (12 55))",  # both points outside, the box around them covers it
]
POLYGON = "POLYGON((9.8 53.2, 10.5 53.2, 10.5 53.8, 9.8 53.8, 9.8 53.2))"
LINE = '{"type": "LineString", "coordinates": [[9.8, 53.3], [10.2, 53.7]]}'
CASES = [  # (ODSQL, the shape it asks about in DuckDB SQL, the ids of the shapes it meets)
    ("in_bbox(shape, 53.2, 9.8, 53.8, 10.5)", "ST_MakeEnvelope(9.8, 53.2, 10.5, 53.8)", [1, 2, 5]),
    (f"intersects(shape, geom'{POLYGON}')", f"ST_GeomFromText('{POLYGON}')", [1, 2, 5]),
    (f"intersects(shape, geom'{LINE}')", f"ST_GeomFromGeoJSON('{LINE}')", [1]),
]


def _ids(con: duckdb.DuckDBPyConnection, condition: str, params: dict[str, object] | None = None) -> list[int]:
    return [r[0] for r in con.execute(f"SELECT id FROM t WHERE {condition} ORDER BY id", params or {}).fetchall()]


@pytest.mark.parametrize("where, shape, meets", CASES)
def test_the_box_test_first_keeps_exactly_the_rows_st_intersects_keeps(where: str, shape: str, meets: list[int]) -> None:
    con = duck.connect(threads=1)
    try:
        con.execute("CREATE TABLE t (id INTEGER, shape GEOMETRY)")
        con.executemany("INSERT INTO t VALUES (?, ST_GeomFromText(?::VARCHAR))", list(enumerate(SHAPES, 1)))
        compiler = Compiler(SCHEMA)
        condition = compiler.where(where)
        assert condition.upper().startswith("(ST_INTERSECTS_EXTENT(")  # the box test comes first
        kept = _ids(con, condition, compiler.params)
        alone = _ids(con, f"ST_Intersects(shape, {shape})")
        boxes = _ids(con, f"ST_Intersects_Extent(shape, {shape})")
    finally:
        con.close()
    assert kept == alone == meets
    assert set(boxes) > set(kept)  # the box test alone keeps more (4, 6, 7): the exact test is still needed
