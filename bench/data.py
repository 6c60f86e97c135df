"""A deterministic synthetic parking-occupancy history, written as CSV in two dialects.

One row per sensor every 5 minutes, rows in arrival order (all sensors of one
tick, then the next tick), as a city's sensor platform would deliver them.
Values come from arithmetic on the row's position only (a daily curve per
sensor plus a little noise from DuckDB's ``hash``, stable for the pinned
duckdb release), so the same ``rows`` always gives byte-identical files.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

START = datetime(2026, 1, 5)  # a Monday
STEP_MINUTES = 5
ROWS_PER_SENSOR = 10_000  # about 35 days of 5-minute readings per sensor
DISTRICTS = ["Altstadt", "Südstadt", "Nordviertel", "Östliche Vorstadt", "Hafen", "Weststadt", "Grünau", "Mühlenkamp"]

INTERNATIONAL = {"delimiter": ",", "encoding": "utf-8"}
GERMAN = {"delimiter": ";", "encoding": "cp1252"}


@dataclass(frozen=True)
class Shape:
    """How many sensors and ticks make ``rows`` rows, and the dates the queries ask about."""

    rows: int
    sensors: int
    ticks: int

    @classmethod
    def of(cls, rows: int) -> Shape:
        sensors = max(20, rows // ROWS_PER_SENSOR)
        return cls(rows, sensors, -(-rows // sensors))

    @property
    def end(self) -> datetime:
        return START + timedelta(minutes=STEP_MINUTES * (self.ticks - 1))

    def sensor(self, number: int) -> str:
        return f"S{number % self.sensors:05d}"

    @property
    def lookup_day(self) -> datetime:
        """A whole day inside the history (the third day, or the first if the history is shorter)."""
        day = START + timedelta(days=2)
        return day if day + timedelta(days=1) <= self.end else START

    @property
    def week(self) -> tuple[datetime, datetime]:
        """Seven days for the group-by (the first week, cut to the history)."""
        return START, min(START + timedelta(days=7), self.end + timedelta(minutes=STEP_MINUTES))

    @property
    def top_moment(self) -> datetime:
        """One reading time for the top-N: noon of the lookup day, or the last tick."""
        moment = self.lookup_day + timedelta(hours=12)
        return moment if moment <= self.end else self.end


def table_schema(dialect: str) -> dict[str, Any]:
    """The Frictionless Table Schema of the history in ``dialect`` (international or german)."""
    german = dialect == "german"
    number = {"type": "number", "decimalChar": ","} if german else {"type": "number"}
    stamp = {"type": "datetime", "format": "%d.%m.%Y %H:%M"} if german else {"type": "datetime"}
    return {
        "fields": [
            {"name": "sensor_id", "type": "string", "constraints": {"required": True}},
            {"name": "lot_id", "type": "string", "constraints": {"required": True}},
            {"name": "district", "type": "string", "constraints": {"required": True, "enum": DISTRICTS}},
            {"name": "timestamp", **stamp, "constraints": {"required": True}},
            {"name": "occupied", "type": "integer", "constraints": {"required": True, "minimum": 0}},
            {"name": "free", "type": "integer", "constraints": {"required": True, "minimum": 0}},
            {"name": "lon", **number, "constraints": {"minimum": -180, "maximum": 180}},
            {"name": "lat", **number, "constraints": {"minimum": -90, "maximum": 90}},
        ],
        "primaryKey": ["sensor_id", "timestamp"],
        "missingValues": [""],
    }


def quiet_connect(config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that prints no progress bar (the bench has its own progress output)."""
    con = duckdb.connect(config=config)
    con.execute("SET enable_progress_bar = false")
    return con


def _rows_sql(shape: Shape) -> str:
    districts = "[" + ", ".join("'" + d + "'" for d in DISTRICTS) + "]"
    return f"""
        SELECT 'S' || lpad(CAST(s AS VARCHAR), 5, '0') AS sensor_id,
               'L' || lpad(CAST(s // 10 AS VARCHAR), 4, '0') AS lot_id,
               {districts}[(s // 10) % {len(DISTRICTS)} + 1] AS district,
               TIMESTAMP '{START.isoformat(sep=' ')}' + to_minutes(CAST(t * {STEP_MINUTES} AS BIGINT)) AS ts,
               50 + (s * 37) % 150 AS capacity,
               greatest(0, least(50 + (s * 37) % 150,
                   CAST(floor((50 + (s * 37) % 150) * (0.5 + 0.45 * sin(2 * pi() * ((t * {STEP_MINUTES}) % 1440) / 1440.0 + s)))
                        AS INTEGER) + CAST(hash(t * 100003 + s) % 9 AS INTEGER) - 4)) AS occupied,
               round(9.90 + ((s * 7919) % 20000) / 100000.0, 6) AS lon,
               round(53.50 + ((s * 104729) % 12000) / 100000.0, 6) AS lat
        FROM (SELECT i // {shape.sensors} AS t, i % {shape.sensors} AS s FROM range({shape.rows}) AS r(i))
    """


def write_csv(path: Path, shape: Shape, dialect: str) -> Path:
    """Write the history as CSV; ``german``: ``;``, decimal comma, dd.mm.yyyy HH:MM, cp1252."""
    con = quiet_connect({"threads": 2, "preserve_insertion_order": True})
    try:
        if dialect == "german":
            select = ("sensor_id, lot_id, district, strftime(ts, '%d.%m.%Y %H:%M') AS timestamp, occupied, "
                      "capacity - occupied AS free, replace(printf('%.6f', lon), '.', ',') AS lon, "
                      "replace(printf('%.6f', lat), '.', ',') AS lat")
            options = "HEADER, DELIMITER ';', QUOTE '\"'"
            target = path.with_suffix(".utf8.tmp")
        else:
            select = ("sensor_id, lot_id, district, strftime(ts, '%Y-%m-%dT%H:%M:%S') AS timestamp, occupied, "
                      "capacity - occupied AS free, printf('%.6f', lon) AS lon, printf('%.6f', lat) AS lat")
            options = "HEADER, DELIMITER ','"
            target = path
        con.execute(f"COPY (SELECT {select} FROM ({_rows_sql(shape)})) TO '{target}' ({options})")
    finally:
        con.close()
    if dialect == "german":
        _transcode(target, path, "cp1252")
        target.unlink()
    return path


def _transcode(source: Path, target: Path, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(source, "rb") as src, open(target, "wb") as dst:
        for block in iter(lambda: src.read(8 << 20), b""):
            dst.write(decoder.decode(block).encode(encoding))
        dst.write(decoder.decode(b"", final=True).encode(encoding))


def write_definitions(root: Path, name: str, dialects: dict[str, str]) -> Path:
    """A definitions directory (publishers.yaml, one dataset per dialect) for ``load_definitions``."""
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "schemas").mkdir(exist_ok=True)
    (root / "publishers.yaml").write_text(
        "publishers:\n  - name: bench-stadtwerke\n    title: Stadtwerke Benchstadt\n", encoding="utf-8")
    for dataset, dialect in dialects.items():
        (root / "schemas" / f"{dataset}.json").write_text(json.dumps(table_schema(dialect)), encoding="utf-8")
        definition = {
            "name": dataset, "title": f"Parkplatzbelegung ({dialect})",
            "description": "Synthetische Belegung von Parkplatzsensoren alle 5 Minuten (Benchmark).",
            "publisher": "bench-stadtwerke", "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
            "schema": f"schemas/{dataset}.json",
        }
        (root / "definitions" / f"{dataset}.yaml").write_text(json.dumps(definition), encoding="utf-8")
    return root


def csv_options(dialect: str) -> dict[str, Any]:
    """Source options of a delivery in ``dialect``."""
    return dict(GERMAN if dialect == "german" else INTERNATIONAL)
