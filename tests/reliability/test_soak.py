"""The soak run (tests/reliability/soak.py) for 30 s: mixed reads from two real servers while harvests
append data, one harvest in three and the second server are SIGKILLed, every version hash-checked at
intervals; the steady server's memory, open files and the temp space stay within the stated bounds.

The full run is ``python -m tests.reliability.soak --minutes 20``; ``URBANDATA_SOAK_SECONDS`` lengthens this one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.soak import problems, run_soak

SECONDS = float(os.environ.get("URBANDATA_SOAK_SECONDS", "30"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SECONDS + 280)]  # plus building the demo city, two servers


def test_a_soak_keeps_every_version_whole_and_the_server_flat(tmp_path: Path) -> None:
    report = run_soak(tmp_path, SECONDS, clients=4)
    print("\nsoak:", json.dumps({k: v for k, v in report.items() if k != "samples"}))
    assert problems(report) == []
    assert report["requests"].get("2xx", 0) > 0 and report["server_kills"] >= 1
    assert report["harvests"].get("exit 0", 0) >= 1 and len(report["hash_checks"]) >= 2
