"""schema.org ``Dataset`` JSON-LD for a dataset's page, as search engines' dataset search reads it.

Google's Dataset rich results want ``name`` and a ``description`` of 50 to 5,000 characters, and read
``license``, ``creator``, ``distribution`` (``DataDownload`` with ``contentUrl`` and
``encodingFormat``), ``temporalCoverage`` (an ISO 8601 interval, ``..`` for an open end),
``spatialCoverage`` (a ``Place`` with a ``GeoShape`` box "south west north east") and ``version``.
"""

from __future__ import annotations

from typing import Any

from catalogue.meta.downloads import served_formats
from catalogue.meta.licenses import license_info
from catalogue.meta.models import Dataset, Organization, Version

# Export format → its media type: the distributions listed (the page's own downloads).
ENCODINGS = {
    "csv": "text/csv",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "geojson": "application/geo+json",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
MAX_DESCRIPTION = 5000


def _organization(org: Organization) -> dict[str, Any]:
    found: dict[str, Any] = {"@type": "Organization", "name": org.title}
    if org.homepage:
        found["url"] = org.homepage
    if org.email:
        found["email"] = org.email
    return found


def _temporal(ds: Dataset) -> str | None:
    if ds.temporal_start is None and ds.temporal_end is None:
        return None
    start = ds.temporal_start.isoformat() if ds.temporal_start else ".."
    end = ds.temporal_end.isoformat() if ds.temporal_end else ".."
    return f"{start}/{end}"


def _spatial(ds: Dataset) -> dict[str, Any] | None:
    bbox = ds.spatial.get("bbox") if ds.spatial else None
    if not bbox:
        return None
    west, south, east, north = bbox
    return {"@type": "Place", "geo": {"@type": "GeoShape", "box": f"{south} {west} {north} {east}"}}


def schema_org_dataset(ds: Dataset, current: Version | None, *, api_url: str, page_url: str,
                       formats: list[str]) -> dict[str, Any]:
    """The schema.org ``Dataset`` of ``ds`` (its current version's downloads), ready for ``json.dumps``.

    ``api_url``: the absolute API base (``https://host/api/v1``); ``page_url``: the dataset page's URL.
    """
    description = ds.description or ds.title
    if len(description) < 50:  # below Google's minimum: say what the data is in more words
        description = f"{description} – {ds.title}, veröffentlicht von {ds.publisher.title}."
    found: dict[str, Any] = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": f"{api_url}/datasets/{ds.name}",
        "name": ds.title,
        "alternateName": ds.title_en or None,
        "description": description[:MAX_DESCRIPTION],
        "url": page_url,
        "identifier": f"{api_url}/datasets/{ds.name}",
        "keywords": list(ds.keywords),
        "license": license_info(ds.license)["url"],
        "isAccessibleForFree": True,
        "inLanguage": "de",
        "creator": _organization(ds.publisher),
        "publisher": _organization(ds.publisher),
        "temporalCoverage": _temporal(ds),
        "spatialCoverage": _spatial(ds),
    }
    if ds.contact:
        found["maintainer"] = {"@type": "Organization", "name": ds.contact.get("name") or ds.publisher.title,
                               **({"email": ds.contact["email"]} if ds.contact.get("email") else {})}
    if current is not None:
        found.update({
            "version": str(current.number),
            "dateModified": current.created_at.isoformat(),
            "datePublished": ds.created_at.isoformat(),
            "distribution": [
                {"@type": "DataDownload", "encodingFormat": ENCODINGS[fmt],
                 "contentUrl": f"{api_url}/datasets/{ds.name}/exports/{fmt}?version={current.number}"}
                for fmt in served_formats(formats, current.schema) if fmt in ENCODINGS
            ],
        })
    return {k: v for k, v in found.items() if v is not None}
