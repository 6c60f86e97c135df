"""The export-format seam: formats come from the registry, and stored files reach a download only through storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue.errors import InvalidParameter, NotFound
from catalogue.hub import Hub, open_hub
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.exports import ExportFile, StoredExport, export_format, export_version, format_names
from catalogue.query.records import RecordsRequest
from catalogue.registry import load_registry
from catalogue.settings import Settings
from catalogue.store.storage import LocalStorage

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"}], "primaryKey": ["id"]}
FEED = b"id,label\n1,a\n2,b\n"


class FilesElsewhere(LocalStorage):
    """A backend that keeps no file a client could be sent as it is (as an object store would)."""

    def local_path(self, key: str) -> Path | None:
        return None


def _ref(hub: Hub) -> VersionRef:
    with hub.sessions() as session:
        ds = get_dataset(session, "labels")
        return VersionRef.of(hub, ds, get_version(session, ds))


@pytest.fixture
def labels(make_catalogue: Any) -> Hub:
    hub: Hub = make_catalogue("labels", SCHEMA, FEED)
    return hub


def test_formats_are_listed_in_their_order_with_their_labels() -> None:
    registry = load_registry()
    assert format_names(registry) == ["csv", "json", "ndjson", "geojson", "parquet", "xlsx"]
    assert [(export_format(registry, n).media_type, export_format(registry, n).extension)
            for n in ("csv", "xlsx")] == [
        ("text/csv; charset=utf-8", "csv"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")]
    with pytest.raises(InvalidParameter) as caught:
        export_format(registry, "CSV")
    assert (caught.value.code, caught.value.message) == (
        "invalid-parameter", "Unknown export format 'CSV'. Use one of: csv, json, ndjson, geojson, parquet, xlsx.")


def test_a_whole_parquet_export_is_the_stored_file_on_local_storage(labels: Hub) -> None:
    ref = _ref(labels)
    engine = QueryEngine(labels)
    try:
        result = export_version(labels, engine, ref, "parquet", RecordsRequest())
    finally:
        engine.close()
    assert result == StoredExport(ref.keys[0])  # the API sends it as a file (FileResponse, Range answered)


@pytest.mark.embedded_only("a LocalStorage subclass over the local store the catalogue was built in")
def test_a_backend_without_local_files_sends_the_stored_object(labels: Hub) -> None:
    registry = load_registry()
    registry.register("storage", "elsewhere", FilesElsewhere)
    hub = open_hub(Settings(data_dir=labels.settings.data_dir, definitions_dir=labels.settings.definitions_dir,
                            storage="elsewhere"), registry)
    engine = QueryEngine(hub)
    try:
        ref = _ref(hub)
        result = export_version(hub, engine, ref, "parquet", RecordsRequest())
        assert result == StoredExport(ref.keys[0])  # api/stored_files.py reads it in ranges
        with hub.storage.open_read(ref.keys[0]) as handle:
            assert handle.read(4) == b"PAR1"
        with pytest.raises(NotFound):
            hub.storage.open_read("datasets/labels/parts/none.parquet")
    finally:
        engine.close()
        hub.close()


def test_every_engine_uri_starts_with_the_engine_root(labels: Hub) -> None:
    ref = _ref(labels)
    assert ref.uris[0].startswith(labels.storage.engine_root() + "/")
    if isinstance(labels.storage, LocalStorage):  # an object store's root is its bucket and prefix
        assert labels.storage.engine_root() == str(labels.settings.store_dir.resolve())

