"""The query engine's DuckDB settings are the database's: set once when the engine opens, never per query;
the spatial extension is loaded when geometry is read (a site build without geometry never loads it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalogue.hub import open_hub
from catalogue.query.engine import QueryEngine
from catalogue.settings import Settings
from catalogue.sitegen.data_files import VersionData


def test_pages_in_stored_order_run_without_late_materialization_on_every_cursor(tmp_path: Path) -> None:
    hub = open_hub(Settings(data_dir=tmp_path / "var"))
    engine = QueryEngine(hub)
    try:
        found = [engine.run(lambda cur: cur.execute("SELECT current_setting('disabled_optimizers')").fetchone())
                 for _ in range(2)]
        assert found == [("late_materialization",)] * 2
        part = tmp_path / "part.parquet"
        engine.run(lambda cur: cur.execute(
            f"COPY (SELECT i, i * 2 AS j FROM range(5000) t(i)) TO '{part}' (FORMAT parquet)"))
        plan = engine.run(lambda cur: cur.execute(
            f"EXPLAIN SELECT * FROM read_parquet('{part}', filename=true, file_row_number=true) LIMIT 100").fetchall())
        assert "SEMI" not in str(plan) and "READ_PARQUET" in str(plan)  # one scan, no join back to it
    finally:
        engine.close()
        hub.close()


PLAIN = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"}], "primaryKey": ["id"]}
PLACES = {"fields": [{"name": "id", "type": "integer"}, {"name": "place", "type": "geopoint"}], "primaryKey": ["id"]}


def spatial_loaded(engine: QueryEngine) -> bool:
    found = engine.run(lambda cur: cur.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'spatial'").fetchone())
    return bool(found and found[0])


def test_a_site_build_loads_the_spatial_extension_only_for_a_version_with_geometry(make_catalogue: Any) -> None:
    make_catalogue("plain", PLAIN, b"id,label\n1,eins\n2,zwei\n")
    hub = make_catalogue("places", PLACES, b'id,place\n1,"9.99712, 53.55324"\n2,"10.0, 53.5"\n')
    data = VersionData(hub)
    try:
        plain = data.facts(data.engine.version("plain"), has_geometry=False)
        assert plain["preview"]["rows"] == [[1, "eins"], [2, "zwei"]]
        assert not spatial_loaded(data.engine)  # ~0.3 s saved: no geometry read yet
        places = data.facts(data.engine.version("places"), has_geometry=True)
        assert spatial_loaded(data.engine)
        assert [f["geometry"] for f in places["map"]["features"]] == [
            {"type": "Point", "coordinates": [9.99712, 53.55324]}, {"type": "Point", "coordinates": [10.0, 53.5]}]
        assert places["sizes"]["geojson"] > 0
    finally:
        data.close()
