"""By-space copies of a version's parts: an items page read from them (catalogue.query.by_space) is the page read
from the parts — the same features in the same order, the same total and the same next cursor — for boxes tiny,
medium, over the whole extent and outside it (every box crosses the parts' boundaries: the parts are sorted by id,
the points lie at random), at offsets and along cursors; only small boxes are sent to them; the collector removes a
copy with its part."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Version
from catalogue.query import by_space
from catalogue.query import ogc_features as ogc
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import plan_records, run_records
from catalogue.store.by_space import by_space_key

NAME = "punkte"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                     {"name": "value", "type": "number"}, {"name": "geometry", "type": "geojson"}],
          "primaryKey": ["id"]}
WEST, SOUTH, EAST, NORTH = 9.8, 53.4, 10.2, 53.7
POINTS = 5000
SMALL = {"part_max_rows": 1500}  # 4 parts; the copies' row groups hold 2,048 rows
BOXES = {  # west, south, east, north
    "tiny": (9.95, 53.5, 9.955, 53.504),
    "medium": (9.9, 53.45, 9.98, 53.51),  # 1/25 of the extent
    "whole extent": (WEST - 1, SOUTH - 1, EAST + 1, NORTH + 1),
    "outside": (11.0, 54.0, 11.5, 54.2),
    "a line of points": (10.05, SOUTH, 10.06, NORTH),
}


def points(n: int = POINTS, seed: int = 3) -> bytes:
    """A GeoJSON FeatureCollection of ``n`` points at random in the box, ids in order."""
    pick = random.Random(seed)
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [
        round(pick.uniform(WEST, EAST), 6), round(pick.uniform(SOUTH, NORTH), 6)]},
        "properties": {"id": i, "name": f"P{i}", "value": round(pick.uniform(0, 10), 2)}} for i in range(1, n + 1)]
    # One point on a corner of the tiny box: a box test that dropped its edge would lose it.
    features[7]["geometry"]["coordinates"] = [9.95, 53.5]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


@pytest.fixture
def punkte(make_catalogue: Any) -> Iterator[tuple[Hub, QueryEngine]]:
    hub = make_catalogue(NAME, SCHEMA, points(), "geojson", **SMALL)
    engine = QueryEngine(hub)
    by_space.forget()
    yield hub, engine
    engine.close()


def _page(hub: Hub, engine: QueryEngine, ref: VersionRef, box: tuple[float, float, float, float], *, limit: int,
          offset: int = 0, cursor: str | None = None, moved: bool, **filters: Any) -> dict[str, Any]:
    """run_records' answer for one items page, read from the parts or (``moved``) from their by-space copies."""
    query = ogc.ItemsQuery(bbox=box, **filters)
    plan = plan_records(ogc.items_request(ref.schema, query, limit=limit, offset=offset, cursor=cursor), ref.schema,
                        list(ref.uris), ref.number, row_count=ref.row_count)

    def run(cur: Any) -> dict[str, Any]:
        used = plan
        if moved:
            found = by_space.copies(cur, hub.storage, ref.keys, "geometry")
            used = by_space.space_plan(  # type: ignore[assignment]
                plan, dict(zip(ref.uris, (uri for uri, _ in found))), box, "geometry")
            assert used is not None and "$sp_files" in used.sql  # the copies are read
        return run_records(cur, used, version=ref.number, limit=limit, time_limit_ms=20_000,
                           render=ogc.feature_sql(ref.schema))  # type: ignore[arg-type]

    return engine.run(run)


def _ids(answer: dict[str, Any]) -> list[int]:
    return [int(f["id"]) for f in json.loads(answer["results_json"])]


@pytest.mark.parametrize("box", list(BOXES.values()), ids=list(BOXES))
def test_pages_from_the_copies_are_the_pages_from_the_parts(punkte: tuple[Hub, QueryEngine],
                                                            box: tuple[float, float, float, float]) -> None:
    hub, engine = punkte
    ref = engine.version(NAME)
    assert len(ref.uris) == 4
    everything = _page(hub, engine, ref, box, limit=POINTS, moved=False)
    assert everything == _page(hub, engine, ref, box, limit=POINTS, moved=True)
    matched = _ids(everything)
    assert matched == sorted(matched)  # in the parts' order (by id)
    for limit, offset in ((7, 0), (7, 5), (50, 20), (1000, 0)):
        asked = {"limit": limit, "offset": offset}
        assert _page(hub, engine, ref, box, **asked, moved=True) == _page(hub, engine, ref, box, **asked, moved=False)
    # Along the cursors, page after page, to the end.
    walked: list[int] = []
    cursor: str | None = None
    while True:
        plain = _page(hub, engine, ref, box, limit=40, cursor=cursor, moved=False)
        assert _page(hub, engine, ref, box, limit=40, cursor=cursor, moved=True) == plain
        walked += _ids(plain)
        cursor = plain["next_cursor"]
        if cursor is None:
            break
    assert walked == matched


def test_other_filters_beside_the_box(punkte: tuple[Hub, QueryEngine]) -> None:
    """A property filter (which prunes parts by their ranges) and a CQL2 filter are kept when the box moves."""
    hub, engine = punkte
    ref = engine.version(NAME)
    for filters in ({"properties": (("id", "2500"),)}, {"filter": "value < 5 AND id > 1000"},
                    {"filter": "value >= 2", "properties": (("name", "P8"),)}):
        for limit, offset in ((10, 0), (10, 10), (POINTS, 0)):
            asked = {"limit": limit, "offset": offset, **filters}
            plain = _page(hub, engine, ref, BOXES["medium"], **asked, moved=False)
            assert _page(hub, engine, ref, BOXES["medium"], **asked, moved=True) == plain
    assert _page(hub, engine, ref, BOXES["medium"], limit=POINTS, moved=True, filter="value < 5")["returned"] > 10


def test_the_numbers_of_the_boxes(punkte: tuple[Hub, QueryEngine]) -> None:
    """The boxes ask what they are meant to: a few points, a few hundred, all of them, none."""
    hub, engine = punkte
    ref = engine.version(NAME)
    counts = {name: _page(hub, engine, ref, box, limit=POINTS, moved=True)["total_count"]
              for name, box in BOXES.items()}
    assert counts["tiny"] >= 1 and 100 < counts["medium"] < 1000 and counts["outside"] == 0
    assert counts["whole extent"] == POINTS and 0 < counts["a line of points"] < 500
    assert 8 in _ids(_page(hub, engine, ref, BOXES["tiny"], limit=10, moved=True))  # the point on its corner


def test_only_small_boxes_are_read_from_the_copies(punkte: tuple[Hub, QueryEngine]) -> None:
    hub, engine = punkte
    ref = engine.version(NAME)
    found = engine.run(lambda cur: by_space.copies(cur, hub.storage, ref.keys, "geometry"))
    extents = [extent for _, extent in found]
    assert all(e is not None and WEST <= e[0] <= e[2] <= EAST and SOUTH <= e[1] <= e[3] <= NORTH for e in extents)
    assert [by_space.small(box, extents) for box in BOXES.values()] == [True, True, False, True, True]
    assert not by_space.small(BOXES["tiny"], [None])  # no extent known: the parts
    for name, box in BOXES.items():
        plan = plan_records(ogc.items_request(ref.schema, ogc.ItemsQuery(bbox=box), limit=10, offset=0), ref.schema,
                            list(ref.uris), ref.number, row_count=ref.row_count)
        used = engine.run(lambda cur: ogc.items_plan(cur, hub.storage, ref, ogc.ItemsQuery(bbox=box), plan))
        assert ("$sp_files" in used.sql) == (name != "whole extent"), name
    unfiltered = plan_records(ogc.items_request(ref.schema, ogc.ItemsQuery(), limit=10, offset=0), ref.schema,
                              list(ref.uris), ref.number, row_count=ref.row_count)
    assert engine.run(lambda cur: ogc.items_plan(cur, hub.storage, ref, ogc.ItemsQuery(), unfiltered)) is unfiltered


def test_the_collector_removes_a_copy_with_its_part(punkte: tuple[Hub, QueryEngine]) -> None:
    hub, engine = punkte
    first = engine.version(NAME)
    _page(hub, engine, first, BOXES["tiny"], limit=10, moved=True)  # writes the copies of version 1
    replaced = ingest_delivery(hub, NAME, Delivery(points(seed=4), "geojson", {}, "replace", {"source_url": "test"}))
    assert (replaced.status, replaced.version) == ("published", 2)
    second = engine.version(NAME)
    _page(hub, engine, second, BOXES["tiny"], limit=10, moved=True)
    copies = set(hub.storage.list_keys(f"datasets/{NAME}/by-space"))
    assert copies == {by_space_key(k) for k in first.keys + second.keys}
    assert _copies_removed(hub) == set()  # both versions still reference their parts
    with hub.engine.begin() as con:  # version 1 withdrawn: its parts are referenced no more
        con.execute(delete(Version).where(Version.number == 1))
    gone = {by_space_key(k) for k in first.keys if k not in second.keys}
    assert gone and _copies_removed(hub) == gone
    by_space.forget()
    # The current version still answers from its copies, as from its parts.
    assert (_page(hub, engine, second, BOXES["medium"], limit=30, moved=True)
            == _page(hub, engine, second, BOXES["medium"], limit=30, moved=False))


def _copies_removed(hub: Hub) -> set[str]:
    """Keys of the by-space copies one collection (without grace period) removed."""
    return {name.removeprefix("store/") for name, _ in collect(hub, grace=timedelta(0)).files if "/by-space/" in name}


def test_rows_without_a_box_come_last_in_a_copy(punkte: tuple[Hub, QueryEngine]) -> None:
    """A null and an empty geometry have no place on the curve (ST_Hilbert refuses an empty one): they come
    last, with no box, so no bbox finds them, as ST_Intersects finds neither."""
    hub, engine = punkte
    key = f"datasets/{NAME}/parts/{'0' * 64}.parquet"
    scratch = hub.storage.new_scratch_file(".parquet")
    shapes = ["POINT (10 53.5)", None, "POINT EMPTY", "POINT (9.9 53.6)"]
    values = ", ".join(f"({i}, {'NULL' if s is None else repr(s)})" for i, s in enumerate(shapes))
    engine.run(lambda cur: cur.execute(
        f"COPY (SELECT id, ST_GeomFromText(shape) AS geometry FROM (VALUES {values}) AS t(id, shape)) "
        f"TO '{scratch}' (FORMAT parquet)"))
    hub.storage.publish_file(key, scratch)
    found = engine.run(lambda cur: by_space.copies(cur, hub.storage, [key], "geometry"))
    assert found[0][1] == (9.9, 53.5, 10.0, 53.6)
    rows = engine.run(lambda cur: cur.execute(
        f"SELECT id, __row, __xmin FROM read_parquet('{found[0][0]}')").fetchall())
    assert sorted(rows[:2]) == [(0, 0, 10.0), (3, 3, 9.9)]
    assert sorted(rows[2:]) == [(1, 1, None), (2, 2, None)]
