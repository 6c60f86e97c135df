"""Whole-version files: Parquet downloads and export media types."""

from __future__ import annotations

from catalogue.changes import parquet_scan
from catalogue.hub import Hub
from catalogue.query import QueryEngine, VersionRef

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "geojson": "application/geo+json",
    "parquet": "application/vnd.apache.parquet",
}


def parquet_file(hub: Hub, engine: QueryEngine, ref: VersionRef) -> str:
    """A single Parquet file holding the whole version (GeoParquet where there is geometry).

    A one-part version is its part; a multipart version is combined once and
    kept, keyed by the version's content hash (versions never change).
    """
    if len(ref.uris) == 1:
        return ref.uris[0]
    key = f"exports/{ref.dataset}/{ref.content_hash}.parquet"
    if not hub.storage.exists(key):
        scratch = hub.storage.new_scratch_file(".parquet")
        cur = engine.cursor()
        try:
            target = str(scratch).replace("'", "''")
            cur.execute(
                f"COPY (SELECT * FROM {parquet_scan(list(ref.uris))}) TO '{target}' "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {hub.settings.row_group_rows})"
            )
        finally:
            cur.close()
        hub.storage.publish_file(key, scratch)
    return hub.storage.engine_uri(key)
