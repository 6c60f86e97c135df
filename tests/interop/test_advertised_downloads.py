"""Every catalogue of the hub advertises exactly the downloads its API serves (issue 17).

CKAN's package_show resources, the DCAT-AP.de distributions, schema.org's ``distribution`` and the
site's download list all follow catalogue.meta.downloads: for each demo dataset they list the same
formats of its current version (DCAT those with an EU file-type IRI), every listed URL answers 200, and GeoJSON is there exactly for the
datasets with a geometry field (and answers 400 for the others, so it must not be listed).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from rdflib import Graph, URIRef
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.meta.dcat import DCAT, DISTRIBUTIONS
from catalogue.meta.models import Dataset
from catalogue.meta.schema_org import schema_org_dataset
from catalogue.query.exports import format_names
from catalogue.sitegen.data_files import download_options

pytestmark = pytest.mark.anyio

GEOMETRY = {"car-parks", "city-districts", "groundwater-levels", "parking-occupancy"}
NO_GEOMETRY = {"egovernment-services", "waste-bin-fill-levels"}


def fmt_of(url: str) -> str:
    """The export format of an export URL (``.../exports/<fmt>?version=N``)."""
    return urlsplit(url).path.rsplit("/", 1)[-1]


def local(url: str) -> str:
    """An advertised absolute URL as a path of the in-process API."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def advertised(api: httpx.AsyncClient, hub: Hub, name: str) -> dict[str, list[str]]:
    """catalogue → the export URLs it lists for the current version of dataset ``name``."""
    package = (await api.get("/api/3/action/package_show", params={"id": name})).json()["result"]
    number = int(package["version"])
    graph = Graph().parse(data=(await api.get(f"/api/v1/datasets/{name}.ttl")).content, format="turtle")
    node = URIRef(f"{hub.settings.public_url.rstrip('/')}/api/v1/datasets/{name}")
    dcat = [str(graph.value(d, DCAT.downloadURL)) for d in graph.objects(node, DCAT.distribution)]
    formats = format_names(hub.registry)
    with hub.sessions() as session:
        ds = session.scalars(select(Dataset).where(Dataset.name == name)).one()
        current = ds.current_version
        assert current is not None and current.number == number
        org = schema_org_dataset(ds, current, api_url=hub.settings.public_url.rstrip("/") + "/api/v1",
                                 page_url="https://example.test/", formats=formats)
        site = [path for key, _, path in download_options(formats, name, number, current.schema)
                if "/exports/" in path and key != "csv-de"]
    return {"ckan": sorted(r["url"] for r in package["resources"]), "dcat": sorted(dcat),
            "schema.org": sorted(d["contentUrl"] for d in org["distribution"]),
            "site": sorted(f"/api/v1{p}" for p in site)}


async def test_every_catalogue_lists_the_same_downloads_and_each_answers(api: httpx.AsyncClient,
                                                                         demo_hub: Hub) -> None:
    for name in sorted(GEOMETRY | NO_GEOMETRY):
        found = await advertised(api, demo_hub, name)
        by_format = {which: sorted(fmt_of(u) for u in urls) for which, urls in found.items()}
        expected = [f for f in sorted(format_names(demo_hub.registry)) if f != "geojson" or name in GEOMETRY]
        # DCAT lists the formats with an EU file-type IRI (no NDJSON there); the others list all.
        assert by_format == {which: [f for f in expected if which != "dcat" or f in DISTRIBUTIONS]
                             for which in found}, name
        assert {which: sorted(local(u) for u in urls) for which, urls in found.items()} == {
            which: sorted(local(u) for u in found["ckan"] if which != "dcat" or fmt_of(u) in DISTRIBUTIONS)
            for which in found}, name
        for url in found["ckan"]:
            response = await api.get(local(url))
            assert response.status_code == 200, (url, response.text[:300])


async def test_the_geojson_export_a_catalogue_leaves_out_is_refused(api: httpx.AsyncClient) -> None:
    for name in sorted(NO_GEOMETRY):
        response = await api.get(f"/api/v1/datasets/{name}/exports/geojson")
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid-parameter"), name
