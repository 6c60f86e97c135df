"""Exports on a full disk (issue 12, defect 5), for real: the server runs in a process whose file-size limit
(RLIMIT_FSIZE) is smaller than any export file, so every write past it fails as on a full disk.

Before the fix the whole-version Parquet and XLSX exports answered 500 and left scratch files, and a
filtered Parquet export answered 400 "could not read the dataset's files".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.live_server import generated_catalogue, live_server

API = "/api/v1/datasets/generated"
ROWS = 20_000
FILE_LIMIT_BYTES = 64 * 1024  # the parts are written before the server starts; each export file is larger


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Parts of 5,000 rows: the whole-version Parquet export must combine four parts into a file.
    return generated_catalogue(tmp_path_factory.mktemp("disk-full"), ROWS, part_max_rows=5_000)


@pytest.fixture(scope="module")
def full_server(catalogue: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("disk-full-log") / "server.log"
    with live_server(catalogue, log, fsize=FILE_LIMIT_BYTES) as url:
        yield url


def leftovers(catalogue: dict[str, Any]) -> list[str]:
    """Files an export may leave behind: scratch files, combined exports, DuckDB's tmp_ files."""
    root = Path(catalogue["data_dir"])
    found = [p for p in root.rglob("*") if p.is_file()
             and (".scratch" in p.parts or "exports" in p.parts or p.name.startswith("tmp_"))]
    return sorted(str(p.relative_to(root)) for p in found)


EXPECTED = {
    "code": "insufficient-storage", "status": 507,
}


@pytest.mark.parametrize("path, fmt", [
    (f"{API}/exports/parquet", "parquet"),  # the whole version: four parts combined into one file
    (f"{API}/exports/parquet?where=id > 10", "parquet"),  # filtered: written by DuckDB's COPY
    (f"{API}/exports/xlsx", "xlsx"),  # a workbook: written by the spreadsheet writer
    (f"{API}/exports/xlsx?where=id > 10&select=id, label", "xlsx"),
])
def test_an_export_on_a_full_disk_is_507_and_leaves_no_file(
        full_server: str, catalogue: dict[str, Any], path: str, fmt: str) -> None:
    before = leftovers(catalogue)
    response = httpx.get(full_server + path, timeout=60)
    assert (response.status_code, response.headers["content-type"]) == (507, "application/json")
    assert response.json() == {"error": {
        **EXPECTED,
        "message": f"The server's disk is full, so the {fmt} export could not be written. Try again later, "
                   "or download csv, json or ndjson, which stream without writing a file.",
        "details": {"format": fmt}}}
    assert leftovers(catalogue) == before == []


def test_streamed_exports_and_queries_still_work_on_a_full_disk(full_server: str) -> None:
    csv = httpx.get(f"{full_server}{API}/exports/csv", timeout=60)
    assert csv.status_code == 200 and csv.text.count("\n") == ROWS + 1
    records = httpx.get(f"{full_server}{API}/records", params={"where": "id < 3", "select": "id"}, timeout=60)
    assert records.status_code == 200 and [r["id"] for r in records.json()["results"]] == [0, 1, 2]
    assert httpx.get(f"{full_server}/health", timeout=60).json() == {"status": "ok", "datasets": 1}
