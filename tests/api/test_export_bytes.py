"""A strong ETag means identical bytes: every export, downloaded twice, is byte for byte the same."""

from __future__ import annotations

import io
import time
import zipfile

import httpx
import pytest

pytestmark = pytest.mark.anyio

API = "/api/v1"
QUERIES = [
    {},  # the whole version
    {"where": "free > 100", "order_by": "lot_id, timestamp", "select": "lot_id, timestamp, free, location"},
    {"select": "lot_id, count(*) as n", "group_by": "lot_id", "order_by": "lot_id"},
]


FORMATS = ["csv", "json", "ndjson", "geojson", "parquet", "xlsx"]


async def test_one_etag_one_body(api: httpx.AsyncClient) -> None:
    """Every format and query shape, downloaded twice a second apart (one pause for all of them)."""
    url = f"{API}/datasets/parking-occupancy/exports"
    cases = [(fmt, query) for fmt in FORMATS for query in QUERIES if not (fmt == "geojson" and "group_by" in query)]
    firsts = [await api.get(f"{url}/{fmt}", params=query) for fmt, query in cases]
    # A workbook stamped with the clock (docProps/core.xml keeps whole seconds) would differ after this.
    time.sleep(1.05)
    for (fmt, query), first in zip(cases, firsts):
        second = await api.get(f"{url}/{fmt}", params=query)
        assert (first.status_code, second.status_code) == (200, 200), (fmt, query, first.text)
        assert first.headers["etag"] == second.headers["etag"] and not first.headers["etag"].startswith("W/")
        assert first.content == second.content, (fmt, query)


async def test_the_workbook_carries_no_download_time(api: httpx.AsyncClient) -> None:
    body = (await api.get(f"{API}/datasets/car-parks/exports/xlsx")).content
    with zipfile.ZipFile(io.BytesIO(body)) as book:
        core = book.read("docProps/core.xml").decode()
        stamps = {info.date_time for info in book.infolist()}
    assert '<dcterms:created xsi:type="dcterms:W3CDTF">2000-01-01T00:00:00Z</dcterms:created>' in core
    assert '<dcterms:modified xsi:type="dcterms:W3CDTF">2000-01-01T00:00:00Z</dcterms:modified>' in core
    assert len(stamps) == 1 and time.localtime().tm_year not in {s[0] for s in stamps}
