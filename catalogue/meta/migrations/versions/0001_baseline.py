"""Baseline: the catalogue schema as the first release with migrations created it.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _described() -> list[sa.Column[Any]]:
    """The columns every published thing has (models.Described)."""
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("title_en", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("description_en", sa.Text(), nullable=False),
    ]


def upgrade() -> None:
    # datasets.current_version_id and versions.dataset_id point at each other: SQLite takes the
    # forward reference inline, other databases get the constraint once versions exists.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "organizations",
        sa.Column("homepage", sa.String(500), nullable=False),
        sa.Column("email", sa.String(300), nullable=False),
        *_described(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    current = [sa.ForeignKeyConstraint(["current_version_id"], ["versions.id"], name="fk_dataset_current_version")]
    op.create_table(
        "datasets",
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("themes", sa.JSON(), nullable=False),
        sa.Column("license", sa.String(500), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("update_frequency", sa.String(20), nullable=False),
        sa.Column("spatial", sa.JSON(), nullable=False),
        sa.Column("temporal_start", sa.Date(), nullable=True),
        sa.Column("temporal_end", sa.Date(), nullable=True),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("current_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        *_described(),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["publisher_id"], ["organizations.id"]),
        sa.UniqueConstraint("name"),
        *(current if sqlite else []),
    )
    op.create_table(
        "harvest_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
    )
    op.create_table(
        "harvest_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(100), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("report_key", sa.String(500), nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("bytes_received", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["source_id"], ["harvest_sources.id"]),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("descriptor_key", sa.String(500), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("harvest_job_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "number"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["harvest_job_id"], ["harvest_jobs.id"]),
    )
    if not sqlite:
        op.create_foreign_key("fk_dataset_current_version", "datasets", "versions", ["current_version_id"], ["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_dataset_current_version", "datasets", type_="foreignkey")
    for table in ("versions", "harvest_jobs", "harvest_sources", "datasets", "organizations"):
        op.drop_table(table)
