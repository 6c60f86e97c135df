"""Harvest jobs remember the process running them (pid, host), so a job left running by a dead process can be ended.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: jobs recorded before this migration ran in a process nobody knows any more.
    op.add_column("harvest_jobs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("harvest_jobs", sa.Column("host", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("harvest_jobs") as batch:
        batch.drop_column("host")
        batch.drop_column("pid")
