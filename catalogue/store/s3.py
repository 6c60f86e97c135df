"""Object storage for parts, descriptors and reports through an S3-compatible API (AWS S3, SeaweedFS, MinIO).

Files are objects under ``s3://<bucket>/<prefix>/<key>``, written with pyarrow's
S3 filesystem and read by DuckDB through the httpfs extension, loaded from the
``duckdb-extension-httpfs`` wheel (never downloaded) with an S3 secret made from
the same settings. A PUT is atomic (an object is seen whole or not at all), so
publishing is one upload; a version becomes visible only when the database
transaction of ``catalogue/ingest/commit.py`` names its parts.

Credentials come only from the standard AWS environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``),
never from settings or definitions.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
from pyarrow import fs as pafs

from catalogue.duck import wheel_extension_path
from catalogue.errors import NotFound, StorageUnavailable, UrbandataError
from catalogue.schema.sql_text import literal
from catalogue.settings import Settings
from catalogue.store.storage import sweep_scratch_dir

T = TypeVar("T")
log = logging.getLogger(__name__)
# The filesystem of the storage opened last for each bucket: readers given only an engine URI (the part
# statistics of catalogue.query.pruning) read footers through it, with that storage's endpoint and credentials.
_by_bucket: dict[str, pafs.S3FileSystem] = {}


def object_filesystem(uri: str) -> tuple[pafs.FileSystem, str] | None:
    """(filesystem, path) to read an ``s3://`` engine URI of a storage opened in this process; else None."""
    if not uri.startswith("s3://"):
        return None
    path = uri[len("s3://"):]
    fs = _by_bucket.get(path.split("/", 1)[0])
    return (fs, path) if fs is not None else None


@cache
def httpfs_extension_path() -> str:
    """Path of the httpfs extension shipped in the duckdb-extension-httpfs wheel."""
    try:
        import duckdb_extension_httpfs
    except ImportError:
        raise UrbandataError(
            f"storage=s3 needs DuckDB's httpfs extension: pip install 'urbandata[s3]' "
            f"(duckdb-extension-httpfs=={duckdb.__version__})."
        ) from None
    return wheel_extension_path("httpfs", duckdb_extension_httpfs.__file__)


def _credentials() -> tuple[str, str, str | None]:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise UrbandataError(
            "storage=s3 needs credentials in the environment: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(and AWS_SESSION_TOKEN for temporary ones)."
        )
    return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None


READ_BUFFER = 1024 * 1024  # one ranged GET per MiB read through open_read


class _ObjectReader(io.RawIOBase):
    """A pyarrow input file as a Python raw file (iterable, usable by shutil and Starlette's StreamingResponse)."""

    def __init__(self, native: pa.NativeFile) -> None:
        self._native = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._native.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._native.seek(offset, whence))

    def tell(self) -> int:
        return int(self._native.tell())

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()


class S3Storage:
    """Files as objects in one bucket under one prefix; scratch files in the local data directory."""

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise UrbandataError("storage=s3 needs a bucket: set URBANDATA_S3_BUCKET.")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self.region = settings.s3_region
        self._key_id, self._secret, self._token = _credentials()
        endpoint = urlsplit(settings.s3_endpoint_url) if settings.s3_endpoint_url else None
        if endpoint is not None and (endpoint.scheme not in ("http", "https") or not endpoint.hostname
                                     or endpoint.username or endpoint.password):
            raise UrbandataError(
                "URBANDATA_S3_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:8333, without "
                "credentials (those go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)."
            )
        self.endpoint = endpoint.netloc if endpoint else None
        self.use_ssl = endpoint is None or endpoint.scheme == "https"
        self.fs = pafs.S3FileSystem(
            access_key=self._key_id, secret_key=self._secret, session_token=self._token, region=self.region,
            endpoint_override=self.endpoint, scheme="https" if self.use_ssl else "http",
            allow_bucket_creation=False, allow_bucket_deletion=False,
            # Parts of an upload are sent one after another: in the background, a large file read from disk
            # faster than it uploads queued whole in memory (a 256 MB push grew the server by 276 MB).
            background_writes=False,
        )
        self.scratch = settings.store_dir / ".scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._check_bucket()
        _by_bucket[self.bucket] = self.fs

    def _check_bucket(self) -> None:
        info = self._call(lambda: self.fs.get_file_info(self.bucket), "look up the bucket")
        if info.type != pafs.FileType.Directory:
            raise UrbandataError(
                f"The bucket {self.bucket!r} does not exist at the S3 endpoint; create it first "
                f"(s3.bucket.create in SeaweedFS's weed shell, mc mb for MinIO, aws s3 mb)."
            )

    def _call(self, work: Callable[[], T], what: str) -> T:
        try:
            return work()
        except FileNotFoundError:
            raise NotFound("No stored file under that name.") from None
        except OSError as exc:  # the detail names the bucket and key: logged, not shown
            log.warning("object store: could not %s: %s", what, exc)
            raise StorageUnavailable(
                f"The object store did not let the hub {what} (the server log has the detail). Check "
                "URBANDATA_S3_ENDPOINT_URL, the bucket and the AWS_* credentials."
            ) from None

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise NotFound("No stored file under that name.")
        return "/".join(([self.bucket, self.prefix] if self.prefix else [self.bucket]) + parts)

    def _key(self, path: str) -> str:
        return path[len(self._path("x")) - 1:]

    def new_scratch_file(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.scratch)
        os.close(fd)
        return Path(name)

    def publish_file(self, key: str, scratch: Path) -> None:
        # Always uploaded, even when the key exists: the fresh write time tells the collector
        # (remove_stale) that a writer is about to reference this content-addressed file.
        path = self._path(key)
        self._call(lambda: pafs.copy_files(str(scratch), path, destination_filesystem=self.fs), "upload a file")
        scratch.unlink()

    def write_bytes(self, key: str, data: bytes) -> None:
        def put() -> None:
            with self.fs.open_output_stream(self._path(key)) as out:
                out.write(data)
        self._call(put, "upload a file")

    def read_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            with self.fs.open_input_stream(self._path(key)) as source:
                return cast(bytes, source.read())
        return self._call(get, "read a file")

    def exists(self, key: str) -> bool:
        info = self._call(lambda: self.fs.get_file_info(self._path(key)), "look up a file")
        return bool(info.type == pafs.FileType.File)

    def engine_uri(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def local_path(self, key: str) -> Path | None:
        return None

    def open_read(self, key: str) -> BinaryIO:
        native = self._call(lambda: self.fs.open_input_file(self._path(key)), "read a file")
        return cast(BinaryIO, io.BufferedReader(_ObjectReader(native), buffer_size=READ_BUFFER))

    def engine_root(self) -> str:
        return f"s3://{self._path('x')[:-2]}"

    def prepare_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Load httpfs from its wheel and add a temporary S3 secret scoped to this bucket."""
        con.load_extension(httpfs_extension_path())
        options = [
            "TYPE S3", f"KEY_ID {literal(self._key_id)}", f"SECRET {literal(self._secret)}",
            f"REGION {literal(self.region)}", f"SCOPE {literal(f's3://{self.bucket}')}",
        ]
        if self._token:
            options.append(f"SESSION_TOKEN {literal(self._token)}")
        if self.endpoint:
            options += [f"ENDPOINT {literal(self.endpoint)}", "URL_STYLE 'path'"]
        options.append(f"USE_SSL {'true' if self.use_ssl else 'false'}")
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET urbandata_store ({', '.join(options)})")
        # Every object DuckDB reads is named by its content (parts, live files, whole-version files), so
        # its size and ETag never change: kept, they spare a HEAD request per file and query.
        con.execute("SET enable_http_metadata_cache = true")

    def size(self, key: str) -> int:
        info = self._call(lambda: self.fs.get_file_info(self._path(key)), "look up a file")
        if info.type != pafs.FileType.File:
            raise NotFound("No stored file under that name.")
        return int(info.size)

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self._path("x")[:-2]
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = self._call(lambda: self.fs.get_file_info(selector), "list files")
        for info in sorted(infos, key=lambda i: i.path):
            if info.type == pafs.FileType.File:
                yield self._key(info.path)

    def remove_stale(self, key: str, older_than: float) -> int:
        # An object store has no rename to set a file aside: the write time is checked right before the
        # delete, and publish_file re-uploads existing keys, so only a writer publishing in between the two
        # requests can lose its file.
        path = self._path(key)
        info = self._call(lambda: self.fs.get_file_info(path), "look up a file")
        if info.type != pafs.FileType.File or info.mtime is None or info.mtime.timestamp() >= older_than:
            return 0
        try:
            self._call(lambda: self.fs.delete_file(path), "delete a file")
        except NotFound:
            return 0
        return int(info.size)

    def sweep_scratch(self, older_than: float) -> list[tuple[str, int]]:
        return sweep_scratch_dir(self.scratch, older_than)
