"""14. OGC API Features items: our /ogc against pygeoapi serving the same points from PostGIS, same load generator.

The data: ``FEATURES`` points (one per 50 rows of the run below that: 20,000 in quick mode) in a box
around Musterstadt, each with an id
(the key), a name, a district and a value. We ingest them as GeoJSON into a catalogue of our own;
pygeoapi serves them through its PostgreSQL provider, its best for a large table (PostGIS, a GiST
index on the geometry, the id as primary key), from its own venv (api.demo_sources.pygeoapi_venv) in
its own process. Two loads, each a seeded list of URLs on one server: pages of 1,000 features at
random offsets, and a bbox filter (random small boxes, up to 1,000 features each). Before the loads
every URL's answer is checked on both sides: status 200, GeoJSON, the same feature ids (that check is also
the first bbox request, which writes the parts' by-space copies, catalogue.query.by_space). Ours runs
without the result cache and read memos (as phase 3's headline), so every request is computed. The
sides are loaded in turns (ours, pygeoapi, ours, …) from the same load generator; the target is
on the median of the per-turn ratios of requests per second.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from bench.context import Context
from bench.loadgen import load
from bench.measure import Figure, per_turn, ratio_target
from bench.peers import pg_connect
from bench.servers import our_api

SECTION = "ogc"
COLLECTION = "points"
FEATURES, MIN_FEATURES = 200_000, 2_000
PAGE = 1000
URLS = 32  # different requests in each load, picked at random by the load generator
BOX = (9.85, 53.45, 10.15, 53.65)  # west, south, east, north
DISTRICTS = ("Altstadt", "Nord", "Süd", "Hafen", "Ost", "West")
TARGET = 5.0
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                     {"name": "district", "type": "string"}, {"name": "value", "type": "number"},
                     {"name": "geometry", "type": "geojson"}], "primaryKey": ["id"]}


def points(n: int) -> list[tuple[int, str, str, float, float, float]]:
    """(id, name, district, value, lon, lat) of ``n`` points, the same on every run."""
    pick = random.Random(14)
    west, south, east, north = BOX
    return [(i, f"Punkt {i}", DISTRICTS[i % len(DISTRICTS)], round(pick.uniform(0, 100), 3),
             round(pick.uniform(west, east), 6), round(pick.uniform(south, north), 6)) for i in range(1, n + 1)]


def feature_collection(rows: list[tuple[int, str, str, float, float, float]]) -> bytes:
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                 "properties": {"id": i, "name": name, "district": district, "value": value}}
                for i, name, district, value, lon, lat in rows]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def our_catalogue(root: Path, rows: list[tuple[int, str, str, float, float, float]]) -> Path:
    """A catalogue holding the points as dataset ``points``; its data directory."""
    from catalogue.hub import open_hub
    from catalogue.ingest.delivery import Delivery
    from catalogue.ingest.pipeline import ingest_delivery
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.settings import Settings

    defs = root / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "schemas").mkdir()
    (defs / "publishers.yaml").write_text(yaml.safe_dump({"publishers": [{"name": "bench", "title": "Bench"}]}),
                                          encoding="utf-8")
    (defs / "schemas" / f"{COLLECTION}.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (defs / "definitions" / f"{COLLECTION}.yaml").write_text(yaml.safe_dump({
        "name": COLLECTION, "title": "Punkte", "description": "Synthetische Punkte.", "publisher": "bench",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{COLLECTION}.json"}),
        encoding="utf-8")
    hub = open_hub(Settings(data_dir=root / "var", definitions_dir=defs))
    try:
        sync_definitions(hub, load_definitions(defs))
        result = ingest_delivery(hub, COLLECTION, Delivery(feature_collection(rows), "geojson", {}, "replace",
                                                           {"source_url": "bench"}))
        if result.status != "published":
            raise RuntimeError(f"the points were not published: {result.status}")
    finally:
        hub.close()
    return root / "var"


@contextmanager
def postgis_table(rows: list[tuple[int, str, str, float, float, float]], schema: str) -> Iterator[str]:
    """The points in PostGIS table ``<schema>.points`` (GiST index, id primary key); dropped on leaving."""
    con = pg_connect()
    try:
        # PostGIS in public, where pygeoapi's search_path finds it (a superuser may make it: trust on loopback).
        con.execute("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public")
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        con.execute(f"CREATE SCHEMA {schema}")
        table = f"{schema}.{COLLECTION}"
        con.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text, district text, value float8, "
                    "geom geometry(Point, 4326))")
        with con.cursor().copy(f"COPY {schema}.{COLLECTION} (id, name, district, value, geom) FROM STDIN") as copy:
            for i, name, district, value, lon, lat in rows:
                copy.write_row((i, name, district, value, f"SRID=4326;POINT({lon} {lat})"))
        con.execute(f"CREATE INDEX {COLLECTION}_geom ON {table} USING gist (geom)")
        con.execute(f"VACUUM ANALYZE {table}")
        yield table
    finally:
        try:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            con.close()


def provider(schema: str) -> dict[str, Any]:
    """pygeoapi's PostgreSQL provider over the table (trust authentication on loopback: no password)."""
    return {"type": "feature", "name": "PostgreSQL", "id_field": "id", "table": COLLECTION, "geom_field": "geom",
            "data": {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres", "password": "",
                     "search_path": [schema, "public"]}}


def queries(n: int) -> dict[str, list[str]]:
    """load → the query strings of its requests (the same on both sides)."""
    pick = random.Random(7)
    pages = [f"limit={PAGE}&offset={pick.randrange(0, max(1, n - PAGE))}&f=json" for _ in range(URLS)]
    boxes = []
    west, south, east, north = BOX
    # 1/256 of the box: ~780 points at 200,000 (fewer at quick sizes); a page of at most 1,000
    width, height = (east - west) / 16, (north - south) / 16
    for _ in range(URLS):
        x, y = pick.uniform(west, east - width), pick.uniform(south, north - height)
        boxes.append(f"bbox={x:.5f},{y:.5f},{x + width:.5f},{y + height:.5f}&limit={PAGE}&f=json")
    return {"page": pages, "bbox": boxes}


def check_same(client: httpx.Client, ours: str, theirs: str, query: str) -> int:
    """Both answer ``query`` with the same features (ids); their number."""
    ids = []
    for base in (ours, theirs):
        answer = client.get(f"{base}?{query}")
        if answer.status_code != 200:
            raise RuntimeError(f"GET {base}?{query} answered {answer.status_code}: {answer.text[:300]}")
        ids.append(sorted(int(f["id"]) for f in answer.json()["features"]))
    if ids[0] != ids[1]:
        raise RuntimeError(f"ours and pygeoapi answer {query} differently ({len(ids[0])} and {len(ids[1])} features)")
    return len(ids[0])


def run(ctx: Context) -> None:
    from api.demo_sources import PYGEOAPI, PYGEOAPI_POSTGRESQL, Collection, PygeoapiServer, pygeoapi_venv

    try:
        python = pygeoapi_venv(PYGEOAPI_POSTGRESQL)
    except RuntimeError as exc:
        ctx.results.skipped[SECTION] = f"pygeoapi could not be set up: {exc}"
        ctx.step(ctx.results.skipped[SECTION])
        return
    n = max(MIN_FEATURES, min(FEATURES, ctx.rows // 50))  # 200,000 at the default 10M rows, 20,000 in quick mode
    turns = 2 if ctx.quick else ctx.repeat
    root = ctx.work / "ogc"
    ctx.step(f"ogc: {n:,} points into our catalogue and into PostGIS")
    rows = points(n)
    data_dir = our_catalogue(root, rows)
    # Pages at any offset, as pygeoapi serves them (our default walls offsets at 10,000: past it, a cursor).
    env = {"URBANDATA_RESULT_CACHE_MB": "0", "URBANDATA_READ_MEMOS": "false", "URBANDATA_MAX_RETURNED_ROWS": str(PAGE),
           "URBANDATA_MAX_OFFSET_ROWS": str(n)}
    with postgis_table(rows, "bench_ogc") as _, \
            PygeoapiServer([Collection(COLLECTION, root / "unused", "id", "Punkte", provider("bench_ogc"))],
                           workdir=root, python=python) as pygeoapi, \
            our_api(data_dir, env, root / "urbandata.log") as server, httpx.Client(timeout=120) as client:
        ours_items = f"{server.url}/ogc/collections/{COLLECTION}/items"
        their_items = f"{pygeoapi.url.rstrip('/')}/collections/{COLLECTION}/items"
        for label, asked in queries(n).items():
            counts = [check_same(client, ours_items, their_items, q) for q in asked]
            values: dict[str, list[float]] = {"ours": [], "pygeoapi": []}
            for turn in range(turns):
                for side, base in (("ours", ours_items), ("pygeoapi", their_items)):
                    ctx.step(f"ogc: {label} load on {side}, turn {turn + 1}/{turns}")
                    result = load([f"{base}?{q}" for q in asked], ctx.concurrency, ctx.http_seconds, ctx.prefer_wrk,
                                  seed=turn)
                    if result.errors:
                        raise RuntimeError(f"{side} answered {result.errors} of {result.requests} {label} requests "
                                           "with an error")
                    values[side].append(result.rps)
                    ctx.results.texts.setdefault("loadgen", result.tool)
            what = (f"{PAGE:,} features a page at random offsets" if label == "page" else
                    f"bbox filter, {min(counts)}–{max(counts)} features an answer")
            for side, rps in values.items():
                ctx.results.add(Figure(f"ogc.{label}.{side}", f"items, {what}: {side}", "req/s", rps,
                                       higher_is_better=True))
            ctx.results.targets.append(ratio_target(
                SECTION, f"OGC API items ({what}) against pygeoapi (PostgreSQL provider)",
                per_turn(values["ours"], values["pygeoapi"]), ">=", TARGET,
                note=f"{n:,} points, {ctx.concurrency} connections, {ctx.http_seconds:g} s a load, {turns} turns"))
    ctx.results.peers.append(("pygeoapi", f"{PYGEOAPI} in its own venv, PostgreSQL provider over PostGIS "
                              "(GiST index on the geometry, id primary key), served by uvicorn (one process)"))
    ctx.results.note(SECTION, __doc__.split("\n\n", 1)[1].replace("\n", " ") if __doc__ else "")


def main(argv: list[str] | None = None) -> None:
    """Run this phase alone and print its figures and targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.phase_ogc", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000,
                        help="The suite's row count; the points are a 50th of it (2,000 to 200,000).")
    parser.add_argument("--quick", action="store_true", help="2 turns instead of --repeat.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--http-seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-wrk", action="store_true")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="urbandata-bench-ogc-") as work:
        ctx = Context(work=Path(work), rows=args.rows, repeat=args.repeat, quick=args.quick, console=console,
                      http_seconds=args.http_seconds, concurrency=args.concurrency, prefer_wrk=not args.no_wrk)
        run(ctx)
        for line in ctx.results.lines():
            console.print(line)


if __name__ == "__main__":
    main()
