"""JSON-family deliveries are read in bounded memory: a file many times the batch budget raises a fresh process's
peak RSS by a small fraction of its size (reading it whole took several times its size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import pytest

ROWS = 200_000  # about 24 MB of NDJSON: 12 times the one-pass size and 90 times the batch budget set below
PROBE = r"""
import json, resource, sys
from pathlib import Path
from catalogue.ingest import json_stream, readers
json_stream.BATCH_ROWS, json_stream.BATCH_CHARS, json_stream.ONE_PASS_BYTES = 2000, 256 << 10, 2 << 20
fmt, big, small, options = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])

def read(path):
    raw = readers.open_delivery(path, fmt, options, readers.NO_FIELDS, exact_types=False)
    return sum(batch.num_rows for batch in raw.batches), raw.labels

read(small)  # the first reading's imports and allocator arenas are not the reader's to answer for
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows, labels = read(big)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "labels": labels, "growth": (peak - before) * 1024}))
"""


def _record(i: int) -> dict[str, Any]:
    return {"id": i, "station": f"S-{i % 97}", "ts": f"2026-11-{1 + i % 28:02d}T10:00:00Z", "value": i * 0.25,
            "note": "Messstelle Nord " * (1 + i % 4)}


def _write(path: Path, fmt: str, rows: int) -> None:
    """A delivery of ``rows`` records in ``fmt``, written as it is made."""
    with path.open("w", encoding="utf-8") as out:
        if fmt == "ndjson":
            for i in range(rows):
                out.write(json.dumps(_record(i)) + "\n")
        elif fmt == "json":
            _array(out, '{"meta": {"rows": %d}, "data": {"items": [' % rows, rows, _record, "]}}")
        else:
            _array(out, '{"type": "FeatureCollection", "features": [', rows, lambda i: {
                "type": "Feature", "geometry": {"type": "Point", "coordinates": [9.9 + i * 1e-6, 53.5]},
                "properties": _record(i)}, "]}")


def _array(out: TextIO, head: str, rows: int, item: Any, tail: str) -> None:
    out.write(head)
    for i in range(rows):
        out.write(("," if i else "") + "\n" + json.dumps(item(i)))
    out.write(tail)


@pytest.mark.parametrize(("fmt", "options"), [
    ("ndjson", {}), ("json", {"record_path": "data.items"}), ("geojson", {})])
def test_a_large_json_delivery_is_read_in_bounded_memory(tmp_path: Path, fmt: str, options: dict[str, Any]) -> None:
    big, small = tmp_path / f"big.{fmt}", tmp_path / f"small.{fmt}"
    _write(big, fmt, ROWS)
    _write(small, fmt, ROWS // 10)
    size = big.stat().st_size
    done = subprocess.run([sys.executable, "-c", PROBE, fmt, str(big), str(small), json.dumps(options)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    expected = [*_record(0)] if fmt != "geojson" else [*_record(0), "geometry"]
    assert (found["rows"], found["labels"]) == (ROWS, expected)
    # Read whole, the text alone would be the file's size (and its Python objects several times that).
    assert found["growth"] < size / 4, f"peak RSS grew by {found['growth'] / 1e6:.1f} MB reading {size / 1e6:.1f} MB"
