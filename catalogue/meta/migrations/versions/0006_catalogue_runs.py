"""Catalogue runs: a catalogue harvest is one job of its own, and its datasets' jobs name it.

A catalogue run's job has no dataset (``dataset_id`` becomes nullable), names its catalogue source
(``catalogue``) and counts what became of the catalogue's datasets (``counts``); each dataset's job
in that run points to it (``parent_id``). Jobs recorded before this migration are no catalogue runs
and belong to none: every new column is NULL for them.

On SQLite, making a column nullable copies the table (batch mode), and dropping the old copy
deletes its rows, which versions refer to (``versions.harvest_job_id``; the hub turns foreign keys
on, and SQLite cannot turn them off inside the migration's transaction). So each version's job id
is kept aside, cleared for the copy and put back, all in that one transaction: a failure leaves
the catalogue as it was.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PARENT_KEY = "fk_harvest_jobs_parent_id"


def upgrade() -> None:
    with _references_kept_aside():
        with op.batch_alter_table("harvest_jobs") as batch:
            batch.add_column(sa.Column("catalogue", sa.String(length=100), nullable=True))
            batch.add_column(sa.Column("counts", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
            batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=True)
            batch.create_index("ix_harvest_jobs_parent_id", ["parent_id"], unique=False)
            batch.create_foreign_key(PARENT_KEY, "harvest_jobs", ["parent_id"], ["id"])


def downgrade() -> None:
    # Catalogue runs have no dataset: they cannot stay once dataset_id is required again.
    op.execute("UPDATE harvest_jobs SET parent_id = NULL")
    op.execute("DELETE FROM harvest_jobs WHERE dataset_id IS NULL")
    with _references_kept_aside():
        with op.batch_alter_table("harvest_jobs") as batch:
            batch.drop_constraint(PARENT_KEY, type_="foreignkey")
            batch.drop_index("ix_harvest_jobs_parent_id")
            batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=False)
            batch.drop_column("parent_id")
            batch.drop_column("counts")
            batch.drop_column("catalogue")


@contextmanager
def _references_kept_aside() -> Iterator[None]:
    """On SQLite: versions' job ids cleared while harvest_jobs is copied, then put back (see the module note)."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMPORARY TABLE job_of_version AS SELECT id, harvest_job_id FROM versions "
               "WHERE harvest_job_id IS NOT NULL")
    op.execute("UPDATE versions SET harvest_job_id = NULL WHERE harvest_job_id IS NOT NULL")
    yield
    op.execute("UPDATE versions SET harvest_job_id = (SELECT k.harvest_job_id FROM job_of_version k "
               "WHERE k.id = versions.id) WHERE id IN (SELECT id FROM job_of_version)")
    op.execute("DROP TABLE job_of_version")
