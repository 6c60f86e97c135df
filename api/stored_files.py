"""Stored files sent as they are: local ones by Starlette's FileResponse, objects in object storage by ranged reads.

Either way a client gets the same answer: ``Accept-Ranges: bytes``, ``Content-Length``, a single byte range
(``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) answered with 206 and ``Content-Range``, an ``If-Range`` that
does not match the ETag answered with the whole file, an unsatisfiable range with 416. Several ranges in
one request are answered with the whole file (RFC 9110 allows it). The object is read in chunks through
the storage seam (``open_read`` seeks, so a range costs a ranged GET, not the whole object).
"""

from __future__ import annotations

import re

from fastapi import Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from catalogue.hub import Hub
from catalogue.query.exports import stored_chunks

SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def stored_response(request: Request, hub: Hub, key: str, media_type: str, headers: dict[str, str]) -> Response:
    """The file under ``key`` with Range answered, wherever the storage keeps it."""
    local = hub.storage.local_path(key)
    if local is not None:
        return FileResponse(local, media_type=media_type, headers=headers)
    size = hub.storage.size(key)
    sent = {**headers, "Accept-Ranges": "bytes"}
    wanted = requested_range(request.headers.get("range"), request.headers.get("if-range"), headers.get("ETag"), size)
    if wanted is None:
        return StreamingResponse(stored_chunks(hub, key), media_type=media_type,
                                 headers={**sent, "Content-Length": str(size)})
    if wanted == (-1, -1):
        return Response(status_code=416, headers={**sent, "Content-Range": f"bytes */{size}"})
    start, end = wanted
    return StreamingResponse(stored_chunks(hub, key, start, end + 1), status_code=206, media_type=media_type,
                             headers={**sent, "Content-Range": f"bytes {start}-{end}/{size}",
                                      "Content-Length": str(end - start + 1)})


def requested_range(header: str | None, if_range: str | None, etag: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last) a request asks for; None for the whole file; (-1, -1) if unsatisfiable."""
    if not header or (if_range is not None and if_range != etag):
        return None
    match = SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None or match.group(0) == "bytes=-":
        return None  # several ranges or no valid syntax: the whole file
    first, last = match.groups()
    if not first:  # the last n bytes
        n = int(last)
        return (-1, -1) if n == 0 or size == 0 else (max(size - n, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return (-1, -1)
    return start, end
