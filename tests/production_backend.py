"""The production-backend run of the suite: ``URBANDATA_TEST_BACKEND=production python -m pytest``.

The suite runs twice in CI (README, "Run the whole test suite"): once on the embedded default (SQLite and
local files) and once with every catalogue the tests open on PostgreSQL + PostGIS (the machine's server,
127.0.0.1:5432, database ``test``) and every part and descriptor on a real SeaweedFS S3 gateway started
for the session. Nothing in the tests changes: a hub's database and storage come from the ``URBANDATA_*``
environment whenever a test does not name them, so this plugin sets that environment:

- each test gets a PostgreSQL schema and an S3 key prefix of its own (created before its function-scoped
  fixtures, the schema dropped after it), so its catalogues see nothing of any other test's;
- each module- or session-scoped fixture is set up under a schema and prefix of its own: the catalogue it
  builds outlives a test, so it lives in a schema kept to the session's end;
- subprocesses the tests start (``urbandata serve``, workers, the CLI) inherit the environment in force.

A catalogue belongs to its data directory, as on the embedded default: the first Settings made for a
data directory fixes its schema and prefix, and every later Settings for the same directory, in this
process (the CLI run in process, a module's fixtures) or in a server it starts (``backend_env``), gets
the same ones, whatever test or scope makes it.

A test that names ``database_url`` or ``storage`` itself keeps what it names: the SQLite-only and
local-file tests stay what they are. Tests that check what only the embedded default has (the SQLite file,
part files on disk) carry the ``embedded_only`` mark and are skipped here, each with the reason in its mark.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ACTIVE = os.environ.get("URBANDATA_TEST_BACKEND", "embedded") == "production"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEYS = ("URBANDATA_DATABASE_URL", "URBANDATA_STORAGE", "URBANDATA_S3_ENDPOINT_URL", "URBANDATA_S3_BUCKET",
        "URBANDATA_S3_PREFIX", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Set up before the backends exist (they start them) or reading no catalogue: no environment of their own.
OWN_SETUP = frozenset({"seaweed", "_production_backends", "anyio_backend", "tmp_path_factory", "monkeypatch"})


class Backends:
    """The session's SeaweedFS and the PostgreSQL schemas made for it (dropped at the session's end)."""

    def __init__(self, seaweed: Any, scratch: Path) -> None:
        from sqlalchemy import create_engine

        self.seaweed = seaweed
        self.admin = create_engine(PG_URL)
        self.scoped: dict[str, dict[str, str]] = {}
        self.kept: list[str] = []
        self.template = self._migrated_template(scratch)

    def _migrated_template(self, scratch: Path) -> str:
        """A schema migrated once (Alembic, about a second) as SQL with a placeholder for its name.

        Each test's schema is made from it by replaying the SQL (a few tens of milliseconds): what
        Alembic makes is what every test gets, at the price of one migration a session.
        """
        from catalogue.hub import open_hub
        from catalogue.settings import Settings

        name = f"t_template_{uuid.uuid4().hex[:10]}"
        self._execute(f'CREATE SCHEMA "{name}"')
        try:
            open_hub(Settings(data_dir=scratch, database_url=self.url(name), storage="local")).close()
            dump = subprocess.run(
                ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "--schema", name,
                 PG_URL.replace("+psycopg", "")], check=True, capture_output=True, text=True).stdout
            rows = subprocess.run(
                ["pg_dump", "--data-only", "--inserts", "--no-owner", "--schema", name,
                 PG_URL.replace("+psycopg", "")], check=True, capture_output=True, text=True).stdout
        finally:
            self.drop(name)
        sql = "\n".join(line for line in (dump + rows).splitlines() if not line.startswith("\\"))  # psql's \restrict
        return sql.replace(name, "{schema}")

    def url(self, schema: str) -> str:
        # public after the schema: PostGIS's types and functions live there; the tables do not.
        return f"{PG_URL}?options=-csearch_path%3D{schema}%2Cpublic"

    def _execute(self, sql: str) -> None:
        with self.admin.begin() as connection:
            connection.exec_driver_sql(sql)

    def new_schema(self, label: str) -> str:
        """A schema holding a catalogue at the newest migration, empty."""
        schema = f"t_{label}_{uuid.uuid4().hex[:10]}"
        self._execute(self.template.replace("{schema}", schema))
        return schema

    def drop(self, schema: str) -> None:
        from sqlalchemy import text

        with self.admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def environment(self, schema: str) -> dict[str, str]:
        return {
            "URBANDATA_DATABASE_URL": self.url(schema),
            "URBANDATA_STORAGE": "s3",
            "URBANDATA_S3_ENDPOINT_URL": self.seaweed.endpoint,
            "URBANDATA_S3_BUCKET": self.seaweed.bucket,
            "URBANDATA_S3_PREFIX": f"{schema}/hub",
            "AWS_ACCESS_KEY_ID": self.seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": self.seaweed.secret_key,
        }

    def scope_environment(self, node_id: str) -> dict[str, str]:
        """One schema and prefix per fixture that outlives a test (kept to the session's end)."""
        if node_id not in self.scoped:
            schema = self.new_schema("scope")
            self.kept.append(schema)
            self.scoped[node_id] = self.environment(schema)
        return self.scoped[node_id]

    def close(self) -> None:
        for schema in self.kept:
            self.drop(schema)
        self.admin.dispose()


_backends: Backends | None = None
BACKEND_FIELDS = ("database_url", "storage", "s3_endpoint_url", "s3_bucket", "s3_prefix")
_by_data_dir: dict[Path, dict[str, Any]] = {}


def _install_data_dir_registry() -> None:
    """Settings for a data directory seen before get that directory's database and storage (see the module)."""
    from catalogue.settings import Settings

    original = Settings.__init__

    def init(self: Settings, **values: Any) -> None:
        data_dir = values.get("data_dir")
        where = Path(data_dir).resolve() if data_dir is not None else None
        known = _by_data_dir.get(where) if where is not None else None
        if where is not None and not any(field in values for field in BACKEND_FIELDS):
            if known is None:
                known = _fresh_backend(where)
            if known is not None:
                values = {**known, **values}
        original(self, **values)
        if where is not None:
            _by_data_dir.setdefault(where, {f: getattr(self, f) for f in BACKEND_FIELDS})
            url = os.environ.get("URBANDATA_DATABASE_URL", "")
            if url and self.database_url == url:  # this directory's catalogue is the environment's
                _owner.setdefault(url, where)

    Settings.__init__ = init  # type: ignore[method-assign]


_owner: dict[str, Path] = {}  # the environment's database URL -> the data directory whose catalogue it holds


def _fresh_backend(data_dir: Path) -> dict[str, Any] | None:
    """Backend settings for a data directory first seen while another one holds the environment's catalogue.

    A test that builds a second catalogue (another data directory, as on the embedded default, where each
    directory has its own SQLite file and store) gets a schema and prefix of its own for it, kept to the
    session's end; the first directory keeps the environment's. None: the environment's are free.
    """
    url = os.environ.get("URBANDATA_DATABASE_URL", "")
    if _backends is None or not url or _owner.get(url, data_dir) == data_dir:
        return None
    schema = _backends.new_schema("dir")
    _backends.kept.append(schema)
    env = _backends.environment(schema)
    return {"database_url": env["URBANDATA_DATABASE_URL"], "storage": "s3",
            "s3_endpoint_url": env["URBANDATA_S3_ENDPOINT_URL"], "s3_bucket": env["URBANDATA_S3_BUCKET"],
            "s3_prefix": env["URBANDATA_S3_PREFIX"]}


def backend_env(data_dir: str | Path) -> dict[str, str]:
    """Environment for a process serving ``data_dir``'s catalogue: its database and storage in this run."""
    known = _by_data_dir.get(Path(data_dir).resolve()) if _backends is not None else None
    if not known:
        return {}
    return {f"URBANDATA_{field.upper()}": str(value) for field, value in known.items() if value is not None}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_only(reason): checks what only the embedded default has (the SQLite file, part files on disk); "
        "skipped in the production-backend run (URBANDATA_TEST_BACKEND=production)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ACTIVE:
        return
    for item in items:
        mark = item.get_closest_marker("embedded_only")
        if mark is not None:
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason", "embedded default only")
            item.add_marker(pytest.mark.skip(reason=f"production-backend run: {reason}"))


@pytest.fixture(scope="session", autouse=True)
def _production_backends(request: pytest.FixtureRequest) -> Iterator[Backends | None]:
    """Start SeaweedFS and make sure PostGIS exists, once, when the run is the production-backend one."""
    global _backends
    if not ACTIVE:
        yield None
        return
    from sqlalchemy import create_engine, text

    from catalogue.meta.models import Base

    admin = create_engine(PG_URL)
    with admin.begin() as connection:  # a failure here fails the run: this run is about these backends
        connection.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
        # Catalogue tables in public (an interrupted run's, made without a schema) would be found through every
        # schema's search path and fool the migrations: they are nobody's, so they go.
        stray = connection.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY(:names)"
        ), {"names": list(Base.metadata.tables)}).scalars().all()
        if stray:
            print(f"production-backend run: dropping stray catalogue tables in public: {', '.join(sorted(stray))}")
            connection.execute(text(f"DROP TABLE {', '.join(f'public.{name}' for name in stray)} CASCADE"))
    admin.dispose()
    _install_data_dir_registry()
    _backends = Backends(request.getfixturevalue("seaweed"),
                         request.getfixturevalue("tmp_path_factory").mktemp("template"))
    try:
        yield _backends
    finally:
        _backends.close()
        _backends = None


@pytest.fixture(autouse=True)
def _production_test_env(_production_backends: Backends | None) -> Iterator[None]:
    """A schema and an S3 prefix of this test's own, in the environment while it runs."""
    if _production_backends is None:
        yield
        return
    schema = _production_backends.new_schema("test")
    with _environment(_production_backends.environment(schema)):
        yield
    _production_backends.drop(schema)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    if _backends is None or fixturedef.scope == "function" or fixturedef.argname in OWN_SETUP:
        yield
        return
    # A schema of its own for each: two module fixtures making catalogues must not meet in one schema; a fixture
    # reopening another's data directory gets that one's backend (the data directory registry).
    with _environment(_backends.scope_environment(f"{request.node.nodeid}::{fixturedef.argname}")):
        yield


@contextmanager
def own_backend() -> Iterator[None]:
    """For a second catalogue in one test: in the production-backend run, a schema and prefix of its own while
    the block runs (dropped at the session's end); on the embedded default, nothing (its data directory is its own)."""
    if _backends is None:
        yield
        return
    schema = _backends.new_schema("own")
    _backends.kept.append(schema)
    with _environment(_backends.environment(schema)):
        yield


class _environment:
    """Set ``values`` in os.environ, and put back what was there after."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        self.saved = {key: os.environ.get(key) for key in KEYS}
        os.environ.update(self.values)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
