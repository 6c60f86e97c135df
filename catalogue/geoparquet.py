"""GeoParquet 1.1 metadata for the geometry (WKB) columns of a table."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa

from catalogue.sql_text import ident

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


def geo_metadata(con: duckdb.DuckDBPyConnection, table: pa.Table, columns: list[str]) -> dict[str, Any]:
    """The ``geo`` file metadata describing ``columns`` (WKB, lon/lat, OGC:CRS84)."""
    con.register("__geo", table)
    try:
        described = {}
        for column in columns:
            geom = ident(column) if is_geoarrow(table.schema.field(column)) else f"ST_GeomFromWKB({ident(column)})"
            kinds, xmin, ymin, xmax, ymax = con.execute(
                f"SELECT list(DISTINCT ST_GeometryType({geom})::VARCHAR), min(ST_XMin({geom})), "
                f"min(ST_YMin({geom})), max(ST_XMax({geom})), max(ST_YMax({geom})) FROM __geo"
            ).fetchone()  # type: ignore[misc]
            entry: dict[str, Any] = {
                "encoding": "WKB",
                "geometry_types": sorted(GEOMETRY_NAMES.get(k, k) for k in (kinds or []) if k),
            }
            if xmin is not None:
                entry["bbox"] = [xmin, ymin, xmax, ymax]
            described[column] = entry
    finally:
        con.unregister("__geo")
    return {"version": "1.1.0", "primary_column": columns[0], "columns": described}


def is_geoarrow(field: pa.Field) -> bool:
    """Whether DuckDB reads this Arrow field as GEOMETRY (a geoarrow.wkb extension column)."""
    name = getattr(field.type, "extension_name", None) or (field.metadata or {}).get(b"ARROW:extension:name", b"")
    return name in ("geoarrow.wkb", b"geoarrow.wkb")


def with_geo_metadata(table: pa.Table, geo: dict[str, Any]) -> pa.Table:
    """``table`` with the GeoParquet ``geo`` key in its schema metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(geo).encode()
    return table.replace_schema_metadata(metadata)
