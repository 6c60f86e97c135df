"""Round trip (issue 17 with issue 15): the hub harvests its own CKAN and DCAT endpoints into a second catalogue.

The demo city is served by the real server (a subprocess on a free loopback port whose public_url
is its own address, so resource URLs and dataset IRIs lead back to it; DCAT pages of 2 datasets
and CKAN pages of 2 packages, so paging is part of the trip). The CKAN portal harvester reads
``/api/3/action/package_search``, the DCAT harvester ``/catalog.ttl`` (and ``.jsonld``, ``.rdf``) with
its Hydra pages, each into a fresh catalogue. Then every public dataset of the demo is in the second catalogue under
the same name, with the same title, description, licence, keywords, themes and publisher, and the
same fields of the same types and the same rows in its current version (compared as multisets of
JSON rows). The second catalogue infers its Table Schemas from the data (harvesters.catalogue_schema).

What the trip maps, on purpose:
- By default both harvesters pick the CSV resource (distribution): a geometry arrives as its WKT
  text (the CSV export writes WKT), so the demo's geometry is compared as WKT.
- DCAT is also harvested preferring GeoJSON: a dataset with geometry arrives as features, whose one
  geometry is named ``geometry`` whatever the field was called here (``location`` of the gauges and
  parking occupancy); it is compared as GeoJSON under that name. A dataset without geometry
  (eGovernment services, waste bins) has no GeoJSON distribution (catalogue.meta.downloads), so it comes as CSV.
- The DCAT publisher is known by its foaf:name only: the second catalogue names it by that title.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset
from catalogue.query.engine import QueryEngine
from catalogue.settings import Settings
from catalogue.store.changes import geojson_wkt
from harvesters.catalogue_sources import CatalogueOutcome, CatalogueSpec, harvest_catalogue
from tests.api.live_server import live_server
from tests.conftest import LOOPBACK_ALLOWED

PAGE = 2  # datasets per DCAT page and packages per CKAN page: the demo's 6 take 3 pages


@pytest.fixture(scope="module")
def served(demo_hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo catalogue behind the real server; its base URL."""
    log = tmp_path_factory.mktemp("round-trip") / "server.log"
    with live_server({"data_dir": str(demo_hub.settings.data_dir), "dcat_page_size": PAGE}, log,
                     own_public_url=True) as url:
        yield url


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Hub]:
    """A fresh, empty catalogue that may harvest from loopback (allow-listed explicitly)."""
    hub = open_hub(Settings(data_dir=tmp_path / "second", harvest_allowed_hosts=LOOPBACK_ALLOWED))
    yield hub
    hub.close()


def public_datasets(hub: Hub) -> dict[str, Dataset]:
    """name → dataset of every public dataset with a current version (what the endpoints list)."""
    with hub.sessions() as session:
        found = session.scalars(select(Dataset).where(Dataset.private.is_(False),
                                                      Dataset.current_version_id.is_not(None))).all()
        for dataset in found:
            _ = dataset.publisher.title  # loaded while the session is open
        return {d.name: d for d in found}


def metadata(dataset: Dataset, *, publisher_name: bool) -> dict[str, Any]:
    """What a harvest carries over of a dataset's metadata."""
    described = {"title": dataset.title, "description": dataset.description.strip(), "license": dataset.license,
                 "keywords": sorted(dataset.keywords or []), "themes": sorted(dataset.themes or []),
                 "publisher_title": dataset.publisher.title}
    if publisher_name:
        described["publisher"] = dataset.publisher.name
    return described


@contextmanager
def rows_of(hub: Hub) -> Iterator[Callable[[str], tuple[list[dict[str, Any]], dict[str, str], set[str]]]]:
    """``rows(name)``: every row of the dataset's current version (geometry as GeoJSON objects), the
    type of each field, and the geometry fields."""
    engine = QueryEngine(hub)

    def rows(name: str) -> tuple[list[dict[str, Any]], dict[str, str], set[str]]:
        ref = engine.version(name)
        found = engine.records(ref, limit=ref.row_count + 1, offset=0)["results"]
        return (found, {f.name: f.type for f in ref.schema.fields},
                {f.name for f in ref.schema.fields if f.is_geometry})
    try:
        yield rows
    finally:
        engine.close()


def as_harvested(row: dict[str, Any], geometry: set[str], how: str, kind: str = "value") -> dict[str, Any]:
    """A demo row (or its field types: ``kind="type"``) as the trip delivers it: geometry as WKT text
    (CSV: a string field), or as the feature's ``geometry`` (GeoJSON: a geojson field)."""
    if kind == "type":
        row = {k: ("string" if how == "wkt" else "geojson") if k in geometry else v for k, v in row.items()}
    elif how == "wkt":
        return {k: geojson_wkt(v) if k in geometry and v is not None else v for k, v in row.items()}
    if how == "geojson" and geometry:
        (field,) = geometry  # a GeoJSON feature has one geometry
        return {("geometry" if k == field else k): v for k, v in row.items()}
    return row


def multiset(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as sorted JSON texts: equal when the same rows are there, in any order."""
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)


def statuses(outcome: CatalogueOutcome) -> dict[str, str]:
    return {d.dataset: f"{d.status}: {d.message}" if d.status != "published" else d.status for d in outcome.datasets}


TRIPS = [
    # kind, path of the catalogue, catalogue options, geometry as, publisher name kept
    pytest.param("ckan", "", {"rows": PAGE}, "wkt", True, id="ckan-csv"),
    pytest.param("dcat", "/catalog.ttl", {}, "wkt", False, id="dcat-csv"),
    pytest.param("dcat", "/catalog.jsonld", {}, "wkt", False, id="dcat-jsonld-csv"),
    pytest.param("dcat", "/catalog.rdf", {}, "wkt", False, id="dcat-rdfxml-csv"),
    pytest.param("dcat", "/catalog.ttl", {"formats": ["geojson", "csv"]}, "geojson", False, id="dcat-geojson"),
]


@pytest.mark.parametrize(("kind", "path", "options", "geometry_as", "publisher_name"), TRIPS)
def test_the_hub_harvests_its_own_endpoint_into_a_second_catalogue(
        kind: str, path: str, options: dict[str, Any], geometry_as: str, publisher_name: bool, demo_hub: Hub,
        served: str, second: Hub) -> None:
    catalogue = CatalogueSpec(name="self", type=kind, url=served + path, options=options)
    demo = public_datasets(demo_hub)
    assert len(demo) >= 6, sorted(demo)  # the demo city (6 datasets today): the trip covers all of it

    outcome = harvest_catalogue(second, catalogue)

    assert (outcome.status, statuses(outcome)) == ("finished", {name: "published" for name in demo}), outcome.message
    harvested = public_datasets(second)
    assert sorted(harvested) == sorted(demo)
    with rows_of(demo_hub) as demo_rows, rows_of(second) as second_rows:
        for name, dataset in demo.items():
            assert metadata(harvested[name], publisher_name=publisher_name) == metadata(
                dataset, publisher_name=publisher_name), name
            rows, types, geometry = demo_rows(name)
            again, types_again, _ = second_rows(name)
            assert types_again == as_harvested(types, geometry, geometry_as, kind="type"), name
            assert len(again) == len(rows) > 0, name
            assert multiset(again) == multiset([as_harvested(r, geometry, geometry_as) for r in rows]), name

    rerun = harvest_catalogue(second, catalogue)  # nothing changed at the source: nothing fetched, no version

    assert {d.dataset: d.status for d in rerun.datasets} == {name: "skipped" for name in demo}, rerun.message
    assert {n: d.current_version_id for n, d in public_datasets(second).items()} == {
        n: d.current_version_id for n, d in harvested.items()}
