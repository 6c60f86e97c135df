"""Dataset search by area: one kernel condition behind the API's ``bbox`` and CKAN's ``ext_bbox``.

Run on SQLite (the bounding-box numbers) and on PostgreSQL with PostGIS (the GiST-indexed geometry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from catalogue.errors import InvalidParameter
from catalogue.meta.area import has_geometry, intersects
from catalogue.meta.ckan_search import PackageQuery, search_packages
from catalogue.meta.db import upgrade_schema
from catalogue.meta.extent import extent_bbox, parse_bbox
from catalogue.meta.models import Dataset, Organization
from catalogue.meta.search import search_datasets
from tests.conftest import pg_schema, postgis_or_skip

# Hamburg's districts, roughly: Altona in the west, Mitte, Wandsbek in the north-east; one Munich dataset.
EXTENTS: dict[str, dict[str, Any]] = {
    "altona-trees": {"bbox": [9.80, 53.53, 9.95, 53.62]},
    "mitte-parking": {"bbox": [9.95, 53.53, 10.05, 53.57]},
    "wandsbek-noise": {"type": "Polygon", "coordinates": [[[10.05, 53.57], [10.20, 53.57], [10.20, 53.68],
                                                             [10.05, 53.68], [10.05, 53.57]]]},
    "munich-bikes": {"bbox": [11.36, 48.06, 11.72, 48.25]},
    "no-extent": {},
}


@pytest.fixture(params=["sqlite", "postgis"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated catalogue holding EXTENTS' datasets, on SQLite or on PostgreSQL with PostGIS."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'catalogue.sqlite'}")
        yield from _filled(engine)
        return
    with pg_schema("area", postgis=True) as overrides:
        postgis_or_skip()
        yield from _filled(create_engine(overrides["database_url"]))


def _filled(engine: Engine) -> Iterator[Engine]:
    try:
        upgrade_schema(engine)
        with Session(engine) as session, session.begin():
            publisher = Organization(name="hamburg", title="Freie und Hansestadt Hamburg")
            session.add(publisher)
            for name, spatial in EXTENTS.items():
                session.add(Dataset(name=name, title=name.replace("-", " ").title(), license="dl-zero-de/2.0",
                                    publisher=publisher, spatial=spatial, table_schema={"fields": []}))
        yield engine
    finally:
        engine.dispose()


def _both(engine: Engine, bbox: tuple[float, float, float, float]) -> tuple[list[str], list[str]]:
    """The names the API's search and CKAN's package_search find in ``bbox``."""
    with Session(engine) as session:
        api = [d.name for d in search_datasets(session, None, bbox=bbox).datasets]
        ckan = [d.name for d in search_packages(session, PackageQuery(bbox=bbox, rows=100, sort=(("name", False),))).datasets]
    return api, ckan


@pytest.mark.parametrize(("bbox", "expected"), [
    ((9.9, 53.5, 10.1, 53.6), ["altona-trees", "mitte-parking", "wandsbek-noise"]),  # central Hamburg
    ((9.0, 53.0, 9.5, 53.3), []),  # south-west of the city: nothing
    ((10.1, 53.6, 10.15, 53.65), ["wandsbek-noise"]),  # inside one polygon's box
    ((9.95, 53.60, 9.95, 53.60), ["altona-trees"]),  # a point on Altona's eastern edge: touching counts
    ((-180, -90, 180, 90), ["altona-trees", "mitte-parking", "munich-bikes", "wandsbek-noise"]),  # never no-extent
])
def test_api_and_ckan_find_the_datasets_whose_extent_meets_the_box(engine: Engine, bbox: Any, expected: list[str]) -> None:
    assert _both(engine, bbox) == (expected, expected)


def test_postgis_answers_with_the_geometry_and_sqlite_with_the_numbers(engine: Engine) -> None:
    with Session(engine) as session:
        assert has_geometry(session) is (engine.dialect.name == "postgresql")
        # An edited extent moves the box (and on PostGIS the generated geometry) without any writer touching them.
        session.query(Dataset).filter_by(name="munich-bikes").one().spatial = {"bbox": [9.99, 53.55, 10.0, 53.56]}
        session.commit()
        if engine.dialect.name == "postgresql":
            assert session.execute(text("SELECT ST_AsText(extent) FROM datasets WHERE name = 'munich-bikes'")
                                   ).scalar_one() == "POLYGON((9.99 53.55,9.99 53.56,10 53.56,10 53.55,9.99 53.55))"
            session.execute(text("SET LOCAL enable_seqscan = off"))  # five rows: make the planner show the index
            query = select(Dataset.id).where(intersects(session, (9.9, 53.5, 10.1, 53.6)))
            compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            plan = "\n".join(session.execute(text(f"EXPLAIN {compiled}")).scalars())
            assert "ix_datasets_extent" in plan
    assert _both(engine, (9.99, 53.55, 9.995, 53.555)) == (["mitte-parking", "munich-bikes"],) * 2


def test_a_search_word_and_an_area_together(engine: Engine) -> None:
    with Session(engine) as session:
        assert [d.name for d in search_datasets(session, "parking", bbox=(9.0, 53.0, 11.0, 54.0)).datasets] == [
            "mitte-parking"]
        assert search_datasets(session, "parking", bbox=(11.0, 48.0, 12.0, 49.0)).total == 0


def test_extent_bbox_reads_boxes_and_geojson() -> None:
    assert extent_bbox({"bbox": [1, 2, 3, 4]}) == (1.0, 2.0, 3.0, 4.0)
    assert extent_bbox({"type": "MultiPoint", "coordinates": [[5, 1], [2, 7]]}) == (2.0, 1.0, 5.0, 7.0)
    assert extent_bbox({}) is None and extent_bbox(None) is None


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", "10,0,5,1", "0,80,1,95", ""])
def test_a_bad_box_names_the_parameter_and_the_form(bad: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        parse_bbox(bad, "ext_bbox")
    assert raised.value.details == {"parameter": "ext_bbox"}
    assert raised.value.message.startswith("ext_bbox")
