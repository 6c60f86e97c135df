"""Schemathesis against /openapi.json: every operation, valid and invalid inputs, never a 5xx.

The fast variant runs in the normal suite with a few examples per operation; the long one
runs with ``URBANDATA_FUZZ_EXAMPLES=<n> python -m pytest -m fuzz tests/api/test_fuzz.py``
(README, "Fuzzing"). A 4xx must come in the JSON error envelope (on the CKAN Action API, CKAN's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from api.app import create_app
from api.openapi_ckan import TAG
from catalogue.hub import Hub

FAST_EXAMPLES = 10
LONG_EXAMPLES = int(os.environ.get("URBANDATA_FUZZ_EXAMPLES", "0"))
DATASETS = ["car-parks", "parking-occupancy", "waste-containers", "groundwater-levels"]
# Known 5xx in areas other engineers are fixing (issue 13): a text in the failure line -> the item.
# The fast test is marked xfail only for these, naming the item; any other failure fails it.
# (The first run found `SELECT 'é' +` answering 500 through the SQL tokenizer; fixed in 32c0f85.)
KNOWN_ELSEWHERE: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_app(demo_hub: Hub) -> Iterator[Any]:
    app = create_app(demo_hub.settings, demo_hub)
    yield app
    app.state.query_engine.close()
    app.state.sql_pool.close()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def _aim_at_real_datasets(case: Any) -> None:
    """Point about half the cases at a real dataset, so their parameters reach the query engine.

    Random names only ever meet 404 dataset-not-found; the choice follows the generated name so
    a failing example replays the same way.
    """
    path = case.path_parameters or {}
    if isinstance(path.get("name"), str) and len(path["name"]) % 2 == 0 and "/publishers/" not in case.path:
        path["name"] = DATASETS[len(path["name"]) // 2 % len(DATASETS)]


def _check(case: Any) -> None:
    _aim_at_real_datasets(case)
    response = case.call()
    label = f"{case.method} {case.formatted_path} {case.query!r}"
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and case.method != "HEAD":
        body = response.json()
        if TAG in (case.operation.tags or ()) and set(body) == {"help", "success", "error"}:  # CKAN's envelope
            assert body["success"] is False and body["error"]["__type"] and body["error"]["message"], label
            return
        error = body["error"]
        assert (error["status"], bool(error["code"]), bool(error["message"])) == (response.status_code, True, True), label


def _fuzz(schema: Any, examples: int, *, derandomize: bool) -> list[str]:
    """Run ``examples`` valid and ``examples`` invalid cases of every operation; the failures, one line each.

    Schemathesis' own pytest integration (``from_fixture``) does not run under pytest 9, so the
    operations are walked here, each mode a Hypothesis test of its own.
    """
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=derandomize, database=None, phases=[Phase.generate, Phase.shrink])
            @given(operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                _check(case)

            try:
                run()
            except Unsatisfiable:
                continue  # no invalid input exists for this operation (only free-text parameters)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, then the test fails
                failures.append(f"{operation.label} [{mode.value}]: {str(exc).splitlines()[0][:400]}")
    return failures


def test_no_operation_answers_a_server_error(fuzz_schema: Any) -> None:
    failures = _fuzz(fuzz_schema, FAST_EXAMPLES, derandomize=True)
    known = [f for f in failures if any(k in f for k in KNOWN_ELSEWHERE)]
    assert [f for f in failures if f not in known] == []
    if known:
        pytest.xfail("; ".join(f"{KNOWN_ELSEWHERE[k]}: {f}" for f in known for k in KNOWN_ELSEWHERE if k in f))


@pytest.mark.fuzz
@pytest.mark.timeout(0)  # as long as the examples asked for take
@pytest.mark.skipif(LONG_EXAMPLES == 0, reason="the long fuzz run: set URBANDATA_FUZZ_EXAMPLES (README, Fuzzing)")
def test_no_operation_answers_a_server_error_long(fuzz_schema: Any) -> None:
    assert _fuzz(fuzz_schema, LONG_EXAMPLES, derandomize=False) == []
