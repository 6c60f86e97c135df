"""schema.org Dataset JSON-LD: what the kernel makes of a demo dataset, and the dataset page embedding it."""

from __future__ import annotations

import json
import re

from sqlalchemy.orm import Session

from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from catalogue.meta.schema_org import schema_org_dataset

API = "https://daten.example/api/v1"


def test_the_dataset_as_schema_org(demo_hub: Hub) -> None:
    with Session(demo_hub.engine) as session:
        ds = get_dataset(session, "car-parks")
        current = ds.current_version
        assert current is not None
        found = schema_org_dataset(ds, current, api_url=API, page_url="https://daten.example/datasets/car-parks.html",
                                   formats=["csv", "json", "ndjson", "geojson", "parquet", "xlsx"])
        number, published, modified = current.number, ds.created_at.isoformat(), current.created_at.isoformat()
        description = ds.description
    stadtwerke = {"@type": "Organization", "name": "Stadtwerke Musterstadt GmbH",
                  "url": "https://www.stadtwerke-musterstadt.example/",
                  "email": "opendata@stadtwerke-musterstadt.example"}
    download = f"{API}/datasets/car-parks/exports"
    assert found == {
        "@context": "https://schema.org/", "@type": "Dataset", "@id": f"{API}/datasets/car-parks",
        "name": "Parkhäuser", "alternateName": "Car parks", "description": description,
        "url": "https://daten.example/datasets/car-parks.html", "identifier": f"{API}/datasets/car-parks",
        "keywords": ["Parken", "Parkhaus", "Verkehr", "Stellplätze", "Parkgebühren"],
        "license": "https://www.govdata.de/dl-de/by-2-0", "isAccessibleForFree": True, "inLanguage": "de",
        "creator": stadtwerke, "publisher": stadtwerke,
        "maintainer": {"@type": "Organization", "name": "Team Open Data Stadtwerke",
                       "email": "opendata@stadtwerke-musterstadt.example"},
        "temporalCoverage": "2026-11-01/..",
        "spatialCoverage": {"@type": "Place", "geo": {"@type": "GeoShape", "box": "53.5 9.9 53.62 10.1"}},
        "version": str(number), "datePublished": published, "dateModified": modified,
        "distribution": [
            {"@type": "DataDownload", "encodingFormat": media, "contentUrl": f"{download}/{fmt}?version={number}"}
            for fmt, media in (("csv", "text/csv"), ("json", "application/json"),
                               ("ndjson", "application/x-ndjson"), ("geojson", "application/geo+json"),
                               ("parquet", "application/vnd.apache.parquet"),
                               ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))],
    }
    assert 50 <= len(found["description"]) <= 5000  # Google's bounds for a Dataset description


def test_no_geojson_download_without_geometry(demo_hub: Hub) -> None:
    with Session(demo_hub.engine) as session:
        ds = get_dataset(session, "egovernment-services")
        found = schema_org_dataset(ds, ds.current_version, api_url=API, page_url="x", formats=["csv", "geojson"])
    assert [d["encodingFormat"] for d in found["distribution"]] == ["text/csv"]
    assert "spatialCoverage" not in found or found["spatialCoverage"]["@type"] == "Place"


def test_the_dataset_page_embeds_it(demo_hub: Hub) -> None:
    for page in ("datasets/car-parks.html", "en/datasets/car-parks.html"):
        html = (demo_hub.settings.site_dir / page).read_text(encoding="utf-8")
        blocks = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.DOTALL)
        assert len(blocks) == 1, page
        embedded = json.loads(blocks[0])
        assert (embedded["@type"], embedded["name"], embedded["license"]) == (
            "Dataset", "Parkhäuser", "https://www.govdata.de/dl-de/by-2-0")
        assert embedded["url"].endswith(page)
        assert embedded["distribution"][0]["contentUrl"].startswith("http")
