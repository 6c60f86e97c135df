"""Metadata exporters (a plugin seam): a document *about* a published version.

The Data Package descriptor now; DCAT-AP.de, CKAN and schema.org later. They
register under the ``urbandata.metadata_exporters`` entry point. Not to be
confused with export formats (:mod:`catalogue.query.formats`), which write a
version's *rows* (csv, parquet, ...).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from catalogue.hub import Hub
from catalogue.meta.models import Dataset, Version


class MetadataExporter(Protocol):
    """Renders metadata of one dataset version (Data Package, DCAT-AP.de, ...)."""

    media_type: str

    def export(self, hub: Hub, dataset: Dataset, version: Version) -> bytes:
        """The document's bytes."""


class DataPackageExporter:
    """The version's stored ``datapackage.json``, exactly as committed."""

    media_type = "application/json"

    def export(self, hub: Hub, dataset: Dataset, version: Version) -> bytes:
        return hub.storage.read_bytes(version.descriptor_key)


def export_metadata(hub: Hub, name: str, dataset: Dataset, version: Version) -> tuple[bytes, str]:
    """Render with the exporter plugin ``name``: (bytes, media type)."""
    exporter = hub.registry.get("metadata_exporters", name)()
    return exporter.export(hub, dataset, version), exporter.media_type


def load_descriptor(hub: Hub, version: Version) -> dict[str, Any]:
    """A version's Data Package descriptor as a dict."""
    descriptor: dict[str, Any] = json.loads(hub.storage.read_bytes(version.descriptor_key))
    return descriptor
