"""Frictionless Data Package descriptors for published versions."""

from __future__ import annotations

from typing import Any

from catalogue.meta.licenses import license_info
from catalogue.meta.models import Dataset, Version
from catalogue.redact import redact_url
from catalogue.settings import Settings


def build_descriptor(settings: Settings, dataset: Dataset, version: Version) -> dict[str, Any]:
    """The ``datapackage.json`` of one version: a multipart Parquet resource plus provenance.

    Part paths are relative to the descriptor, so the version directory can be
    copied anywhere and read by any Parquet engine.
    """
    lic = license_info(dataset.license)
    base = settings.public_url.rstrip("/") + settings.api_prefix
    return {
        "profile": "data-package",
        "name": dataset.name,
        "id": f"{base}/datasets/{dataset.name}/versions/{version.number}",
        "title": dataset.title,
        "description": dataset.description,
        "version": str(version.number),
        "created": version.created_at.isoformat(),
        "keywords": list(dataset.keywords),
        "licenses": [{"name": lic["short"], "path": lic["iri"], "title": lic["title"]}],
        "contributors": [{"title": dataset.publisher.title, "role": "publisher"}],
        "resources": [
            {
                "name": dataset.name,
                "profile": "tabular-data-resource",
                "path": [p["path"] for p in version.parts],
                "format": "parquet",
                "mediatype": "application/vnd.apache.parquet",
                "bytes": version.bytes,
                "schema": version.table_schema,
            }
        ],
        "urbandata": {
            "version": version.number,
            "rows": version.row_count,
            "bytes": version.bytes,
            "sha256": version.content_hash,
            "parts": list(version.parts),
            # the source URL without user info or secret query values (catalogue.redact)
            "provenance": {k: redact_url(v) if k == "source_url" and isinstance(v, str) else v
                           for k, v in version.provenance.items()},
            "changes": dict(version.changes),
        },
    }
