"""Every version's Data Package is usable where it is served, as one zip and as a CSV package:
checked with the real frictionless CLI against a running server and on the unzipped packages."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalogue.hub import Hub
from tests.api.live_server import threaded_server

FRICTIONLESS = str(Path(sys.executable).parent / "frictionless")
DEMO_DATASETS = ["car-parks", "city-districts", "egovernment-services", "groundwater-levels", "parking-occupancy",
                 "waste-bin-fill-levels"]


@pytest.fixture(scope="module")
def server(demo_hub: Hub) -> Iterator[str]:
    from api.app import create_app

    app = create_app(demo_hub.settings, demo_hub)
    with threaded_server(app) as (host, port):
        yield f"http://{host}:{port}/api/v1"


def validate(target: str, cwd: Path | None = None) -> dict[str, object]:
    """The frictionless CLI's JSON report on ``target`` (a URL or a file)."""
    done = subprocess.run([FRICTIONLESS, "validate", "--json", target], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    report: dict[str, object] = json.loads(done.stdout)
    return report


def rows_and_errors(report: dict[str, object]) -> tuple[bool, int, list[object]]:
    tasks = report["tasks"]
    assert isinstance(tasks, list)
    return (bool(report["valid"]), sum(t["stats"]["rows"] for t in tasks), [e for t in tasks for e in t["errors"]])


def current(server: str, name: str) -> tuple[int, int]:
    """(version number, rows) of ``name``'s current version."""
    found = httpx.get(f"{server}/datasets/{name}/versions").json()["results"][0]
    return found["number"], found["row_count"]


@pytest.mark.parametrize("name", DEMO_DATASETS)
def test_frictionless_validates_the_descriptor_at_its_url(server: str, name: str) -> None:
    number, rows = current(server, name)
    report = validate(f"{server}/datasets/{name}/versions/{number}/datapackage.json")
    assert rows_and_errors(report) == (True, rows, [])


def test_parts_are_served_beside_the_descriptor_immutable_with_range(server: str) -> None:
    number, _ = current(server, "car-parks")
    base = f"{server}/datasets/car-parks/versions/{number}"
    descriptor = httpx.get(f"{base}/datapackage.json").json()
    path = descriptor["resources"][0]["path"]
    assert path.startswith("parts/") and path.endswith(".parquet")
    whole = httpx.get(f"{base}/{path}")
    assert whole.status_code == 200
    assert whole.content[:4] == b"PAR1" and whole.content[-4:] == b"PAR1"
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert whole.headers["content-type"] == "application/vnd.apache.parquet"
    head = httpx.head(f"{base}/{path}")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(whole.content)))
    ranged = httpx.get(f"{base}/{path}", headers={"Range": "bytes=0-3"})
    assert (ranged.status_code, ranged.content) == (206, b"PAR1")
    assert ranged.headers["content-range"] == f"bytes 0-3/{len(whole.content)}"


def test_an_unknown_part_is_a_404_in_the_envelope(server: str) -> None:
    number, _ = current(server, "car-parks")
    missing = httpx.get(f"{server}/datasets/car-parks/versions/{number}/parts/{'0' * 64}.parquet")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not-found", "status": 404, "message":
                              f"Version {number} of dataset 'car-parks' has no part '{'0' * 64}.parquet'; its "
                              "datapackage.json lists the parts."}}


@pytest.mark.parametrize("kind", ["datapackage.zip", "datapackage-csv.zip"])
@pytest.mark.parametrize("name", ["car-parks", "waste-bin-fill-levels", "egovernment-services"])
def test_the_zipped_packages_validate_unzipped(server: str, tmp_path: Path, name: str, kind: str) -> None:
    number, rows = current(server, name)
    response = httpx.get(f"{server}/datasets/{name}/versions/{number}/{kind}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    suffix = "-csv" if kind == "datapackage-csv.zip" else ""
    assert response.headers["content-disposition"] == f'attachment; filename="{name}-v{number}{suffix}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
        names = set(archive.namelist())
    descriptor = json.loads((tmp_path / "datapackage.json").read_text())
    expected = {"datapackage.json", *(r["path"] for r in descriptor["resources"])}
    assert names == expected
    assert rows_and_errors(validate("datapackage.json", cwd=tmp_path)) == (True, rows, [])
