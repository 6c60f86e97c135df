"""CKAN's Action API, read with the real ckanapi client (RemoteCKAN) from the real server in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
import requests
from sqlalchemy import select, update
from ckanapi import CKANAPIError, NotFound, RemoteCKAN, SearchQueryError, ValidationError

from api.app import create_app
from api.feed_server import FeedServer
from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.models import Dataset
from catalogue.meta.tokens import create_token
from catalogue.settings import Settings
from harvesters.catalogue_sources import CatalogueSpec, harvest_catalogue
from harvesters.runner import harvest_source, list_sources
from tests.api.live_server import live_server, threaded_server
from tests.conftest import DEMO

# egovernment-services is made private (tests below): listed only to a read-private token of its publisher.
PRIVATE = "egovernment-services"
DEMO_NAMES = ["car-parks", "city-districts", "groundwater-levels", "parking-occupancy", "waste-bin-fill-levels"]


def harvested_demo(root: Path, private: tuple[str, ...] = ()) -> Path:
    """The demo catalogue harvested over HTTP under ``root``, the ``private`` datasets made private; its data
    directory."""
    shutil.copytree(DEMO / "feeds", root / "feeds-root" / "feeds")
    with FeedServer(root / "feeds-root") as server:
        hub = open_hub(Settings(data_dir=root / "var", feed_base_url=server.url))
        try:
            sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
            for name in list_sources(hub):
                assert harvest_source(hub, name).status == "published"
            with hub.sessions.begin() as session:
                session.execute(update(Dataset).where(Dataset.name.in_(private)).values(private=True))
        finally:
            hub.close()
    return root / "var"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harvested demo city (no site built: these routes need none), one dataset private."""
    return harvested_demo(tmp_path_factory.mktemp("ckan"), private=(PRIVATE,))


@pytest.fixture(scope="module")
def served(data_dir: Path) -> Iterator[str]:
    """The catalogue served by the real server in a subprocess."""
    root = data_dir.parent
    with live_server({"data_dir": str(data_dir), "public_url": "http://hub.example"}, root / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def tokens(data_dir: Path) -> dict[str, str]:
    """read-private tokens of the private dataset's publisher and of another one."""
    hub = open_hub(Settings(data_dir=data_dir))
    try:
        return {publisher: create_token(hub, publisher, "ckan tests", ["read-private"])[0]
                for publisher in ("stadtverwaltung", "stadtwerke")}
    finally:
        hub.close()


@pytest.fixture(scope="module")
def ckan(served: str) -> Iterator[RemoteCKAN]:
    with RemoteCKAN(served, user_agent="urbandata-tests") as remote:
        yield remote
def test_status_and_package_list(ckan: RemoteCKAN) -> None:
    assert ckan.action.status_show() == {
        "ckan_version": "2.10.4", "site_url": "http://hub.example", "site_title": "urbandata",
        "site_description": "Validated, versioned open data of the city and its companies.", "locale_default": "de",
        "extensions": ["datastore"], "api_version": 3}
    assert ckan.action.package_list() == DEMO_NAMES
    assert ckan.action.package_list(limit=2, offset=1) == DEMO_NAMES[1:3]


def test_package_show_maps_dataset_publisher_themes_and_distributions(ckan: RemoteCKAN) -> None:
    package = ckan.action.package_show(id="car-parks")
    resources = package.pop("resources")
    organization = package.pop("organization")
    for moment in ("metadata_created", "metadata_modified"):
        assert package.pop(moment).startswith("20")
    extras = {e["key"]: e["value"] for e in package.pop("extras")}
    assert package == {
        "id": "car-parks", "name": "car-parks", "title": "Parkhäuser", "notes": package["notes"], "type": "dataset",
        "state": "active", "private": False, "isopen": True,
        "license_id": "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
        "license_title": "Datenlizenz Deutschland – Namensnennung – Version 2.0",
        "license_url": "https://www.govdata.de/dl-de/by-2-0",
        "author": "Stadtwerke Musterstadt GmbH", "author_email": "opendata@stadtwerke-musterstadt.example",
        "maintainer": "Team Open Data Stadtwerke", "maintainer_email": "opendata@stadtwerke-musterstadt.example",
        "url": "http://hub.example/datasets/car-parks.html", "version": "1", "owner_org": "stadtwerke",
        "tags": [{"name": t, "display_name": t, "id": t, "state": "active", "vocabulary_id": None}
                 for t in ["Parken", "Parkhaus", "Verkehr", "Stellplätze", "Parkgebühren"]],
        "num_tags": 5,
        "groups": [{"id": "tran", "name": "tran", "title": "Verkehr", "display_name": "Verkehr",
                    "description": "Transport", "image_display_url": "", "image_url": "", "is_organization": False,
                    "type": "group", "state": "active", "approval_status": "approved",
                    "url": "http://publications.europa.eu/resource/authority/data-theme/TRAN"}],
        "num_resources": 6, "relationships_as_object": [], "relationships_as_subject": [],
    }
    assert package["notes"].startswith("Standorte und Stammdaten der Parkhäuser")
    assert (organization["name"], organization["title"], organization["is_organization"]) == (
        "stadtwerke", "Stadtwerke Musterstadt GmbH", True)
    assert json.loads(extras.pop("spatial")) == {"type": "Polygon", "coordinates": [
        [[9.9, 53.5], [10.1, 53.5], [10.1, 53.62], [9.9, 53.62], [9.9, 53.5]]]}
    assert extras == {
        "title_en": "Car parks", "notes_en": extras["notes_en"], "contact_name": "Team Open Data Stadtwerke",
        "frequency": "http://publications.europa.eu/resource/authority/frequency/IRREG",
        "temporal_start": "2026-11-01",
        "theme": '["http://publications.europa.eu/resource/authority/data-theme/TRAN"]'}
    assert [(r["id"], r["format"], r["datastore_active"], r["position"], r["url"]) for r in resources] == [
        (f"car-parks@1{'' if f == 'csv' else '.' + f}", label, f == "csv", i,
         f"http://hub.example/api/v1/datasets/car-parks/exports/{f}?version=1")
        for i, (f, label) in enumerate([("csv", "CSV"), ("json", "JSON"), ("ndjson", "NDJSON"),
                                        ("geojson", "GeoJSON"), ("parquet", "Parquet"), ("xlsx", "XLSX")])]
    assert ckan.action.resource_show(id="car-parks@1.parquet") == resources[4]
    # A dataset without geometry has no GeoJSON download.
    formats = [r["format"] for r in ckan.action.package_show(id="waste-bin-fill-levels")["resources"]]
    assert formats == ["CSV", "JSON", "NDJSON", "Parquet", "XLSX"]


def test_package_search_q_fq_sort_paging_and_facets(ckan: RemoteCKAN) -> None:
    found = ckan.call_action("package_search", {
        "q": "Parken", "sort": "name asc", "facet.field": ["tags", "organization", "groups", "license_id"],
        "facet.limit": 3})
    assert [p["name"] for p in found["results"]] == ["car-parks", "parking-occupancy"]
    assert found["count"] == 2
    assert found["facets"] == {
        "tags": {"Parken": 2, "Parkhaus": 2, "Stellplätze": 2}, "organization": {"stadtwerke": 2},
        "groups": {"tran": 2}, "license_id": {"http://dcat-ap.de/def/licenses/dl-by-de/2.0": 2}}
    assert found["search_facets"]["organization"] == {"title": "organization", "items": [
        {"name": "stadtwerke", "display_name": "Stadtwerke Musterstadt GmbH", "count": 2}]}
    assert found["search_facets"]["groups"]["items"] == [{"name": "tran", "display_name": "Verkehr", "count": 2}]

    def names(**params: object) -> list[str]:
        return [p["name"] for p in ckan.call_action("package_search", params)["results"]]

    assert names(fq="groups:envi", sort="name desc") == ["waste-bin-fill-levels", "groundwater-levels"]
    assert names(fq="organization:stadtwerke AND -name:car-parks") == ["parking-occupancy"]
    assert names(fq='tags:"Stellplätze"', sort="name asc") == ["car-parks", "parking-occupancy"]
    assert names(q="*:*", sort="name asc", rows=2, start=2) == DEMO_NAMES[2:4]
    assert names(q="*:*", sort="name asc", include_private=True) == DEMO_NAMES  # no token: public ones only
    assert names(ext_bbox="9.95,53.55,10.0,53.6", sort="name asc") == DEMO_NAMES
    # ckanext-harvest's incremental listing: a range on metadata_modified.
    assert names(fq="metadata_modified:[2000-01-01T00:00:00Z TO *]", sort="name asc") == DEMO_NAMES
    assert names(fq="metadata_modified:[* TO 2000-01-01T00:00:00Z]") == []
    modified = ckan.action.package_show(id="car-parks")["metadata_modified"]
    assert names(fq=f"metadata_created:[* TO *] AND metadata_modified:[{modified} TO {modified}]") == ["car-parks"]
    assert ckan.call_action("package_search", {"ext_bbox": "11,54,12,55"})["count"] == 0
    everything = ckan.call_action("package_search", {"rows": 1000, "facet.field": ["tags"], "facet.mincount": 2,
                                                     "facet.limit": -1})
    assert everything["count"] == 5 and len(everything["results"]) == 5
    assert everything["facets"]["tags"] == {"Parken": 2, "Parkhaus": 2, "Stellplätze": 2, "Verkehr": 2}


def test_package_search_refuses_what_it_cannot_answer(ckan: RemoteCKAN) -> None:
    with pytest.raises(SearchQueryError, match="res_format"):
        ckan.call_action("package_search", {"fq": "res_format:CSV"})
    with pytest.raises(SearchQueryError, match="ranges"):
        ckan.call_action("package_search", {"fq": "name:[a TO b]"})
    with pytest.raises(SearchQueryError, match="no ISO 8601 time"):
        ckan.call_action("package_search", {"fq": "metadata_modified:[yesterday TO *]"})
    with pytest.raises(SearchQueryError, match="cannot sort by 'views_recent desc'"):
        ckan.call_action("package_search", {"sort": "views_recent desc"})
    with pytest.raises(ValidationError) as caught:
        ckan.call_action("package_search", {"rows": 1001})
    assert caught.value.error_dict == {"__type": "Validation Error", "message": "rows must be between 0 and 1000; got 1001.",
                                       "rows": ["rows must be between 0 and 1000; got 1001."]}
    with pytest.raises(ValidationError, match="spelling"):
        ckan.call_action("package_search", {"spelling": "x"})
    with pytest.raises(ValidationError, match="facet.field"):
        ckan.call_action("package_search", {"facet.field": ["res_format"]})


def test_organizations_groups_tags_licences(ckan: RemoteCKAN) -> None:
    assert ckan.action.organization_list() == ["abfallwirtschaft", "stadtverwaltung", "stadtwerke", "wasserverband"]
    listed = ckan.action.organization_list(all_fields=True)
    assert [(o["name"], o["package_count"]) for o in listed] == [
        ("abfallwirtschaft", 1), ("stadtverwaltung", 1), ("stadtwerke", 2), ("wasserverband", 1)]
    shown = ckan.action.organization_show(id="stadtwerke", include_datasets=True)
    assert {k: shown[k] for k in ("name", "title", "package_count")} == {
        "name": "stadtwerke", "title": "Stadtwerke Musterstadt GmbH", "package_count": 2}
    assert [p["name"] for p in shown["packages"]] == ["car-parks", "parking-occupancy"]
    assert ckan.action.group_list() == ["envi", "regi", "tran"]  # gove: only the private dataset has it
    assert [(g["name"], g["title"], g["package_count"]) for g in ckan.action.group_list(all_fields=True)] == [
        ("envi", "Umwelt", 2), ("regi", "Regionen und Städte", 1), ("tran", "Verkehr", 2)]
    group = ckan.action.group_show(id="envi", include_datasets=True)
    assert [p["name"] for p in group["packages"]] == ["groundwater-levels", "waste-bin-fill-levels"] or \
        sorted(p["name"] for p in group["packages"]) == ["groundwater-levels", "waste-bin-fill-levels"]
    assert ckan.action.tag_list(query="park") == ["Parken", "Parkgebühren", "Parkhaus"]
    assert len(ckan.action.tag_list()) == 20 and "Onlinezugangsgesetz" not in ckan.action.tag_list()
    assert [lic["id"] for lic in ckan.action.license_list()] == [
        "http://dcat-ap.de/def/licenses/dl-by-de/2.0", "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
        "http://dcat-ap.de/def/licenses/cc-by/4.0", "http://dcat-ap.de/def/licenses/cc-zero"]
    with pytest.raises(NotFound):
        ckan.action.package_show(id="no-such-dataset")
    with pytest.raises(NotFound):
        ckan.action.organization_show(id="no-such-publisher")
    with pytest.raises(NotFound):
        ckan.action.group_show(id="xyz")
    with pytest.raises(NotFound):
        ckan.action.resource_show(id="car-parks@9")
    with pytest.raises(CKANAPIError, match="Action name not known: package_patch"):
        ckan.action.package_patch(id="car-parks")


def test_datastore_search(ckan: RemoteCKAN) -> None:
    found = ckan.action.datastore_search(resource_id="car-parks@1", filters={"open_24h": True},
                                         fields=["lot_id", "capacity"], sort="capacity desc", limit=2)
    assert found == {
        "resource_id": "car-parks@1", "fields": [{"id": "lot_id", "type": "text"}, {"id": "capacity", "type": "int"}],
        "records": [{"lot_id": "P03", "capacity": 650}, {"lot_id": "P06", "capacity": 500}],
        "records_format": "objects", "limit": 2, "offset": 0, "total": 4, "total_was_estimated": False,
        "_links": {"start": "/api/3/action/datastore_search?resource_id=car-parks@1",
                   "next": "/api/3/action/datastore_search?resource_id=car-parks@1&offset=2"}}
    listed = ckan.action.datastore_search(resource_id="car-parks", filters={"lot_id": ["P01", "P02"]},
                                          fields=["lot_id", "open_24h"], sort="lot_id", records_format="lists",
                                          include_total=False)
    assert (listed["records"], "total" in listed) == ([["P01", True], ["P02", True]], False)
    text = ckan.action.datastore_search(resource_id="car-parks@1", q="Schloß", fields="lot_id,name",
                                        records_format="csv")
    assert text["records"] == "P02,Tiefgarage Schloßplatz\n"
    page = ckan.action.datastore_search(resource_id="parking-occupancy@1", q={"lot_id": "P04"}, limit=3, offset=3,
                                        sort="timestamp asc", fields=["lot_id", "timestamp", "free"])
    assert [r["lot_id"] for r in page["records"]] == ["P04"] * 3 and page["total"] == 96
    with pytest.raises(ValidationError, match="there is no field 'nope'"):
        ckan.action.datastore_search(resource_id="car-parks@1", filters={"nope": 1})
    with pytest.raises(NotFound):
        ckan.action.datastore_search(resource_id="car-parks@7")
    with pytest.raises(NotFound):
        ckan.action.datastore_search(resource_id="missing-dataset")


def test_datastore_info_and_sql(ckan: RemoteCKAN) -> None:
    info = ckan.action.datastore_info(id="city-districts@1")
    assert info["meta"] == {"id": "city-districts@1", "count": info["meta"]["count"], "table_type": "BASE TABLE",
                            "aliases": []}
    assert [(f["id"], f["type"]) for f in info["fields"]] == [
        ("district_id", "text"), ("name", "text"), ("population", "int"), ("area_km2", "numeric"),
        ("geometry", "json")]
    answer = ckan.action.datastore_search_sql(
        sql='SELECT lot_id, capacity FROM "car-parks@1" WHERE capacity > 400 ORDER BY lot_id')
    assert answer == {"sql": 'SELECT lot_id, capacity FROM "car-parks@1" WHERE capacity > 400 ORDER BY lot_id',
                      "fields": [{"id": "lot_id", "type": "VARCHAR"}, {"id": "capacity", "type": "BIGINT"}],
                      "records": [{"lot_id": "P01", "capacity": 420}, {"lot_id": "P03", "capacity": 650},
                                  {"lot_id": "P06", "capacity": 500}],
                      "records_truncated": False}
    # The same sandbox as /api/v1/sql: anything but one SELECT is refused.
    with pytest.raises(ValidationError):
        ckan.action.datastore_search_sql(sql='DELETE FROM "car-parks@1"')


def test_get_requests_and_the_error_envelope(served: str) -> None:
    answer = httpx.get(f"{served}/api/3/action/package_search",
                       params={"fq": "tags:Parken", "facet.field": '["tags"]', "rows": 0})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["help"], body["success"], body["result"]["count"], body["result"]["results"]) == (
        "http://hub.example/api/3/action/help_show?name=package_search", True, 2, [])
    missing = httpx.get(f"{served}/api/3/action/package_show", params={"id": "nope"})
    assert (missing.status_code, missing.json()) == (404, {
        "help": "http://hub.example/api/3/action/help_show?name=package_show", "success": False,
        "error": {"__type": "Not Found Error",
                  "message": "Not found: There is no dataset 'nope'; package_list lists them."}})
    bad = httpx.get(f"{served}/api/3/action/package_search", params={"rows": "many"})
    assert (bad.status_code, bad.json()["error"]) == (409, {
        "__type": "Validation Error", "message": "rows takes a whole number; got 'many'.",
        "rows": ["rows takes a whole number; got 'many'."]})
    unknown = httpx.post(f"{served}/api/3/action/nope", json={})
    assert (unknown.status_code, unknown.json()["error"]) == (
        400, {"__type": "Bad Request", "message": "Bad request - Action name not known: nope"})
    not_json = httpx.post(f"{served}/api/3/action/package_list", content=b"{", headers={"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]["__type"]) == (409, "Validation Error")


def test_datastore_dump_formats(served: str) -> None:
    rows = {}
    for fmt in ("csv", "tsv", "json", "xml"):
        answer = httpx.get(f"{served}/datastore/dump/car-parks@1", params={"format": fmt})
        assert answer.status_code == 200, answer.text
        rows[fmt] = answer
    table = list(csv.DictReader(io.StringIO(rows["csv"].text)))
    assert table == list(csv.DictReader(io.StringIO(rows["tsv"].text), delimiter="\t"))
    assert [r["lot_id"] for r in table] == ["P01", "P02", "P03", "P04", "P05", "P06"]
    assert (table[0]["open_24h"], table[0]["geometry"]) == ("true", "POINT (9.99712 53.55324)")
    records = rows["json"].json()
    assert [r["lot_id"] for r in records] == [r["lot_id"] for r in table]
    tree = ElementTree.fromstring(rows["xml"].content)
    assert [(row.get("_id"), row.findtext("lot_id"), row.findtext("capacity")) for row in tree] == [
        (str(i + 1), r["lot_id"], r["capacity"]) for i, r in enumerate(table)]
    assert rows["tsv"].headers["content-type"] == "text/tab-separated-values; charset=utf-8"
    refused = httpx.get(f"{served}/datastore/dump/car-parks@1", params={"format": "pdf"})
    assert (refused.status_code, refused.json()["error"]["__type"]) == (409, "Validation Error")
    unknown = httpx.get(f"{served}/datastore/dump/car-parks@1", params={"bom": "true"})
    assert (unknown.status_code, unknown.json()["error"]["bom"]) == (
        409, ["The dump takes no parameter 'bom'; it takes format."])
    missing = httpx.get(f"{served}/datastore/dump/car-parks@9")
    assert (missing.status_code, missing.json()["error"]["__type"]) == (404, "Not Found Error")


def with_token(served: str, token: str) -> RemoteCKAN:
    """ckanapi with a hub token: ckanapi sends its apikey bare, the hub takes Bearer tokens, so a session carries it."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return RemoteCKAN(served, session=session)


def test_private_datasets_only_with_a_read_private_token_of_their_publisher(
        ckan: RemoteCKAN, served: str, tokens: dict[str, str]) -> None:
    for remote in (ckan, with_token(served, tokens["stadtwerke"])):
        with pytest.raises(NotFound):
            remote.action.package_show(id=PRIVATE)
        with pytest.raises(NotFound):
            remote.action.datastore_search(resource_id=f"{PRIVATE}@1")
        with pytest.raises(NotFound):
            remote.action.resource_show(id=f"{PRIVATE}@1")
        assert remote.call_action("package_search", {"include_private": True, "rows": 0})["count"] == 5
        with pytest.raises(ValidationError):  # the SQL sandbox knows no such view
            remote.action.datastore_search_sql(sql=f'SELECT count(*) FROM "{PRIVATE}"')
    assert httpx.get(f"{served}/datastore/dump/{PRIVATE}@1").status_code == 404
    owner = with_token(served, tokens["stadtverwaltung"])
    package = owner.action.package_show(id=PRIVATE)
    assert (package["name"], package["private"], package["num_resources"]) == (PRIVATE, True, 5)
    assert owner.call_action("package_search", {"rows": 0})["count"] == 5
    listed = owner.call_action("package_search", {"include_private": True, "sort": "name asc", "rows": 10})
    assert [p["name"] for p in listed["results"]] == sorted([*DEMO_NAMES, PRIVATE])
    rows = owner.action.datastore_search(resource_id=f"{PRIVATE}@1", limit=1, fields=["service_id"])
    assert rows["total"] > 0 and list(rows["records"][0]) == ["service_id"]
    counted = owner.action.datastore_search_sql(sql=f'SELECT count(*) AS n FROM "{PRIVATE}@1"')
    assert counted["records"] == [{"n": rows["total"]}]
    dump = httpx.get(f"{served}/datastore/dump/{PRIVATE}@1", headers={"Authorization": f"Bearer {tokens['stadtverwaltung']}"})
    assert dump.status_code == 200 and dump.text.count("\n") == rows["total"] + 1
    # A wrong token is refused before any route runs (api/auth.py, app-wide): the hub's envelope, not CKAN's.
    wrong = httpx.get(f"{served}/api/3/action/package_list", headers={"Authorization": "Bearer udt_nonsense"})
    assert (wrong.status_code, wrong.json()["error"]["status"]) == (401, 401)


def test_round_trip_the_hub_harvests_its_own_ckan_api(data_dir: Path, tmp_path: Path) -> None:
    """A second catalogue harvested from this one's CKAN API holds the same public datasets and rows."""
    settings = Settings(data_dir=data_dir)
    source = open_hub(settings)
    app = create_app(settings, source)
    target = open_hub(Settings(data_dir=tmp_path / "second", harvest_allowed_hosts=["127.0.0.1"]))  # a catalogue of its own
    try:
        with threaded_server(app) as (host, port):
            # The resources' URLs start from the public URL, known once the server has its port.
            settings.public_url = f"http://{host}:{port}"
            outcome = harvest_catalogue(target, CatalogueSpec(name="musterstadt", type="ckan", url=settings.public_url,
                                                              options={"rows": 2}))
        assert (outcome.status, {d.dataset: d.status for d in outcome.datasets}) == (
            "finished", {name: "published" for name in DEMO_NAMES})
        assert rows_by_dataset(target) == {n: r for n, r in rows_by_dataset(source).items() if n != PRIVATE}
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
        target.close()
        source.close()


def rows_by_dataset(hub: Hub) -> dict[str, int]:
    with hub.sessions() as session:
        return {d.name: d.current_version.row_count for d in session.scalars(select(Dataset)) if d.current_version}
