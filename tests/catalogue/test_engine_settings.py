"""The query engine's DuckDB settings are the database's: set once when the engine opens, never per query."""

from __future__ import annotations

from pathlib import Path

from catalogue.hub import open_hub
from catalogue.query.engine import QueryEngine
from catalogue.settings import Settings


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
