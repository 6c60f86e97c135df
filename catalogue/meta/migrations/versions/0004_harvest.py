"""Harvest: sources remember Last-Modified and a schedule; jobs count rows added, changed, removed and keep errors.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # All nullable: sources defined before keep their dataset's default schedule, older jobs counted nothing.
    op.add_column("harvest_sources", sa.Column("last_modified", sa.String(100), nullable=True))
    op.add_column("harvest_sources", sa.Column("schedule", sa.String(100), nullable=True))
    op.add_column("harvest_jobs", sa.Column("rows_added", sa.BigInteger(), nullable=True))
    op.add_column("harvest_jobs", sa.Column("rows_changed", sa.BigInteger(), nullable=True))
    op.add_column("harvest_jobs", sa.Column("rows_removed", sa.BigInteger(), nullable=True))
    op.add_column("harvest_jobs", sa.Column("errors", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("harvest_jobs") as batch:
        batch.drop_column("errors")
        batch.drop_column("rows_removed")
        batch.drop_column("rows_changed")
        batch.drop_column("rows_added")
    with op.batch_alter_table("harvest_sources") as batch:
        batch.drop_column("schedule")
        batch.drop_column("last_modified")
