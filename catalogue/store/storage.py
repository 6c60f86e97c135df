"""Storage backends for Parquet parts, version descriptors and reports.

Keys are '/'-separated relative names (``datasets/<name>/parts/<sha>.parquet``).
Every write is atomic: a reader sees the whole file or none of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import duckdb

from catalogue.errors import NotFound
from catalogue.settings import Settings


class Storage(Protocol):
    """Where the hub's immutable files live (local directory, S3, ...)."""

    def new_scratch_file(self, suffix: str) -> Path:
        """A fresh temporary file on the same volume, for building a file to publish."""

    def publish_file(self, key: str, scratch: Path) -> None:
        """Fsync ``scratch`` and move it to ``key`` atomically (no-op move if the key exists)."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically."""

    def read_bytes(self, key: str) -> bytes:
        """The bytes stored under ``key``; NotFound if absent."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""

    def engine_uri(self, key: str) -> str:
        """How DuckDB, pyarrow or a file server reach ``key`` (a path or URL)."""

    def local_path(self, key: str) -> Path | None:
        """The local file holding ``key`` when this backend keeps files on this machine, else None.

        Only for sending a stored file as it is (sendfile, Range requests); every
        other reader goes through ``read_bytes``, ``open_read`` or ``engine_uri``.
        """

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object reading the bytes under ``key``; NotFound if absent."""

    def engine_root(self) -> str:
        """The prefix every ``engine_uri`` starts with: scrubbed from messages shown to users."""

    def prepare_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make ``con`` able to read every ``engine_uri`` (object storage: its extension and secret)."""

    def size(self, key: str) -> int:
        """Size of the file under ``key`` in bytes."""

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix``."""

    def remove_stale(self, key: str, older_than: float) -> int:
        """Remove ``key`` if it was last written before ``older_than`` (epoch seconds); bytes freed (0: kept)."""

    def sweep_scratch(self, older_than: float) -> list[tuple[str, int]]:
        """Remove scratch files and directories untouched since ``older_than``; (name, bytes) of each removed."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Files in a local directory: write to a temp file, fsync, rename."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.store_dir.resolve()
        self._root_prefix = os.path.join(self.root, "")  # the root's text with a final separator
        self.scratch = self.root / ".scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Lexically: a key with ".." out of the store is refused. The store holds no links (only this class
        # writes it), so resolving each key on disk (a stat per folder, on every read of every part) is not needed.
        text = os.path.normpath(os.path.join(self._root_prefix, key))
        if not text.startswith(self._root_prefix):
            raise NotFound("No stored file under that name.")
        return Path(text)

    def new_scratch_file(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.scratch)
        os.close(fd)
        return Path(name)

    def publish_file(self, key: str, scratch: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(scratch, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.replace(scratch, target)
        except OSError:  # another file system: copy next to the target, then rename there
            staged = target.with_name(f".{target.name}.incoming")
            shutil.copyfile(scratch, staged)
            os.replace(staged, target)
            scratch.unlink()
        _fsync_dir(target.parent)

    def write_bytes(self, key: str, data: bytes) -> None:
        scratch = self.new_scratch_file(".tmp")
        with open(scratch, "wb") as handle:
            handle.write(data)
        self.publish_file(key, scratch)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise NotFound("No stored file under that name.")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def engine_uri(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        if not path.is_file():
            raise NotFound("No stored file under that name.")
        return open(path, "rb")

    def engine_root(self) -> str:
        return str(self.root)

    def prepare_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: DuckDB reads local paths as they are."""

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and self.scratch not in path.parents:
                yield path.relative_to(self.root).as_posix()

    def remove_stale(self, key: str, older_than: float) -> int:
        path = self._path(key)
        try:
            if path.stat().st_mtime >= older_than:
                return 0
            # Moved aside first, then checked again: a writer that published the same key between the
            # check and the move (a fresh file) gets it back; one publishing after the move is untouched.
            aside = path.with_name(f".{path.name}.gc-{os.getpid()}")
            os.rename(path, aside)
        except FileNotFoundError:
            return 0
        stat = aside.stat()
        if stat.st_mtime >= older_than:
            os.rename(aside, path)
            return 0
        aside.unlink()
        return stat.st_size

    def sweep_scratch(self, older_than: float) -> list[tuple[str, int]]:
        return sweep_scratch_dir(self.scratch, older_than)


def sweep_scratch_dir(scratch: Path, older_than: float) -> list[tuple[str, int]]:
    """Remove the files and directories in ``scratch`` untouched since ``older_than``; (name, bytes) of each."""
    removed = []
    for entry in sorted(scratch.iterdir()):
        try:
            files = [entry] + (list(entry.rglob("*")) if entry.is_dir() else [])
            stats = [f.stat() for f in files]
        except FileNotFoundError:  # its owner removed it meanwhile
            continue
        # A directory is in use while anything in it is written (an ingest's DuckDB files).
        if max(st.st_mtime for st in stats) >= older_than:
            continue
        size = sum(st.st_size for f, st in zip(files, stats) if not f.is_dir())
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append((entry.name, size))
    return removed
