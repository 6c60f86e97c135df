"""Migration 0006 (catalogue runs) on the hub's own engines: SQLite with foreign keys on, and PostgreSQL.

tests/catalogue/test_migrations.py upgrades every earlier migration on plain engines; SQLite there has
foreign keys off. The hub turns them on, and 0006 copies ``harvest_jobs``, which versions refer to:
this upgrades a filled catalogue through ``create_catalogue_engine`` and checks that every version
still names its job, that a catalogue run (no dataset) and its dataset jobs can be recorded, and that
a downgrade drops the runs and keeps everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from catalogue.meta.db import _alembic_config, create_catalogue_engine, current_revision, head_revision, upgrade_schema
from catalogue.meta.models import HarvestJob, Version
from catalogue.settings import Settings
from tests.catalogue.test_migrations import EXPECTED, _differences, _fill, _read
from tests.conftest import pg_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The catalogue engine the hub makes (SQLite: WAL, foreign keys on), at migration 0005 and filled."""
    if request.param == "sqlite":
        # Named: the production-backend run's environment would give a PostgreSQL schema, migrated already.
        engine = create_catalogue_engine(Settings(data_dir=tmp_path / "var",
                                                  database_url=f"sqlite:///{tmp_path / 'catalogue.sqlite'}"))
        upgrade_schema(engine, "0005")
        _fill(engine)
        yield engine
        engine.dispose()
        return
    with pg_schema("catalogue_runs") as overrides:
        engine = create_catalogue_engine(Settings(data_dir=tmp_path / "var", **overrides))
        try:
            upgrade_schema(engine, "0005")
            _fill(engine)
            yield engine
        finally:
            engine.dispose()


def test_the_upgrade_keeps_every_job_and_version_link(engine: Engine) -> None:
    assert upgrade_schema(engine) == ("0005", head_revision())  # through 0006 (catalogue runs) to the newest

    assert _read(engine) == EXPECTED  # includes: the version still names its job
    assert _differences(engine) == []
    with Session(engine) as session:
        job = session.scalars(select(HarvestJob)).one()
        assert (job.catalogue, job.counts, job.parent_id, job.dataset_id) == (None, None, None, 1)
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert connection.execute(text("PRAGMA foreign_key_check")).all() == []


def test_a_catalogue_run_and_its_dataset_jobs_are_recorded_and_a_downgrade_drops_only_the_runs(
        engine: Engine) -> None:
    upgrade_schema(engine)
    with Session(engine) as session, session.begin():
        run = HarvestJob(id=2, catalogue="govdata", status="finished", counts={"created": 1})  # _fill took id 1
        session.add(run)
        session.flush()
        session.add(HarvestJob(id=3, dataset_id=1, parent_id=run.id, status="published"))
    with Session(engine) as session:
        assert {(j.id, j.catalogue, j.dataset_id, j.parent_id) for j in session.scalars(select(HarvestJob))} == {
            (1, None, 1, None), (2, "govdata", None, None), (3, None, 1, 2)}
    if engine.dialect.name == "sqlite":  # the key is enforced: no run of that number
        with pytest.raises(Exception, match="FOREIGN KEY"), Session(engine) as session, session.begin():
            session.add(HarvestJob(id=4, dataset_id=1, parent_id=999, status="published"))

    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0005")

    assert current_revision(engine) == "0005"
    with engine.connect() as connection:
        jobs = connection.execute(text("SELECT id, dataset_id, status FROM harvest_jobs ORDER BY id")).all()
        assert [tuple(row) for row in jobs] == [(1, 1, "published"), (3, 1, "published")]
        assert connection.execute(select(Version.harvest_job_id)).scalar_one() == 1
