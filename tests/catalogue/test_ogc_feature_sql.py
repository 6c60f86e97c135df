"""OGC API items: the features DuckDB renders (catalogue.query.ogc_features.feature_sql) are, text for
JSON value, the ones ogc_features.features makes in Python from the records."""

from __future__ import annotations

import json

from catalogue.hub import Hub
from catalogue.query.engine import QueryEngine
from catalogue.query.ogc_features import feature_sql, features
from catalogue.query.records import RecordsRequest, plan_records, run_records


def test_features_made_in_duckdb_are_the_ones_made_in_python(demo_hub: Hub) -> None:
    engine = QueryEngine(demo_hub)
    try:
        rendered = {}
        for name in ("car-parks", "city-districts", "groundwater-levels", "parking-occupancy"):
            ref = engine.version(name)
            render = feature_sql(ref.schema)
            rendered[name] = render is not None
            if render is None:
                continue
            plan = plan_records(RecordsRequest(limit=1000, offset=0), ref.schema, list(ref.uris), ref.number,
                                row_count=ref.row_count)
            plain = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=1000,
                                                       time_limit_ms=10_000))
            made = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=1000,
                                                      time_limit_ms=10_000, render=render))
            assert json.loads(made["results_json"]) == features(ref.schema, plain["results_json"], 1), name
            assert made["returned"] == plain["returned"] == ref.row_count > 0, name
    finally:
        engine.close()
    # keys of text or whole numbers render in DuckDB; a time in the key (the two time series) stays in Python
    assert rendered == {"car-parks": True, "city-districts": True, "groundwater-levels": False,
                        "parking-occupancy": False}
