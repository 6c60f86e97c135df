"""Which export formats a version's downloads really serve: the one rule behind every list of downloads.

The export route refuses GeoJSON for a schema without a geometry field (400, the GeoJSON format's own
check calls :func:`serves`), so whatever advertises downloads — CKAN's resources, DCAT distributions,
schema.org ``distribution``, the site's download list and search index — filters the formats through
:func:`served_formats` with the schema of the version it links to, and never lists a download the
API refuses.
"""

from __future__ import annotations

from collections.abc import Iterable

from catalogue.schema.model import TableSchema

# Formats whose rows are features: they need a geometry field to put in each feature.
GEOMETRY_FORMATS = frozenset({"geojson"})


def serves(fmt: str, schema: TableSchema) -> bool:
    """Whether the export of a version with ``schema`` answers in ``fmt``."""
    return fmt not in GEOMETRY_FORMATS or bool(schema.geometry_fields)


def served_formats(formats: Iterable[str], schema: TableSchema) -> list[str]:
    """``formats`` (in their order) without those a version with ``schema`` is not exported in."""
    return [fmt for fmt in formats if serves(fmt, schema)]
