"""A site page replaced by a rebuild while it is being answered: the answer is one file, whole.

The builder renames a new file over a page (``os.replace``). The race is made deterministic here: the
page is looked up (as a request does), replaced, and only then is the answer sent. Starlette's own
StaticFiles sent the old file's Content-Length and ETag with the new file's bytes; the soak test saw the
connection break on a publisher page during a harvest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from api.site_files import SiteFiles

pytestmark = pytest.mark.anyio

OLD = b"<p>alt</p>" * 100
NEW = b"<p>neu, laenger</p>" * 120


def scope(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/page.html", "headers": headers or [],
            "asgi": {"version": "3.0", "spec_version": "2.3"}, "query_string": b""}


async def answer(response: Any, asked: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await response(asked, receive, send)
    start = sent[0]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def replace(page: Path, content: bytes) -> None:
    partial = page.with_suffix(".partial")
    partial.write_bytes(content)
    os.replace(partial, page)  # as the site builder writes every page


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "page.html").write_bytes(OLD)
    return tmp_path


async def test_a_page_replaced_after_its_lookup_is_sent_whole_with_its_own_length(site: Path) -> None:
    files = SiteFiles(directory=site, html=True, check_dir=False)
    looked_up = await files.get_response("page.html", scope())
    replace(site / "page.html", NEW)
    status, headers, body = await answer(looked_up, scope())
    assert status == 200 and body == NEW and headers["content-length"] == str(len(NEW))
    again = await files.get_response("page.html", scope())
    assert (await answer(again, scope()))[1]["etag"] == headers["etag"]  # the ETag is the new file's


async def test_a_range_and_a_head_of_a_replaced_page_describe_the_file_they_send(site: Path) -> None:
    files = SiteFiles(directory=site, html=True, check_dir=False)
    ranged = await files.get_response("page.html", scope(headers=[(b"range", b"bytes=10-19")]))
    head = await files.get_response("page.html", scope("HEAD"))
    replace(site / "page.html", NEW)
    status, headers, body = await answer(ranged, scope(headers=[(b"range", b"bytes=10-19")]))
    assert (status, body, headers["content-range"]) == (206, NEW[10:20], f"bytes 10-19/{len(NEW)}")
    status, headers, body = await answer(head, scope("HEAD"))
    assert (status, body, headers["content-length"]) == (200, b"", str(len(NEW)))


async def test_a_held_copy_is_still_answered_not_modified(site: Path) -> None:
    files = SiteFiles(directory=site, html=True, check_dir=False)
    _, headers, _ = await answer(await files.get_response("page.html", scope()), scope())
    held = scope(headers=[(b"if-none-match", headers["etag"].encode())])
    status, _, body = await answer(await files.get_response("page.html", held), held)
    assert (status, body) == (304, b"")
    replace(site / "page.html", NEW)  # a newer page: the held copy is stale
    status, _, body = await answer(await files.get_response("page.html", held), held)
    assert (status, body) == (200, NEW)
