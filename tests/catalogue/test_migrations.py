"""Catalogue schema migrations: from empty, from a catalogue made before migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from catalogue.errors import CatalogueTooNew
from catalogue.meta.db import BASELINE, catalogue_exists, current_revision, declared, head_revision, upgrade_schema
from catalogue.meta.models import Base, Dataset, HarvestJob
from catalogue.meta.search import search_datasets
from catalogue.settings import Settings
from tests.conftest import pg_schema, postgis_or_skip

TABLES = {"alembic_version", "datasets", "harvest_jobs", "harvest_sources", "organizations", "versions",
          "api_tokens", "delivery_keys"}
BASELINE_TABLES = {"datasets", "harvest_jobs", "harvest_sources", "organizations", "versions"}


def _pg_engine(postgis: bool) -> Iterator[Engine]:
    """An engine on a throwaway schema of the machine's PostgreSQL, with PostGIS on its search path if asked."""
    with pg_schema("migrations", postgis=postgis) as overrides:
        if postgis:
            postgis_or_skip()
        engine = create_engine(overrides["database_url"])  # search path in the URL: copies of the engine share it
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "postgis"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty catalogue database of each kind (PostgreSQL without and with PostGIS)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'catalogue.sqlite'}")
        yield engine
        engine.dispose()
    else:
        yield from _pg_engine(postgis=request.param == "postgis")


def _tables(engine: Engine) -> set[str]:
    """The catalogue's tables, without PostGIS's (in public) and the SQLite search index's (FTS5's own, 0007)."""
    return {t for t in inspect(engine).get_table_names() if t != "spatial_ref_sys" and not t.startswith("dataset_search")}


def _differences(engine: Engine) -> list[object]:
    """What autogenerate would change to make the database match models.py (nothing, when they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": declared})
        return list(compare_metadata(context, Base.metadata))


AT = datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc)


def _fill(engine: Engine) -> None:
    """One publisher, one dataset with a current version, one job: every table and the cyclic key used.

    Written through the tables as the database has them (not models.py), so it fills a
    catalogue at any earlier migration.
    """
    tables = MetaData()
    tables.reflect(engine)
    described = {"title_en": "", "description": "", "description_en": ""}
    with engine.begin() as connection:
        def add(table: str, **values: object) -> None:
            connection.execute(insert(tables.tables[table]).values(**values))

        add("organizations", id=1, name="stadtwerke", title="Stadtwerke", homepage="", email="", **described)
        add("datasets", id=1, name="car-parks", title="Parkhäuser", license="dl-zero-de/2.0", publisher_id=1,
            keywords=["Parken"], themes=[], contact={}, update_frequency="IRREG", spatial={"bbox": [9.9, 53.5, 10.1, 53.6]},
            schema={"fields": [{"name": "id", "type": "integer"}]}, created_at=AT, modified_at=AT, **described)
        add("harvest_jobs", id=1, dataset_id=1, status="published", message="ok", started_at=AT, rows=6)
        add("versions", id=1, dataset_id=1, number=1, row_count=6, bytes=1234, content_hash="ab" * 32,
            schema={}, descriptor_key="datasets/car-parks/v1.datapackage.json", parts=["p1"], changes={},
            provenance={}, created_at=AT, harvest_job_id=1)
        connection.execute(update(tables.tables["datasets"]).values(current_version_id=1))


def _read(engine: Engine) -> tuple[object, ...]:
    with Session(engine) as session:
        dataset = session.scalars(select(Dataset)).one()
        version = dataset.current_version
        job = session.scalars(select(HarvestJob)).one()
        assert version is not None
        return (dataset.name, dataset.publisher.name, dataset.keywords, dataset.table_schema, dataset.created_at,
                version.number, version.row_count, version.parts, version.content_hash, version.harvest_job_id == job.id,
                job.status, job.rows)


EXPECTED = ("car-parks", "stadtwerke", ["Parken"], {"fields": [{"name": "id", "type": "integer"}]},
            datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc), 1, 6, ["p1"], "ab" * 32, True, "published", 6)


def test_upgrade_from_empty_makes_the_schema_of_models_py(engine: Engine) -> None:
    assert current_revision(engine) is None
    assert upgrade_schema(engine) == (None, head_revision())
    assert _tables(engine) == TABLES
    assert _differences(engine) == []
    assert (current_revision(engine), upgrade_schema(engine)) == (head_revision(), (head_revision(), head_revision()))
    _fill(engine)
    assert _read(engine) == EXPECTED


def test_a_catalogue_made_before_migrations_is_stamped_and_keeps_its_data(engine: Engine) -> None:
    # Releases before migrations made the baseline's tables with create_all and kept no alembic_version.
    upgrade_schema(engine, BASELINE)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    _fill(engine)
    assert current_revision(engine) == BASELINE
    assert upgrade_schema(engine) == (BASELINE, head_revision())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    assert _read(engine) == EXPECTED
    assert _differences(engine) == []


def test_the_baseline_equals_what_create_all_made_before_migrations(engine: Engine) -> None:
    upgrade_schema(engine, BASELINE)
    baseline = {t: sorted(c["name"] for c in inspect(engine).get_columns(t)) for t in BASELINE_TABLES}
    assert baseline["organizations"] == sorted(["id", "name", "title", "title_en", "description", "description_en",
                                                "homepage", "email"])
    assert "pid" not in baseline["harvest_jobs"]


@pytest.mark.parametrize("previous", ["0001", "0002", "0003", "0004"])
def test_a_catalogue_at_the_previous_migration_upgrades_with_its_data(engine: Engine, previous: str) -> None:
    assert upgrade_schema(engine, previous) == (None, previous)
    _fill(engine)
    assert upgrade_schema(engine) == (previous, head_revision())
    assert _read(engine) == EXPECTED
    with Session(engine) as session:
        job = session.scalars(select(HarvestJob)).one()
        assert (job.pid, job.host) == (None, None)  # 0002: unknown for jobs recorded before it
        assert session.scalars(select(Dataset)).one().private is False  # 0003: datasets from before push are public
        # 0004: jobs recorded before it counted no rows added, changed, removed and kept no errors
        assert (job.rows_added, job.rows_changed, job.rows_removed, job.errors) == (None, None, None, None)
        dataset = session.scalars(select(Dataset)).one()  # 0005: the bounding box read from the spatial extent
        assert (dataset.bbox_west, dataset.bbox_south, dataset.bbox_east, dataset.bbox_north) == (9.9, 53.5, 10.1, 53.6)
        # 0007: the search index holds the datasets made before it ("Parkhäuser" by its stem and folded)
        assert [d.name for d in search_datasets(session, "parkhaus").datasets] == ["car-parks"]
    assert _differences(engine) == []
    if _postgis(engine):
        with engine.connect() as connection:
            assert connection.execute(text("SELECT ST_AsText(extent) FROM datasets")).scalar_one() == (
                "POLYGON((9.9 53.5,9.9 53.6,10.1 53.6,10.1 53.5,9.9 53.5))")


def test_a_catalogue_of_the_previous_release_gets_a_search_index_of_its_datasets(engine: Engine) -> None:
    upgrade_schema(engine, "0006")
    _fill(engine)
    assert upgrade_schema(engine) == ("0006", head_revision())
    with Session(engine) as session:
        found = [search_datasets(session, q).total for q in ("parkhaus", "Parkhäusern", "PARKEN", "parkhaeuser")]
        assert found == [1, 1, 1, 1]  # "Parkhäuser" (title) and "Parken" (keyword): folded and by stem
        session.execute(update(Dataset).values(title="Stellplätze"))  # the index follows a plain UPDATE too
        session.commit()
        assert [search_datasets(session, q).total for q in ("parkhaus", "stellplatz")] == [0, 1]
    assert _differences(engine) == [] and _tables(engine) == TABLES


def _postgis(engine: Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as connection:
        return bool(connection.execute(text("SELECT to_regtype('geometry') IS NOT NULL")).scalar_one())


def test_on_postgis_the_extent_is_a_geometry_with_a_spatial_index(engine: Engine) -> None:
    if not _postgis(engine):
        upgrade_schema(engine)  # without PostGIS (SQLite has no SpatiaLite here): the four numbers alone
        assert "extent" not in {c["name"] for c in inspect(engine).get_columns("datasets")}
        assert {"bbox_west", "bbox_south", "bbox_east", "bbox_north"} <= {
            c["name"] for c in inspect(engine).get_columns("datasets")}
        return
    upgrade_schema(engine)
    columns = {c["name"]: c for c in inspect(engine).get_columns("datasets")}
    assert str(columns["extent"]["type"]).lower().startswith("geometry")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_datasets_extent' "
                                       "AND schemaname = current_schema()")).scalar_one().endswith(
            "USING gist (extent)")
        assert connection.execute(text("SELECT srid, type FROM geometry_columns WHERE f_table_name = 'datasets' "
                                       "AND f_table_schema = current_schema()")).one() == (4326, "POLYGON")


@pytest.mark.embedded_only("a mistyped data directory has no SQLite file; a PostgreSQL catalogue is the server's")
def test_catalogue_exists_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "typo")
    assert catalogue_exists(settings) is False
    assert not (tmp_path / "typo").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "catalogue.sqlite").touch()
    assert catalogue_exists(Settings(data_dir=empty)) is False


def test_a_catalogue_from_a_newer_release_is_refused_untouched(engine: Engine) -> None:
    upgrade_schema(engine)
    _fill(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(CatalogueTooNew) as raised:
        upgrade_schema(engine)
    assert raised.value.message == (
        f"The catalogue's schema is at migration 9999, which this release of urbandata does not know "
        f"(its newest is {head_revision()}): a newer release made or upgraded it. Run that release, or upgrade urbandata.")
    assert _read(engine) == EXPECTED
    assert current_revision(engine) == "9999"


def test_processes_starting_together_migrate_once(engine: Engine) -> None:
    """Several hubs opening one empty catalogue at once (a server and a cron harvest): one migrates, the rest wait."""
    url = engine.url.render_as_string(hide_password=False)
    starting = threading.Barrier(4)
    outcomes: list[object] = []

    def open_one() -> None:
        own = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        try:
            starting.wait()
            outcomes.append(upgrade_schema(own))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            outcomes.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    head = head_revision()
    assert sorted(outcomes, key=str) == sorted([(None, head)] + [(head, head)] * 3, key=str)
    assert _differences(engine) == []
