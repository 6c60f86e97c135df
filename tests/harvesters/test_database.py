"""Database sources against the machine's PostgreSQL: a table or a read-only query, streamed in batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from harvesters.runner import harvest_source
from tests.conftest import pg_schema
from tests.harvesters.sources import demo_schema, last_job, set_source, source_catalogue, versions

NAME = "parking-occupancy"
DSN_ENV = "URBANDATA_TEST_PARKING_DSN"
ROWS = [(lot, f"2026-11-20 0{hour}:00:00", 10 * hour, 100 - 10 * hour, 100, "9.99712, 53.55324")
        for lot in ("P01", "P02") for hour in range(3)]


@pytest.fixture
def source_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway schema with a table of readings; its DSN in the environment variable the source names."""
    import psycopg

    with pg_schema("dbsource") as overrides:
        dsn = overrides["database_url"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE readings (lot_id text, timestamp timestamp, occupied int, free int, "
                         "capacity int, location text, PRIMARY KEY (lot_id, timestamp))")
            conn.execute("CREATE SEQUENCE reading_numbers")
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO readings VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
        monkeypatch.setenv(DSN_ENV, dsn)
        yield dsn


def _hub(tmp_path: Path, settings: dict[str, object] | None = None, **options: object) -> Hub:
    source = {"type": "database", "url": "postgresql://stadtwerke-db/parking", "format": "csv", "mode": "replace",
              "options": {"dsn_env": DSN_ENV, "batch_rows": 2, **options}}
    return source_catalogue(tmp_path, NAME, demo_schema(NAME), source, **(settings or {}))


def _execute(dsn: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_table_first_unchanged_and_changed_runs(tmp_path: Path, source_db: str) -> None:
    hub = _hub(tmp_path, table="readings")
    try:
        first = harvest_source(hub, NAME)
        assert (first.status, first.version) == ("published", 1), first.message
        assert versions(hub, NAME) == [(1, 6)]
        with hub.sessions() as session:
            provenance = get_dataset(session, NAME).current_version.provenance
        assert (provenance["rows_read"], provenance["source_url"]) == (6, "postgresql://stadtwerke-db/parking")

        again = harvest_source(hub, NAME)
        assert (again.status, again.version) == ("unchanged", 1)

        _execute(source_db, "UPDATE readings SET occupied = 99, free = 1 WHERE lot_id = 'P01' AND occupied = 0")
        _execute(source_db, "INSERT INTO readings VALUES ('P03', '2026-11-20 00:00', 5, 95, 100, '9.98, 53.56')")
        changed = harvest_source(hub, NAME)
        assert (changed.status, changed.version) == ("published", 2), changed.message
        with hub.sessions() as session:
            changes = get_dataset(session, NAME).current_version.changes
        assert (changes["added"], changes["removed"], changes["changed"]) == (1, 0, 1)
        assert versions(hub, NAME) == [(2, 7), (1, 6)]
    finally:
        hub.close()


def test_a_query_is_read_and_a_writing_query_is_refused_by_the_read_only_transaction(
    tmp_path: Path, source_db: str
) -> None:
    hub = _hub(tmp_path, query="SELECT * FROM readings WHERE lot_id = 'P02' ORDER BY timestamp")
    try:
        assert harvest_source(hub, NAME).status == "published"
        assert versions(hub, NAME) == [(1, 3)]
        # A SELECT that writes (nextval advances a sequence): the READ ONLY transaction refuses it.
        set_source(hub, NAME, options={"dsn_env": DSN_ENV,
                                       "query": "SELECT *, nextval('reading_numbers') AS n FROM readings"})
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "malformed-feed"), outcome.message
        assert "read-only transaction" in outcome.message
        assert versions(hub, NAME) == [(1, 3)]
    finally:
        hub.close()
    import psycopg

    with psycopg.connect(source_db) as conn:
        assert conn.execute("SELECT is_called FROM reading_numbers").fetchone() == (False,)  # nothing was written


def test_broken_sources_fail_keep_the_version_and_the_job_says_why(
    tmp_path: Path, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = _hub(tmp_path, table="readings")
    try:
        assert harvest_source(hub, NAME).status == "published"

        def fails(code: str, *words: str) -> None:
            outcome = harvest_source(hub, NAME)
            assert (outcome.status, outcome.error_code) == ("failed", code), outcome.message
            job = last_job(hub)
            assert job.status == "failed" and all(word in (job.message or "") for word in words), job.message
            assert source_db not in (job.message or "")  # the DSN is never shown
            assert versions(hub, NAME) == [(1, 6)]

        set_source(hub, NAME, options={"dsn_env": DSN_ENV, "table": "no_such_table"})
        fails("malformed-feed", "no_such_table")
        monkeypatch.setenv(DSN_ENV, "postgresql://postgres@127.0.0.1:1/test")  # nothing listens on port 1
        set_source(hub, NAME, options={"dsn_env": DSN_ENV, "table": "readings"})
        fails("source-unreachable", "cannot reach its database", DSN_ENV)
        monkeypatch.delenv(DSN_ENV)
        fails("source-unreachable", DSN_ENV, "not set")
        monkeypatch.setenv(DSN_ENV, source_db)
        slow = _hub(tmp_path / "slow", settings={"harvest_deadline_s": 1.0},
                    query="SELECT r.* FROM readings r, pg_sleep(10)")
        try:  # the statement timeout is the harvest deadline
            outcome = harvest_source(slow, NAME)
            assert (outcome.status, outcome.error_code) == ("failed", "harvest-deadline-exceeded"), outcome.message
            assert versions(slow, NAME) == []
        finally:
            slow.close()
        capped = _hub(tmp_path / "capped", settings={"harvest_max_bytes": 100}, table="readings")
        try:  # beyond the byte cap the read stops and nothing is published
            outcome = harvest_source(capped, NAME)
            assert (outcome.status, outcome.error_code) == ("failed", "feed-too-large"), outcome.message
            assert versions(capped, NAME) == []
        finally:
            capped.close()
        _execute(source_db, "INSERT INTO readings VALUES ('P09', '2026-11-20 00:00', 5, 95, 100, '9.98, 53.56')")
        outcome = harvest_source(hub, NAME)  # a row the schema refuses (P09 is no car park): quarantined
        assert outcome.status == "quarantined", outcome.message
        assert versions(hub, NAME) == [(1, 6)]
    finally:
        hub.close()
