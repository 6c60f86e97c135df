"""The four queries, written once per engine: ours (ODSQL records), PostgreSQL, SQLite, polars."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from bench.data import DISTRICTS, STEP_MINUTES, START, Shape
from catalogue.query.records import RecordsRequest

QUERY_NAMES = {
    "point": "point lookup (one sensor, one day)",
    "groupby": "group-by (hourly mean free per district, 7 days)",
    "topn": "top-10 at one timestamp",
    "count": "filtered count (district, free < 10)",
}


SEED = 20261204  # the parameters' distribution is seeded: every run asks the same sequence of questions


@dataclass(frozen=True)
class QuerySet:
    """The parameters of the four queries for one data shape: fixed ones, or a seeded draw (``draw``)."""

    shape: Shape
    sensor_number: int = 42
    day_start: datetime | None = None  # the point lookup's day (default: the shape's lookup day)
    week_start: datetime | None = None  # the group-by's first day (default: the history's first)
    moment_at: datetime | None = None  # the top-10's reading time (default: the shape's top moment)
    district: str = "Südstadt"

    def draw(self, rng: random.Random) -> QuerySet:
        """Another question of each kind: a random sensor, day, week, reading time and district of the history.

        Every turn asks new ones, so no memo keyed by the query's parameters serves a repeat.
        """
        shape = self.shape
        days = max(1, (shape.end - START).days)  # whole days inside the history
        weeks = max(1, days - 6)
        return replace(self, sensor_number=rng.randrange(shape.sensors),
                       day_start=START + timedelta(days=rng.randrange(days)),
                       week_start=START + timedelta(days=rng.randrange(weeks)),
                       moment_at=START + timedelta(minutes=STEP_MINUTES * rng.randrange(shape.ticks)),
                       district=rng.choice(DISTRICTS))

    @property
    def sensor(self) -> str:
        return self.shape.sensor(self.sensor_number)

    @property
    def day(self) -> tuple[str, str]:
        start = self.day_start or self.shape.lookup_day
        return start.strftime("%Y-%m-%d"), (start + timedelta(days=1)).strftime("%Y-%m-%d")

    @property
    def week(self) -> tuple[str, str]:
        low, high = self.shape.week
        if self.week_start is not None:
            low, high = self.week_start, min(self.week_start + timedelta(days=7),
                                             self.shape.end + timedelta(minutes=STEP_MINUTES))
        return low.strftime("%Y-%m-%dT%H:%M:%S"), high.strftime("%Y-%m-%dT%H:%M:%S")

    @property
    def moment(self) -> str:
        return (self.moment_at or self.shape.top_moment).strftime("%Y-%m-%dT%H:%M:%S")

    # --- ours -----------------------------------------------------------------
    def records_requests(self) -> dict[str, RecordsRequest]:
        day, week = self.day, self.week
        return {
            "point": RecordsRequest(
                where=f"sensor_id = '{self.sensor}' and timestamp >= date'{day[0]}' and timestamp < date'{day[1]}'",
                limit=1000),
            "groupby": RecordsRequest(
                select="date_trunc('hour', timestamp) as hour, district, avg(free) as mean_free",
                where=f"timestamp >= '{week[0]}' and timestamp < '{week[1]}'",
                group_by="date_trunc('hour', timestamp) as hour, district", order_by="hour, district", limit=10_000),
            "topn": RecordsRequest(where=f"timestamp = '{self.moment}'", order_by="free desc, sensor_id", limit=10),
            "count": RecordsRequest(select="count(*) as n", where=f"district = '{self.district}' and free < 10",
                                    limit=10),
        }

    def records_query_strings(self) -> dict[str, str]:
        """The same requests as records-endpoint query strings."""
        out = {}
        for name, req in self.records_requests().items():
            params = {k: v for k, v in (("select", req.select), ("where", req.where), ("group_by", req.group_by),
                                        ("order_by", req.order_by), ("limit", req.limit)) if v is not None}
            out[name] = urlencode(params)
        return out

    # --- PostgreSQL (CKAN DataStore table) --------------------------------------
    def postgres(self, table: str) -> dict[str, tuple[str, list[Any]]]:
        cols = '"sensor_id", "lot_id", "district", "timestamp", "occupied", "free", "lon", "lat"'
        day, week = self.day, self.week
        return {
            "point": (f'SELECT {cols} FROM {table} WHERE sensor_id = %s AND "timestamp" >= %s AND "timestamp" < %s '
                      "LIMIT 1000", [self.sensor, day[0], day[1]]),
            "groupby": (f"SELECT date_trunc('hour', \"timestamp\") AS hour, district, avg(free) AS mean_free FROM {table} "
                        'WHERE "timestamp" >= %s AND "timestamp" < %s GROUP BY 1, 2 ORDER BY 1, 2', list(week)),
            "topn": (f'SELECT {cols} FROM {table} WHERE "timestamp" = %s ORDER BY free DESC, sensor_id LIMIT 10',
                     [self.moment]),
            "count": (f"SELECT count(*) FROM {table} WHERE district = %s AND free < 10", [self.district]),
        }

    # --- SQLite (Datasette's table) ---------------------------------------------
    def sqlite(self) -> dict[str, tuple[str, list[Any]]]:
        day, week = self.day, self.week
        return {
            "point": ("SELECT * FROM parking WHERE sensor_id = ? AND timestamp >= ? AND timestamp < ? LIMIT 1000",
                      [self.sensor, day[0] + "T00:00:00", day[1] + "T00:00:00"]),
            "groupby": ("SELECT substr(timestamp, 1, 13) || ':00:00' AS hour, district, avg(free) AS mean_free "
                        "FROM parking WHERE timestamp >= ? AND timestamp < ? GROUP BY 1, 2 ORDER BY 1, 2", list(week)),
            "topn": ("SELECT * FROM parking WHERE timestamp = ? ORDER BY free DESC, sensor_id LIMIT 10", [self.moment]),
            "count": ("SELECT count(*) FROM parking WHERE district = ? AND free < 10", [self.district]),
        }

    # --- polars over the same Parquet files -------------------------------------
    def polars(self, parts: list[str]) -> dict[str, Callable[[], Any]]:
        import polars as pl

        lf = pl.scan_parquet(parts)
        day = [datetime.fromisoformat(d) for d in self.day]
        week = [datetime.fromisoformat(w) for w in self.week]
        moment = datetime.fromisoformat(self.moment)
        ts = pl.col("timestamp")
        return {
            "point": lambda: lf.filter((pl.col("sensor_id") == self.sensor) & (ts >= day[0]) & (ts < day[1]))
            .head(1000).collect(),
            "groupby": lambda: lf.filter((ts >= week[0]) & (ts < week[1]))
            .group_by(ts.dt.truncate("1h").alias("hour"), "district").agg(pl.col("free").mean().alias("mean_free"))
            .sort("hour", "district").collect(),
            "topn": lambda: lf.filter(ts == moment).sort(["free", "sensor_id"], descending=[True, False]).head(10)
            .collect(),
            "count": lambda: lf.filter((pl.col("district") == self.district) & (pl.col("free") < 10))
            .select(pl.len()).collect(),
        }


def result_size(payload: str) -> int:
    """Rows in a records response body."""
    return len(json.loads(payload)["results"])
