"""A version as a Frictionless Data Package others can read: where it is served, as one zip, as CSV.

The committed ``datapackage.json`` names its parts relative to itself (``parts/<sha>.parquet``); the
API serves the parts at exactly those paths, so the descriptor works at its URL. Frictionless reads
a Parquet resource from one file only (its multipart loader joins bytes, which suits CSV, not
Parquet), so the descriptor served names one resource per part, each with the version's schema.
A geometry column is stored as WKB in GeoParquet, which a Table Schema ``geojson`` field cannot
hold (nor can ``geopoint``): in the Parquet package it is described as what the file holds (``any``, with the
GeoParquet metadata saying the encoding); the CSV package writes it as WKT text (``string``),
as the CSV export does.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

from catalogue.hub import Hub
from catalogue.meta.models import Version
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.exports import chunks_of, export_version
from catalogue.query.formats.files import FILE_CHUNK_BYTES
from catalogue.query.records import RecordsRequest
from catalogue.schema.table_schema import GEOMETRY_TYPES
from catalogue.store.keys import part_key


def _described_as_stored(schema: dict[str, Any], geometry_type: str, note: str) -> dict[str, Any]:
    """``schema`` with its geometry fields typed as the package's files hold them."""
    out = copy.deepcopy(schema)
    for field in out.get("fields", []):
        if field.get("type") in GEOMETRY_TYPES:
            field["type"] = geometry_type
            field.pop("format", None)
            field["description"] = (field.get("description", "") + " " + note).strip()
    return out


# Options describing how the *delivery* spelt values; the CSV package writes canonical values instead.
SOURCE_SPELLING = ("trueValues", "falseValues", "decimalChar", "groupChar", "bareNumber")


def _canonical(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` for values written canonically (ISO dates, true/false, plain numbers, empty for null)."""
    out = {k: v for k, v in schema.items() if k != "missingValues"}
    fields = []
    for field in schema.get("fields", []):
        field = {k: v for k, v in field.items() if k not in SOURCE_SPELLING}
        if field.get("type") != "string":  # a string's format (uri, email) says what it is, not how it was spelt
            field.pop("format", None)
        fields.append(field)
    out["fields"] = fields
    return out


def readable_descriptor(descriptor: dict[str, Any]) -> dict[str, Any]:
    """The committed descriptor with one Parquet resource per part, so Frictionless reads each part."""
    out = copy.deepcopy(descriptor)
    resources = []
    for resource in descriptor.get("resources", []):
        paths = resource.get("path")
        if resource.get("format") != "parquet" or not isinstance(paths, list):
            resources.append(resource)
            continue
        schema = _described_as_stored(resource.get("schema", {}), "any", "(WKB, as GeoParquet stores it.)")
        for number, path in enumerate(paths, start=1):
            part = {k: v for k, v in resource.items() if k not in ("path", "bytes", "schema")}
            part.update(name=resource["name"] if len(paths) == 1 else f"{resource['name']}-part-{number}",
                        path=path, schema=schema)
            resources.append(part)
    out["resources"] = resources
    return out


def part_file_key(dataset: str, version: Version, file_name: str) -> str | None:
    """The storage key of ``file_name`` (``<sha>.parquet``) when it is one of ``version``'s parts, else None."""
    wanted = f"parts/{file_name}"
    for part in version.parts:
        if part["path"] == wanted:
            return part_key(dataset, part["sha256"])
    return None


def write_parquet_package(hub: Hub, dataset: str, version: Version, descriptor: dict[str, Any]) -> Path:
    """A scratch zip holding ``datapackage.json`` (readable as above) and the stored parts (the caller deletes it)."""
    path = hub.storage.new_scratch_file(".zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # Parquet is compressed already
        archive.writestr("datapackage.json", json.dumps(readable_descriptor(descriptor), ensure_ascii=False, indent=2))
        for part in version.parts:
            with hub.storage.open_read(part_key(dataset, part["sha256"])) as source, \
                    archive.open(part["path"], "w", force_zip64=True) as target:
                while chunk := source.read(FILE_CHUNK_BYTES):
                    target.write(chunk)
    return path


def csv_descriptor(descriptor: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The descriptor of the CSV package: one ``data.csv`` resource written as the CSV export writes it."""
    out = {k: v for k, v in descriptor.items() if k not in ("resources", "urbandata")}
    source = descriptor["resources"][0]
    out["resources"] = [{
        "name": dataset, "profile": "tabular-data-resource", "path": f"{dataset}.csv", "format": "csv",
        "mediatype": "text/csv", "encoding": "utf-8",
        "schema": _canonical(_described_as_stored(source.get("schema", {}), "string", "(WKT text.)")),
    }]
    return out


def write_csv_package(hub: Hub, engine: QueryEngine, ref: VersionRef, descriptor: dict[str, Any]) -> Path:
    """A scratch zip holding a CSV-based ``datapackage.json`` and the version's rows as CSV (the caller deletes it)."""
    name = descriptor["name"]
    path = hub.storage.new_scratch_file(".zip")
    rows = export_version(hub, engine, ref, "csv", RecordsRequest(limit=None))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("datapackage.json", json.dumps(csv_descriptor(descriptor, name), ensure_ascii=False, indent=2))
        with archive.open(f"{name}.csv", "w", force_zip64=True) as target:
            for chunk in chunks_of(hub, rows):
                target.write(chunk)
    return path
