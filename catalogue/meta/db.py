"""Engine and session creation for the catalogue database, and its schema migrations (Alembic)."""

from __future__ import annotations

import sys
import tempfile
import threading
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from catalogue.errors import CatalogueTooNew, DatabaseUnreachable
from catalogue.meta.models import Base
from catalogue.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision whose schema equals what create_all made before migrations existed.
BASELINE = "0001"
# PostgreSQL advisory-lock key of schema migrations (a fixed bigint: "urbandata-migrate" in ASCII, cut to 8 bytes).
MIGRATION_LOCK_KEY = int.from_bytes(b"urbandata-migrate"[:8], "big", signed=True)
_IN_PROCESS = threading.Lock()


# A request that finds every pooled connection taken waits this long, then answers 503 database-busy with
# Retry-After (api/errors.py), instead of holding its worker thread for SQLAlchemy's default 30 s.
POOL_TIMEOUT_S = 2
# An SQLite connection is a file handle: the pool holds one per worker thread (anyio's default limiter is 40),
# so under any load a request thread finds one. A database server's connections cost it memory: 5 + 10.
SQLITE_POOL = {"pool_size": 10, "max_overflow": 30}
SERVER_POOL = {"pool_size": 5, "max_overflow": 10}


def create_catalogue_engine(settings: Settings) -> Engine:
    """An engine for the configured database; SQLite gets WAL and foreign keys."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_timeout=POOL_TIMEOUT_S, **SQLITE_POOL)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_timeout=POOL_TIMEOUT_S, **SERVER_POOL)


def catalogue_exists(settings: Settings) -> bool:
    """Whether the configured database already holds a catalogue (creates nothing to find out)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).is_file():
            return False  # connecting would create the file
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return inspect(connection).has_table("datasets")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnreachable(
            f"The catalogue database cannot be reached ({reason}). Check that its server runs and that "
            f"URBANDATA_DATABASE_URL names the right host, port and database."
        ) from exc
    finally:
        engine.dispose()


# Made by migration 0005 only where PostGIS is reachable, so models.py does not declare them (SQLite has no such
# type); and PostGIS's own table, visible where the extension sits on the search path.
POSTGIS_ONLY = {("column", "extent"), ("index", "ix_datasets_extent"), ("table", "spatial_ref_sys")}


# Made by migration 0007 (the full-text search index, catalogue/meta/fts.py): on PostgreSQL a generated column and
# its GIN index, on SQLite an FTS5 table (and the shadow tables FTS5 keeps beside it).
SEARCH_INDEX = {("column", "search_vector"), ("index", "ix_datasets_search")}


def declared(_object: object, name: str | None, type_: str, _reflected: bool, _compare_to: object) -> bool:
    """Alembic's ``include_object``: compare everything models.py declares, not the PostGIS-only extent
    nor the search index."""
    if type_ == "table" and name is not None and name.startswith("dataset_search"):
        return False
    return (type_, name) not in POSTGIS_ONLY | SEARCH_INDEX


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    """The shipped migrations, read once per process (reading them costs about 25 ms)."""
    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    """The newest migration shipped with this release."""
    head = _scripts().get_current_head()
    assert head is not None, "catalogue/meta/migrations/versions holds no migration"
    return head


def known_revisions() -> set[str]:
    """Every migration this release ships."""
    return {script.revision for script in _scripts().walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at; None for a database without a catalogue.

    A catalogue made before migrations existed (tables, no ``alembic_version``) is at the baseline.
    """
    with engine.connect() as connection:
        found = MigrationContext.configure(connection).get_current_revision()
        if found is None and inspect(connection).has_table("datasets"):
            return BASELINE
        return found


def upgrade_schema(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Bring the catalogue schema to the newest migration; returns (revision before, revision after).

    An empty database gets every migration; a catalogue made before migrations existed is
    stamped at the baseline first (its tables are the baseline's), then upgraded. Nothing runs
    when the database is already there. ``target`` names an older revision (tests build
    catalogues as an earlier release left them). A catalogue a newer release made raises
    CatalogueTooNew and stays as it is.
    """
    head = head_revision() if target == "head" else target
    if current_revision(engine) == head:
        return head, head  # the usual case, decided without taking any lock
    # alembic's context and op are module-level proxies: one migration at a time in this process.
    with _IN_PROCESS, engine.begin() as connection:
        _lock_for_migration(connection)
        # Read again under the lock: another process may have migrated while this one waited.
        stamped = MigrationContext.configure(connection).get_current_revision()
        before = stamped
        if stamped is None and inspect(connection).has_table("datasets"):
            command.stamp(_alembic_config(connection), BASELINE)
            before = BASELINE
        if before is not None and before not in known_revisions():
            raise CatalogueTooNew(
                f"The catalogue's schema is at migration {before}, which this release of urbandata does not know "
                f"(its newest is {head_revision()}): a newer release made or upgraded it. Run that release, "
                f"or upgrade urbandata."
            )
        if before != head:
            command.upgrade(_alembic_config(connection), head)
    return before, head


def _lock_for_migration(connection: Connection) -> None:
    """Hold the database's migration lock until the transaction ends: one process migrates, others wait."""
    if connection.dialect.name == "sqlite":
        # pysqlite opens transactions lazily and deferred; this takes the write lock now,
        # waiting up to the connection's busy timeout for another writer.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def init_schema(engine: Engine) -> None:
    """Create the catalogue, or upgrade it to this release's schema (idempotent)."""
    upgrade_schema(engine)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def write_revision(message: str) -> None:
    """Write the next migration from what autogenerate finds between the head and models.py (a draft to read)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/draft.sqlite")
        upgrade_schema(engine)
        with engine.begin() as connection:
            # Numbered revisions (0001, 0002, ...) read in order, unlike alembic's random ids.
            command.revision(_alembic_config(connection), message=message, autogenerate=True,
                             rev_id=f"{int(head_revision()) + 1:04d}")
        engine.dispose()


if __name__ == "__main__":  # python -m catalogue.meta.db revision "message"
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m catalogue.meta.db revision "what changes"')
    write_revision(sys.argv[2])
