"""Deliveries fuzzed with hypothesis (issue 13): whatever a careless feed sends, ingest ends in an outcome, never a crash.

Each generated delivery (CSV in either delimiter and declared encoding, or a JSON
array) is ingested into a catalogue that already has a version. The outcome must
be published, unchanged or quarantined; a quarantined delivery has a report with
at least one error and leaves the current version exactly as it was; a published
one is a new version whose rows are the delivered ones.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Dataset
from catalogue.store.keys import part_key

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "amount", "type": "number", "decimalChar": ","},
        {"name": "day", "type": "date", "format": "%d.%m.%Y"},
        {"name": "ts", "type": "datetime"},
        {"name": "flag", "type": "boolean", "trueValues": ["ja"], "falseValues": ["nein"]},
        {"name": "name", "type": "string"},
    ],
    "primaryKey": ["id"],
}
NAMES = [f["name"] for f in SCHEMA["fields"]]
FIRST = b"id;amount;day;ts;flag;name\n1;1,5;01.02.2026;2026-02-01T10:00:00;ja;Anna\n"

# Cells: valid values of every field's kind, near misses, and hostile text.
CELLS = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: str(f).replace(".", ",")),
    st.dates().map(lambda d: d.strftime("%d.%m.%Y")),
    st.dates().map(lambda d: d.strftime("%d.%m.%y")),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["ja", "nein", "true", "", "NA", "Müller „Straße“", "=1+1", "\x00", "a\nb", 'x"y', ";", "\ufeff"]),
    st.text(max_size=12),
)
HEADERS = st.one_of(
    st.just(NAMES),
    st.permutations(NAMES),
    st.lists(st.sampled_from([*NAMES, "", "extra", "id"]), min_size=1, max_size=8),
)


@st.composite
def csv_delivery(draw: Any) -> tuple[bytes, dict[str, Any]]:
    header = draw(HEADERS)
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=6))
    delimiter = draw(st.sampled_from([";", ","]))
    encoding = draw(st.sampled_from(["utf-8", "cp1252"]))
    written_in = draw(st.sampled_from(["utf-8", "cp1252"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    body = out.getvalue().encode(written_in, errors="replace")
    return body, {"delimiter": delimiter, "encoding": encoding}


@st.composite
def json_delivery(draw: Any) -> tuple[bytes, dict[str, Any]]:
    keys = st.sampled_from([*NAMES, "extra"])
    values = st.one_of(CELLS, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2))
    rows = draw(st.lists(st.dictionaries(keys, values, max_size=8), max_size=6))
    return json.dumps(rows, ensure_ascii=draw(st.booleans())).encode(), {}


def current_state(hub: Hub, name: str) -> tuple[int, str, int]:
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        assert dataset is not None and dataset.current_version is not None
        version = dataset.current_version
        stored = sum(pq.ParquetFile(hub.storage.open_read(part_key(name, p["sha256"]))).metadata.num_rows
                     for p in version.parts)
        assert stored == version.row_count
        return version.number, version.content_hash, version.row_count


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path_factory.mktemp("fuzz"))
    make = next(maker)
    hub = make("fuzzed", SCHEMA, FIRST, options={"delimiter": ";"})
    yield hub
    maker.close()


def check_outcome(hub: Hub, content: bytes, fmt: str, options: dict[str, Any]) -> None:
    before = current_state(hub, "fuzzed")
    result = ingest_delivery(hub, "fuzzed", Delivery(content, fmt, options, "replace", {"source_url": "fuzz"}))
    assert result.status in {"published", "unchanged", "quarantined"}
    after = current_state(hub, "fuzzed")
    if result.status == "quarantined":
        assert result.report["stats"]["errors"] >= 1 and result.report["valid"] is False
        assert after == before
    elif result.status == "unchanged":
        assert after == before
    else:
        assert after[0] == before[0] + 1 and after[2] == result.rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(delivery=csv_delivery())
def test_any_csv_delivery_ends_published_unchanged_or_quarantined(fuzz_hub: Hub,
                                                                   delivery: tuple[bytes, dict[str, Any]]) -> None:
    check_outcome(fuzz_hub, delivery[0], "csv", delivery[1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(delivery=json_delivery())
def test_any_json_delivery_ends_published_unchanged_or_quarantined(fuzz_hub: Hub,
                                                                    delivery: tuple[bytes, dict[str, Any]]) -> None:
    check_outcome(fuzz_hub, delivery[0], "json", delivery[1])
