"""Spatial extent: datasets keep their bounding box as numbers; on PostGIS also as an indexed geometry.

The four ``bbox_*`` columns exist on every database (area search by comparisons, no SpatiaLite needed)
and are filled here from each dataset's ``spatial`` metadata. Where the PostGIS type ``geometry`` is
reachable on the search path, ``extent`` is added: a polygon (SRID 4326) generated from those columns,
so no writer has to keep it in step, with a GiST index for ``ST_Intersects``. This migration does not
create the extension (that needs a superuser): run ``CREATE EXTENSION postgis`` before migrating.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from catalogue.meta.extent import extent_bbox

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SIDES = ("bbox_west", "bbox_south", "bbox_east", "bbox_north")


def _postgis(bind: sa.Connection) -> bool:
    return bind.dialect.name == "postgresql" and bool(bind.scalar(sa.text("SELECT to_regtype('geometry') IS NOT NULL")))


def upgrade() -> None:
    bind = op.get_bind()
    for side in SIDES:
        op.add_column("datasets", sa.Column(side, sa.Float(), nullable=True))
    datasets = sa.table("datasets", sa.column("id", sa.Integer), sa.column("spatial", sa.JSON),
                        *(sa.column(s, sa.Float) for s in SIDES))
    for dataset_id, spatial in bind.execute(sa.select(datasets.c.id, datasets.c.spatial)).all():
        box = extent_bbox(json.loads(spatial) if isinstance(spatial, str) else spatial)
        if box is not None:
            bind.execute(sa.update(datasets).where(datasets.c.id == dataset_id).values(dict(zip(SIDES, box))))
    if _postgis(bind):
        op.execute("ALTER TABLE datasets ADD COLUMN extent geometry(Polygon, 4326) GENERATED ALWAYS AS ("
                   "CASE WHEN bbox_west IS NULL OR bbox_south IS NULL OR bbox_east IS NULL OR bbox_north IS NULL "
                   "THEN NULL ELSE ST_MakeEnvelope(bbox_west, bbox_south, bbox_east, bbox_north, 4326) END) STORED")
        op.execute("CREATE INDEX ix_datasets_extent ON datasets USING gist (extent)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_datasets_extent")
        op.execute("ALTER TABLE datasets DROP COLUMN IF EXISTS extent")
    with op.batch_alter_table("datasets") as batch:
        for side in SIDES:
            batch.drop_column(side)
