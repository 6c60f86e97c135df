"""The CKAN Action API in /openapi.json (api/openapi_ckan.py): its routes under their tag, CKAN's envelopes
as their models, the registered actions as the enum, and examples and errors that are the real answers."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from api.openapi_ckan import ANSWER_SCHEMA, CKAN_ANSWER, CKAN_ERROR, ERROR_SCHEMA, TAG
from api.routes.ckan_calls import ACTIONS
from api.routes.ckan_datastore import DUMP_FORMATS

pytestmark = pytest.mark.anyio
ACTION = "/api/3/action/{name}"
ROUTES = {ACTION: {"get", "post"}, "/api/action/{name}": {"get", "post"}, "/datastore/dump/{resource_id}": {"get"}}


async def _document(api: httpx.AsyncClient) -> dict[str, Any]:
    return (await api.get("/openapi.json")).json()  # type: ignore[no-any-return]


async def test_the_ckan_routes_are_documented_under_their_tag_with_ckans_envelopes(api: httpx.AsyncClient) -> None:
    document = await _document(api)
    tagged = {path: set(ops) for path, ops in document["paths"].items()
              for op in ops.values() if TAG in op.get("tags", ())}
    assert tagged == ROUTES
    assert TAG in [t["name"] for t in document["tags"]]
    schemas = document["components"]["schemas"]
    assert (schemas[CKAN_ANSWER], schemas[CKAN_ERROR]) == (ANSWER_SCHEMA, ERROR_SCHEMA)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))  # one id per operation (GET and POST of one path too)
    for path, methods in ROUTES.items():
        for method in methods:
            operation = document["paths"][path][method]
            assert operation["tags"] == [TAG] and operation["description"], (method, path)
            for status in ("404", "409"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{CKAN_ERROR}"}, (method, path, status)
            parameters = {p["name"]: p for p in operation["parameters"]}
            if path.endswith("{name}"):
                assert parameters["name"]["schema"]["enum"] == sorted(ACTIONS)
                answer = operation["responses"]["200"]["content"]["application/json"]
                assert answer["schema"] == {"$ref": f"#/components/schemas/{CKAN_ANSWER}"}
                assert ("requestBody" in operation) == (method == "post") == ("413" in operation["responses"])
            else:
                assert parameters["format"]["schema"]["enum"] == list(DUMP_FORMATS)


async def test_the_documented_examples_are_the_real_answers(api: httpx.AsyncClient) -> None:
    document = await _document(api)
    examples = document["paths"][ACTION]["get"]["responses"]["200"]["content"]["application/json"]["examples"]
    calls = {"status_show": {}, "package_list": {"limit": "3"},
             "datastore_search": {"resource_id": "car-parks", "limit": "1", "fields": "lot_id,capacity"}}
    assert set(examples) == set(calls)
    for action, params in calls.items():
        answer = (await api.get(f"/api/3/action/{action}", params=params)).json()
        jsonschema.validate(answer, ANSWER_SCHEMA)
        example = examples[action]["value"]
        jsonschema.validate(example, ANSWER_SCHEMA)
        result, shown = answer["result"], example["result"]
        if action == "status_show":
            assert {**result, "site_url": shown["site_url"]} == shown
        elif action == "package_list":
            assert result == shown
        else:
            assert result == shown, result


async def test_the_documented_errors_are_the_ones_sent(api: httpx.AsyncClient) -> None:
    document = await _document(api)
    responses = document["paths"][ACTION]["get"]["responses"]
    cases = [("400", "/api/3/action/package_shwo", {}), ("404", "/api/3/action/package_show", {"id": "no-such-dataset"}),
             ("409", "/api/3/action/package_show", {}), ("404", "/datastore/dump/no-such-dataset", {}),
             ("409", "/datastore/dump/car-parks", {"format": "yaml"})]
    for status, path, params in cases:
        answer = await api.get(path, params=params)
        assert answer.status_code == int(status), (path, params, answer.text[:200])
        jsonschema.validate(answer.json(), ERROR_SCHEMA)
        documented = responses[status]["content"]["application/json"]["example"]["error"]["__type"]
        assert answer.json()["error"]["__type"] == documented, (path, params)
    # The server's own check, before any route, answers in the hub's envelope, as the 400 documents too.
    answer = await api.get("/api/3/action/package_show?id=%FF")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid-parameter"
    assert {"$ref": "#/components/schemas/ErrorEnvelope"} in responses["400"]["content"]["application/json"]["schema"]["oneOf"]
