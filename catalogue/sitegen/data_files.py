"""What the site shows of a version's rows, read at build time: preview rows, map features, a chart's series,
the sizes of its downloads, and a copy of its Parquet file for the in-browser SQL console.

Download sizes (every version lists every format its export serves; the rule for the size shown beside each):
- the current version, up to ``SIZE_ROWS_MAX`` rows: every format measured exactly, by writing it once (cached);
- Parquet of a one-part version (any version): the stored part's size, exact (the export serves that file);
- the Data Package zip: exact for the current version's copy in the site; for other versions the API's zip
  of the stored parts, about the sum of their sizes (shown as "≈");
- an older version that was measured while it was current: those sizes, kept beside the cache (versions never
  change, so they stay exact);
- everything else (older versions never measured, larger versions, multi-part Parquet, the descriptor):
  "size on request", never computed at build time (it could mean writing gigabytes per version).

Everything here is keyed by the version's content hash and kept in ``data_dir/cache/site-data``,
so a rebuild never reads a version twice (versions never change).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from catalogue.errors import UrbandataError
from catalogue.hub import Hub
from catalogue.meta.downloads import served_formats
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.exports import CsvOptions, ExportFile, StoredExport, export_version, format_names
from catalogue.query.formats.files import parquet_key
from catalogue.query.planning import RecordsRequest
from catalogue.schema.model import TableSchema
from catalogue.schema.sql_text import ident
from catalogue.store.changes import parquet_scan
from catalogue.sitegen.partial_files import partial_path

PREVIEW_ROWS = 10
MAP_FEATURES = 5000
CHART_POINTS = 5000
ARROW_ROWS_MAX = 1_000_000  # the SQL console's Arrow file is fetched whole by the browser
ZIP_TIME = (2000, 1, 1, 0, 0, 0)
SIZE_ROWS_MAX = 200_000  # versions up to this many rows get every download's size, measured by writing it once
CACHE_FORMAT = 1
LABELS = {"csv": "CSV", "csv-de": "CSV (de)", "json": "JSON", "ndjson": "NDJSON", "geojson": "GeoJSON",
          "parquet": "Parquet", "xlsx": "XLSX (Excel)"}


@dataclass(frozen=True)
class Download:
    """One download of a version: its format key, label, API path (below the API base) and size."""

    key: str
    label: str
    path: str
    size: int | None


def chart_fields(schema: TableSchema) -> tuple[str, str, str] | None:
    """(entity, time, value) of a time series: the first key field, the time field, the first numeric non-key field."""
    time = schema.time_field
    if time is None or not schema.primary_key:
        return None
    entity = schema.primary_key[0]
    value = next((f.name for f in schema.fields if f.type in ("integer", "number") and f.name not in schema.primary_key),
                 None)
    return None if value is None or entity == time else (entity, time, value)


def download_options(registry_names: list[str], name: str, number: int, schema: TableSchema) -> list[tuple[str, str, str]]:
    """(key, label, API path) of every download of version ``number`` (whose Table Schema is ``schema``), in the order shown."""
    base = f"/datasets/{name}"
    found: list[tuple[str, str, str]] = []
    for fmt in served_formats(registry_names, schema):
        found.append((fmt, LABELS.get(fmt, fmt.upper()), f"{base}/exports/{fmt}?version={number}"))
        if fmt == "csv":
            found.append(("csv-de", LABELS["csv-de"], f"{base}/exports/csv?version={number}&number_style=german"))
    found.append(("datapackage", "Data Package (JSON)", f"{base}/versions/{number}/datapackage.json"))
    found.append(("zip", "Data Package (ZIP)", f"{base}/versions/{number}/datapackage.zip"))
    return found


class VersionData:
    """Reads what the site needs of versions, through one query engine opened on first use."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.cache = hub.settings.data_dir / "cache" / "site-data"
        self._engine: QueryEngine | None = None

    @property
    def engine(self) -> QueryEngine:
        """The query engine, without the spatial extension until a version with geometry needs it."""
        if self._engine is None:
            self._engine = QueryEngine(self.hub, spatial=False)
        return self._engine

    def _engine_for(self, ref: VersionRef) -> QueryEngine:
        """The query engine, with the spatial extension loaded when ``ref`` holds geometry."""
        engine = self.engine
        if ref.schema.geometry_fields:
            engine.load_spatial()
        return engine

    def close(self) -> None:
        """Close the query engine if one was opened."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def formats(self) -> list[str]:
        """The registered export formats, in their order."""
        return format_names(self.hub.registry)

    def facts(self, ref: VersionRef, has_geometry: bool) -> dict[str, Any]:
        """Preview rows, map features, chart series and download sizes of ``ref`` (cached by its content hash)."""
        kept = self.cache / f"{ref.dataset}-{ref.content_hash}.json"
        try:
            doc = json.loads(kept.read_text(encoding="utf-8"))
            if doc.get("format") == CACHE_FORMAT:
                self._keep_sizes(ref.dataset, ref.content_hash, doc.get("sizes") or {})
                return dict(doc)
        except (OSError, ValueError):
            pass
        try:
            doc = {"format": CACHE_FORMAT, "preview": self._preview(ref), "sizes": self._sizes(ref),
                   "map": self._map(ref) if has_geometry else None, "chart": self._chart(ref)}
        except (duckdb.Error, UrbandataError, OSError):
            # A version whose files cannot be read (a damaged store) still gets its page, without these.
            return {"format": CACHE_FORMAT, "preview": None, "sizes": {}, "map": None, "chart": None}
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = partial_path(kept)
        partial.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        os.replace(partial, kept)
        self._keep_sizes(ref.dataset, ref.content_hash, doc["sizes"])
        return doc

    def known_sizes(self, dataset: str, content_hash: str) -> dict[str, int]:
        """The download sizes measured while that version was current (empty if it never was, or not measured)."""
        try:
            found = json.loads((self.cache / f"{dataset}-{content_hash}.sizes.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def _keep_sizes(self, dataset: str, content_hash: str, sizes: dict[str, int]) -> None:
        """The sizes apart from the rest of the facts (small: read for every older version of a rebuilt dataset)."""
        kept = self.cache / f"{dataset}-{content_hash}.sizes.json"
        if not sizes or kept.exists():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = partial_path(kept)
        partial.write_text(json.dumps(sizes, separators=(",", ":")), encoding="utf-8")
        os.replace(partial, kept)

    def copy_parquet(self, ref: VersionRef, target: Path) -> bool:
        """Copy the version's whole Parquet file to ``target``; False if it has none or it cannot be read."""
        if not ref.keys:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(target)
        try:
            key = parquet_key(self._engine_for(ref), ref)
            source = self.hub.storage.local_path(key)
            if source is not None:
                # A copy, not a hard link: the store's files are private to the hub (mode 0600); a static host
                # must read this one.
                shutil.copyfile(source, partial)
            else:
                with self.hub.storage.open_read(key) as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except (duckdb.Error, UrbandataError, OSError):
            partial.unlink(missing_ok=True)
            return False
        os.replace(partial, target)
        return True

    def write_package_zip(self, ref: VersionRef, descriptor_key: str, parquet: Path, target: Path) -> int | None:
        """A Data Package zip of the version at ``target``: its descriptor, the resource pointing at the Parquet
        file inside the zip; returns its size (None when the descriptor cannot be read)."""
        try:
            descriptor = json.loads(self.hub.storage.read_bytes(descriptor_key))
        except (UrbandataError, OSError, ValueError):
            return None
        inside = f"data/{ref.dataset}-v{ref.number}.parquet"
        for resource in descriptor.get("resources", []):
            resource["path"] = inside
            resource["bytes"] = parquet.stat().st_size
        partial = partial_path(target)
        # Fixed entry times: the same version always makes the same zip.
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(zipfile.ZipInfo("datapackage.json", ZIP_TIME),
                             json.dumps(descriptor, ensure_ascii=False, indent=2), zipfile.ZIP_DEFLATED)
            entry = zipfile.ZipInfo(inside, ZIP_TIME)
            entry.compress_type = zipfile.ZIP_STORED  # Parquet is compressed already
            with archive.open(entry, "w") as sink, open(parquet, "rb") as source:
                shutil.copyfileobj(source, sink)
        os.replace(partial, target)
        return target.stat().st_size

    def _preview(self, ref: VersionRef) -> dict[str, Any]:
        if not ref.uris:
            return {"columns": [f.name for f in ref.schema.fields], "rows": []}
        page = self._engine_for(ref).records(ref, limit=PREVIEW_ROWS, offset=0)
        columns = [f.name for f in ref.schema.fields]
        rows = [[_cell(row.get(c)) for c in columns] for row in page["results"]]
        return {"columns": columns, "rows": rows}

    def _map(self, ref: VersionRef) -> dict[str, Any] | None:
        geometry = ref.schema.geometry_fields
        if not ref.uris or not geometry:
            return None
        page = self._engine_for(ref).records(ref, limit=MAP_FEATURES, offset=0)
        features = []
        for row in page["results"]:
            shape = row.get(geometry[0])
            if isinstance(shape, dict):
                props = {k: _cell(v) for k, v in row.items() if k not in geometry}
                features.append({"type": "Feature", "geometry": shape, "properties": props})
        return {"type": "FeatureCollection", "features": features}

    def _chart(self, ref: VersionRef) -> dict[str, Any] | None:
        fields = chart_fields(ref.schema)
        if fields is None or not ref.uris:
            return None
        entity, time, value = fields
        sql = (f"SELECT CAST({ident(entity)} AS VARCHAR), strftime(date_trunc('hour', CAST({ident(time)} AS TIMESTAMP)), "
               f"'%Y-%m-%dT%H:%M'), avg({ident(value)}) FROM {parquet_scan(list(ref.uris))} "
               f"GROUP BY 1, 2 ORDER BY 1, 2 LIMIT {CHART_POINTS}")
        rows = self._engine_for(ref).run(lambda cur: cur.execute(sql).fetchall())
        series: dict[str, list[list[Any]]] = {}
        for who, hour, mean in rows:
            series.setdefault(str(who), []).append([hour, None if mean is None else round(float(mean), 3)])
        return {"entity": entity, "time": time, "value": value, "aggregate": "hourly mean",
                "series": [{"name": k, "points": v} for k, v in series.items()]}

    def _sizes(self, ref: VersionRef) -> dict[str, int]:
        sizes: dict[str, int] = {}
        if not ref.uris or ref.row_count > SIZE_ROWS_MAX:
            return sizes  # larger versions: only the stored Parquet size is shown (writing every export takes long)
        variants = [(f, CsvOptions()) for f in served_formats(self.formats(), ref.schema)]
        variants.insert(1, ("csv-de", CsvOptions(delimiter=";", number_style="german")))
        for key, options in variants:
            fmt = "csv" if key == "csv-de" else key
            try:
                result = export_version(self.hub, self._engine_for(ref), ref, fmt, RecordsRequest(limit=None), options)
            except (UrbandataError, OSError):
                continue
            if isinstance(result, ExportFile):
                sizes[key] = result.path.stat().st_size
                if result.temporary:
                    result.path.unlink(missing_ok=True)
            elif isinstance(result, StoredExport):
                sizes[key] = self.hub.storage.size(result.key)
            else:
                sizes[key] = sum(len(chunk) for chunk in result)
        return sizes


def _cell(value: Any) -> Any:
    """A preview cell: geometry shown by its type, long text shortened."""
    if isinstance(value, dict):
        return value.get("type", "")
    if isinstance(value, str) and len(value) > 120:
        return value[:117] + "…"
    return value
