"""The built site's files, served so that a rebuild replacing one never breaks an answer.

The site builder replaces a page by renaming a new file over it (``os.replace``). Starlette's
``StaticFiles`` stats the path, then opens it again to send it: a page replaced in between was sent
with the old file's length, date and ETag but the new file's bytes, and where the lengths differed
the connection broke mid-answer (the soak test caught it on a publisher page during a harvest).
Here the file is opened first (in a worker thread, as StaticFiles stats it) and the headers and the
body both come from that one open file: a reader gets the old page or the new one, whole.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import IO

import anyio
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse
from starlette.types import Receive, Scope, Send


class PinnedFileResponse(FileResponse):
    """A file answer whose Content-Length, Last-Modified, ETag and bytes all come from one open file."""

    def __init__(self, path: str | os.PathLike[str], status_code: int,
                 not_modified: Callable[[Headers, Headers], bool]) -> None:
        super().__init__(path, status_code=status_code)  # the stat headers follow when the file is open
        self._not_modified = not_modified
        self._file: IO[bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            file = await anyio.to_thread.run_sync(open, self.path, "rb")
        except FileNotFoundError:  # removed since it was looked up (a dataset withdrawn by a rebuild)
            raise StarletteHTTPException(404) from None
        with file:
            self.stat_result = os.fstat(file.fileno())
            self.set_stat_headers(self.stat_result)
            if self._not_modified(self.headers, Headers(scope=scope)):
                await NotModifiedResponse(self.headers)(scope, receive, send)
                return
            self._file = file
            await super().__call__(scope, receive, send)

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        assert self._file is not None
        self._file.seek(0)
        yield anyio.wrap_file(self._file)  # closed by __call__, after the last range is sent


class SiteFiles(StaticFiles):
    """The built site; a missing page raises 404 so the error handler picks the page's language.

    Hidden files (a path part starting with a dot, like the builder's ``.manifest.json``) are
    the builder's bookkeeping, not pages: 404. Each page is sent pinned (``PinnedFileResponse``).
    """

    async def get_response(self, path: str, scope: Scope) -> Response:
        if any(part.startswith(".") and part not in (".", "..") for part in path.replace("\\", "/").split("/")):
            raise StarletteHTTPException(404)
        response = await super().get_response(path, scope)
        if response.status_code == 404:
            raise StarletteHTTPException(404)
        return response

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        return PinnedFileResponse(full_path, status_code, self.is_not_modified)
