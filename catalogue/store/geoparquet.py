"""GeoParquet 1.1 metadata for the geometry (WKB) columns of a table."""

from __future__ import annotations

from typing import Any

import duckdb

from catalogue.schema.sql_text import ident

# ST_GeometryType names -> GeoParquet geometry_types names.
GEOMETRY_NAMES = {
    "POINT": "Point",
    "LINESTRING": "LineString",
    "POLYGON": "Polygon",
    "MULTIPOINT": "MultiPoint",
    "MULTILINESTRING": "MultiLineString",
    "MULTIPOLYGON": "MultiPolygon",
    "GEOMETRYCOLLECTION": "GeometryCollection",
}


def geo_metadata(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str]) -> dict[str, Any]:
    """The ``geo`` file metadata describing ``columns`` of ``relation`` (WKB, lon/lat, OGC:CRS84)."""
    described = {}
    for column in columns:
        geom = ident(column)
        kinds, xmin, ymin, xmax, ymax = con.execute(
            f"SELECT list(DISTINCT ST_GeometryType({geom})::VARCHAR), min(ST_XMin({geom})), "
            f"min(ST_YMin({geom})), max(ST_XMax({geom})), max(ST_YMax({geom})) FROM ({relation})"
        ).fetchone()  # type: ignore[misc]
        entry: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted(GEOMETRY_NAMES.get(k, k) for k in (kinds or []) if k),
        }
        if xmin is not None:
            entry["bbox"] = [xmin, ymin, xmax, ymax]
        described[column] = entry
    return {"version": "1.1.0", "primary_column": columns[0], "columns": described}
