"""Dataset search by area: the datasets whose spatial extent intersects a bounding box, in SQL.

One condition for the API's ``bbox`` and CKAN's ``ext_bbox``. On PostgreSQL with PostGIS, the
catalogue has a geometry column ``extent`` (migration 0005: generated from ``Dataset.bbox_*``, SRID
4326, GiST-indexed) and the condition is GeoAlchemy2's ``ST_Intersects`` against an envelope, which
the spatial index answers. Elsewhere (SQLite without SpatiaLite, PostgreSQL without PostGIS) the
same intersection is four comparisons on the bounding-box columns.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from geoalchemy2 import Geometry
from geoalchemy2 import functions as geo
from sqlalchemy import Engine, and_, inspect, literal_column
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from catalogue.meta.extent import BBox
from catalogue.meta.models import Dataset

EXTENT_COLUMN = "extent"
SRID = 4326
_HAS_EXTENT: WeakKeyDictionary[Engine, bool] = WeakKeyDictionary()


def has_geometry(session: Session) -> bool:
    """Whether the catalogue has the PostGIS ``extent`` column (looked up once per engine)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "postgresql":
        return False
    if engine not in _HAS_EXTENT:
        columns = inspect(session.connection()).get_columns(Dataset.__tablename__)
        _HAS_EXTENT[engine] = any(c["name"] == EXTENT_COLUMN for c in columns)
    return _HAS_EXTENT[engine]


def intersects(session: Session, bbox: BBox) -> ColumnElement[bool]:
    """The condition "the dataset's extent meets ``bbox``" (touching edges count); datasets without one never do."""
    west, south, east, north = bbox
    if has_geometry(session):
        extent = literal_column(f"{Dataset.__tablename__}.{EXTENT_COLUMN}", Geometry("POLYGON", srid=SRID))
        return geo.ST_Intersects(extent, geo.ST_MakeEnvelope(west, south, east, north, SRID))
    return and_(Dataset.bbox_west <= east, Dataset.bbox_east >= west,
                Dataset.bbox_south <= north, Dataset.bbox_north >= south)
