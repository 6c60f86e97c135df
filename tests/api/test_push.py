"""Pushed deliveries over a real uvicorn server: formats, modes, answers, Idempotency-Key, If-Match, size caps, tokens."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from catalogue.hub import Hub
from catalogue.ingest.delivery import MODES
from catalogue.meta.models import ApiToken, utcnow
from catalogue.meta.tokens import revoke_token, verify_token
from tests.api.push_support import bearer, push_hub, serving_api, token

CAP = 4096
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with push_hub(tmp_path, push_max_bytes=CAP) as hub:
        yield hub


@pytest.fixture
def api(hub: Hub) -> Iterator[str]:
    with serving_api(hub) as url:
        yield url


@pytest.fixture
def pusher(hub: Hub) -> dict[str, str]:
    return bearer(token(hub, "stadtwerke", "push"))


def _current(api: str, name: str = "meters") -> int:
    return int(httpx.get(f"{api}/datasets/{name}").json()["current_version"])


def _rows(api: str, name: str = "meters") -> list[dict[str, object]]:
    return httpx.get(f"{api}/datasets/{name}/records", params={"order_by": "id"}).json()["results"]


def _parquet(rows: dict[str, list[object]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table(rows), out)
    return out.getvalue()


METERS_JSON = [{"id": 1, "name": "Nord", "value": 10.5}, {"id": 2, "name": "Mitte", "value": 20.5}]
BODIES = {
    "csv": (b"id,name,value\n1,Nord,10.5\n2,Mitte,20.5\n", {"Content-Type": "text/csv; charset=utf-8"}, {}),
    "json": (json.dumps(METERS_JSON).encode(), {"Content-Type": "application/json"}, {}),
    "ndjson": ("\n".join(json.dumps(r) for r in METERS_JSON).encode(), {"Content-Type": "application/x-ndjson"}, {}),
    "parquet": (_parquet({"id": [1, 2], "name": ["Nord", "Mitte"], "value": [10.5, 20.5]}),
                {"Content-Type": "application/octet-stream"}, {"format": "parquet"}),
}


@pytest.mark.parametrize("fmt", sorted(BODIES))
def test_each_format_is_published_as_the_next_version(api: str, pusher: dict[str, str], fmt: str) -> None:
    body, headers, params = BODIES[fmt]
    answer = httpx.post(f"{api}/datasets/meters/deliveries", content=body, params=params, headers={**pusher, **headers})
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert (result["status"], result["version"], result["rows"]) == ("published", 2, 2)
    assert result["changes"] == {"added": 0, "removed": 1, "changed": 2}
    assert answer.headers["ETag"] == '"2"' and answer.headers["Location"].endswith("/datasets/meters/versions/2")
    assert [(r["id"], r["value"]) for r in _rows(api)] == [(1, 10.5), (2, 20.5)]
    delivery = httpx.get(f"{api}/datasets/meters/deliveries").json()["results"][0]
    assert (delivery["id"], delivery["status"], delivery["version"]) == (result["delivery"], "published", 2)


def test_geojson_is_published(api: str, pusher: dict[str, str]) -> None:
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [9.2, 48.8]},
               "properties": {"id": 2, "name": "Bahnhof"}}
    body = json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()
    answer = httpx.post(f"{api}/datasets/places/deliveries", content=body,
                        headers={**pusher, "Content-Type": "application/geo+json"})
    assert (answer.status_code, answer.json()["rows"]) == (201, 1), answer.text
    assert [r["name"] for r in _rows(api, "places")] == ["Bahnhof"]


def test_append_adds_rows_and_the_same_rows_again_are_unchanged(api: str, pusher: dict[str, str]) -> None:
    body = b"id,name,value\n4,West,4.5\n"
    added = httpx.post(f"{api}/datasets/meters/deliveries", params={"mode": "append"}, content=body,
                       headers={**pusher, **CSV})
    assert (added.status_code, added.json()["version"], added.json()["rows"]) == (201, 2, 4), added.text
    again = httpx.post(f"{api}/datasets/meters/deliveries", params={"mode": "append"}, content=body,
                       headers={**pusher, **CSV})
    assert (again.status_code, again.json()["status"], again.json()["version"]) == (200, "unchanged", 2), again.text
    assert "ETag" in again.headers and "Location" not in again.headers
    assert [r["id"] for r in _rows(api)] == [1, 2, 3, 4]


def test_replace_with_the_current_rows_is_unchanged(api: str, pusher: dict[str, str]) -> None:
    answer = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id,name,value\n1,Nord,1.5\n2,Mitte,2.5\n3,Sued,3.5\n",
                        headers={**pusher, **CSV})
    assert (answer.status_code, answer.json()["status"], answer.json()["version"]) == (200, "unchanged", 1)


def test_upsert_goes_to_the_pipelines_upsert_and_an_unknown_mode_is_a_400(api: str, pusher: dict[str, str]) -> None:
    answer = httpx.post(f"{api}/datasets/meters/deliveries", params={"mode": "upsert"}, content=b"id,name,value\n9,X,1\n",
                        headers={**pusher, **CSV})
    assert "upsert" in MODES and answer.status_code == 201, answer.text  # the one upsert, in the pipeline
    assert [r["id"] for r in _rows(api)] == [1, 2, 3, 9]
    changed = httpx.post(f"{api}/datasets/meters/deliveries", params={"mode": "upsert"},
                         content=b"id,name,value\n2,Mitte,0.5\n", headers={**pusher, **CSV})
    assert changed.status_code == 201 and [(r["id"], r["value"]) for r in _rows(api)][1] == (2, 0.5)
    unknown = httpx.post(f"{api}/datasets/meters/deliveries", params={"mode": "merge"}, content=b"id\n1\n",
                         headers={**pusher, **CSV})
    assert unknown.status_code == 400 and "replace" in unknown.json()["error"]["message"]


def test_invalid_rows_are_a_422_with_the_report_and_the_current_version_stays(api: str, pusher: dict[str, str]) -> None:
    before = _rows(api)
    answer = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id,name,value\n1,Nord,viel\nzwei,Mitte,2\n",
                        headers={**pusher, **CSV})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["details"]["current_version"]) == ("delivery-invalid", 1)
    found = {(e["row"], e["field"]) for e in error["details"]["errors"]}
    assert found == {(2, "value"), (3, "id")} and all(e["message"] for e in error["details"]["errors"])
    assert (_current(api), _rows(api)) == (1, before)
    report = httpx.get(error["details"]["report_url"].replace("http://127.0.0.1:8000/api/v1", api))
    assert report.status_code == 200 and report.json()["valid"] is False
    delivery = httpx.get(f"{api}/datasets/meters/deliveries").json()["results"][0]
    assert (delivery["id"], delivery["status"]) == (error["details"]["delivery"], "quarantined")


def test_an_unreadable_body_and_an_unknown_media_type_are_refused(api: str, pusher: dict[str, str]) -> None:
    broken = httpx.post(f"{api}/datasets/meters/deliveries", content=b"PAR1 not really", params={"format": "parquet"},
                        headers=pusher)
    assert (broken.status_code, broken.json()["error"]["code"]) == (422, "delivery-invalid")
    unknown = httpx.post(f"{api}/datasets/meters/deliveries", content=b"<rows/>",
                         headers={**pusher, "Content-Type": "application/xml"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (415, "unsupported-delivery-format")
    assert _current(api) == 1


def test_the_same_idempotency_key_and_body_answer_the_first_result_again(api: str, pusher: dict[str, str]) -> None:
    key = {"Idempotency-Key": "2026-12-05-parking-0001"}
    body = b"id,name,value\n1,Nord,9.5\n"
    first = httpx.post(f"{api}/datasets/meters/deliveries", content=body, headers={**pusher, **CSV, **key})
    again = httpx.post(f"{api}/datasets/meters/deliveries", content=body, headers={**pusher, **CSV, **key})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert (again.headers["ETag"], again.headers["Location"]) == (first.headers["ETag"], first.headers["Location"])
    assert _current(api) == 2 and len(httpx.get(f"{api}/datasets/meters/versions").json()["results"]) == 2
    other = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id,name,value\n1,Nord,0\n",
                       headers={**pusher, **CSV, **key})
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency-key-reused")
    assert "another body" in other.json()["error"]["message"] and _current(api) == 2
    invalid = {"Idempotency-Key": "bad"}
    bad_rows = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id\nx\n", headers={**pusher, **CSV, **invalid})
    replay = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id\nx\n", headers={**pusher, **CSV, **invalid})
    assert (bad_rows.status_code, replay.status_code, replay.json()) == (422, 422, bad_rows.json())


def test_a_push_based_on_a_stale_version_is_a_409_naming_the_current_one(api: str, pusher: dict[str, str]) -> None:
    based = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id,name,value\n1,Nord,5\n",
                       headers={**pusher, **CSV, "If-Match": '"1"'})
    assert based.status_code == 201 and based.json()["version"] == 2
    stale = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id,name,value\n1,Nord,6\n",
                       headers={**pusher, **CSV, "If-Match": '"1"'})
    assert stale.status_code == 409, stale.text
    error = stale.json()["error"]
    assert (error["code"], error["details"]["current_version"]) == ("base-version-conflict", 2)
    assert "version 2" in error["message"] and _rows(api)[0]["value"] == 5
    malformed = httpx.post(f"{api}/datasets/meters/deliveries", content=b"id\n1\n", headers={**pusher, **CSV, "If-Match": "v1"})
    assert malformed.status_code == 400 and "If-Match" in malformed.json()["error"]["message"]


def test_of_two_concurrent_pushes_on_one_base_one_wins_and_the_other_gets_409(api: str, pusher: dict[str, str]) -> None:
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def push(value: int) -> None:
        body = f"id,name,value\n1,Nord,{value}\n2,Mitte,{value}\n".encode()
        start.wait()
        answers.append(httpx.post(f"{api}/datasets/meters/deliveries", content=body,
                                  headers={**pusher, **CSV, "If-Match": '"1"'}, timeout=60))

    threads = [threading.Thread(target=push, args=(v,)) for v in (100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 201).json()
    loser = next(a for a in answers if a.status_code == 409).json()["error"]
    assert loser["details"]["current_version"] == winner["version"] == 2 == _current(api)
    assert len({r["value"] for r in _rows(api)}) == 1  # the winner's rows, whole: nothing of the other


def test_ten_concurrent_appends_without_if_match_all_land(api: str, pusher: dict[str, str]) -> None:
    """Appends not pinned to a base take turns: none is refused with commit-conflict, no row is lost."""
    answers: list[httpx.Response] = []
    start = threading.Barrier(10)

    def push(number: int) -> None:
        body = f"id,name,value\n{100 + number},Neu{number},{number}.5\n".encode()
        start.wait()
        answers.append(httpx.post(f"{api}/datasets/meters/deliveries", content=body, params={"mode": "append"},
                                  headers={**pusher, **CSV}, timeout=120))

    threads = [threading.Thread(target=push, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * 10, [a.text[:200] for a in answers]
    assert sorted(a.json()["version"] for a in answers) == list(range(2, 12)) and _current(api) == 11
    assert {r["id"] for r in _rows(api)} == {1, 2, 3} | set(range(100, 110))


def test_a_body_over_the_cap_is_a_413_before_reading_or_while_streaming(api: str, pusher: dict[str, str]) -> None:
    big = b"id,name,value\n" + b"".join(f"{i},Zaehler {i},{i}.5\n".encode() for i in range(1000))
    assert len(big) > CAP
    declared = httpx.post(f"{api}/datasets/meters/deliveries", content=big, headers={**pusher, **CSV})
    assert (declared.status_code, declared.json()["error"]["code"]) == (413, "delivery-too-large")
    assert f"{len(big):,} bytes" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(big), 512):
            yield big[start:start + 512]

    streamed = httpx.post(f"{api}/datasets/meters/deliveries", content=chunks(), headers={**pusher, **CSV})
    assert (streamed.status_code, streamed.json()["error"]["code"]) == (413, "delivery-too-large")
    assert "more than" in streamed.json()["error"]["message"]
    assert _current(api) == 1
    small = httpx.post(f"{api}/datasets/meters/deliveries", content=iter([b"id,name,value\n", b"1,Nord,8\n"]),
                       headers={**pusher, **CSV})
    assert small.status_code == 201, small.text  # chunked under the cap is fine


def test_tokens_other_publishers_revoked_tokens_and_missing_scopes_are_refused(hub: Hub, api: str) -> None:
    body, url = b"id,name,value\n1,Nord,1\n", f"{api}/datasets/meters/deliveries"
    wrong = httpx.post(url, content=body, headers={**bearer(token(hub, "testamt", "push")), **CSV})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "wrong-publisher")
    reader = httpx.post(url, content=body, headers={**bearer(token(hub, "stadtwerke", "read-private")), **CSV})
    assert (reader.status_code, reader.json()["error"]["code"]) == (403, "missing-scope")
    nobody = httpx.post(url, content=body, headers=CSV)
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "token-missing")
    revoked = token(hub, "stadtwerke", "push")
    revoke_token(hub, verify_token(hub, revoked).token_id)
    refused = httpx.post(url, content=body, headers={**bearer(revoked), **CSV})
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token-revoked")
    expired = token(hub, "stadtwerke", "push")
    with hub.sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.id == verify_token(hub, expired).token_id)
                        .values(expires_at=utcnow() - timedelta(minutes=1)))
    late = httpx.post(url, content=body, headers={**bearer(expired), **CSV})
    assert (late.status_code, late.json()["error"]["code"]) == (401, "token-expired")
    assert "expired at" in late.json()["error"]["message"] and late.headers["WWW-Authenticate"].startswith("Bearer")
    missing = httpx.post(f"{api}/datasets/nope/deliveries", content=body, headers={**bearer(token(hub, "stadtwerke", "push")), **CSV})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "dataset-not-found")
    assert _current(api) == 1


def test_a_private_dataset_takes_pushes_from_its_publisher_and_is_a_404_to_others(hub: Hub, api: str,
                                                                                  pusher: dict[str, str]) -> None:
    body, url = b"id,name,value\n8,Geheim,8.5\n", f"{api}/datasets/secret-meters/deliveries"
    other = httpx.post(url, content=body, headers={**bearer(token(hub, "testamt", "push", "read-private")), **CSV})
    assert (other.status_code, other.json()["error"]["code"]) == (404, "dataset-not-found")
    own = httpx.post(url, content=body, headers={**pusher, **CSV})
    assert (own.status_code, own.json()["version"]) == (201, 2), own.text


def test_csv_is_read_in_the_dialect_the_datasets_source_declares(hub: Hub, api: str, pusher: dict[str, str]) -> None:
    from sqlalchemy import select

    from catalogue.meta.models import Dataset, HarvestSource

    with hub.sessions.begin() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == "meters"))
        session.add(HarvestSource(name="meters", dataset_id=dataset_id, type="http-file", url="https://example.org/m.csv",
                                  format="csv", options={"delimiter": ";", "decimal_char": ",", "encoding": "cp1252"}))
    body = "id;name;value\n1;Nord;1,25\n2;Süd;2,75\n".encode("cp1252")
    answer = httpx.post(f"{api}/datasets/meters/deliveries", content=body, headers={**pusher, **CSV})
    assert answer.status_code == 201, answer.text
    assert [(r["name"], r["value"]) for r in _rows(api)] == [("Nord", 1.25), ("Süd", 2.75)]
    as_json = httpx.post(f"{api}/datasets/meters/deliveries", content=b'[{"id": 1, "name": "Nord", "value": 3.5}]',
                         headers={**pusher, "Content-Type": "application/json"})  # the CSV options stay with CSV
    assert as_json.status_code == 201, as_json.text


def test_the_collector_forgets_idempotency_keys_after_a_week(hub: Hub, api: str, pusher: dict[str, str]) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from catalogue.ingest.gc import collect
    from catalogue.meta.models import DeliveryKey, utcnow

    for key in ("old", "new"):
        answer = httpx.post(f"{api}/datasets/meters/deliveries", content=f"id,name,value\n1,{key},1\n".encode(),
                            headers={**pusher, **CSV, "Idempotency-Key": key})
        assert answer.status_code == 201
    with hub.sessions.begin() as session:
        session.execute(update(DeliveryKey).where(DeliveryKey.key == "old").values(created_at=utcnow() - timedelta(days=8)))
    collect(hub)
    with hub.sessions() as session:
        assert list(session.scalars(select(DeliveryKey.key))) == ["new"]
        assert session.scalar(select(func.count()).select_from(DeliveryKey)) == 1


def test_a_client_going_away_mid_body_delivers_nothing_and_leaves_no_file(hub: Hub, api: str,
                                                                          pusher: dict[str, str]) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    where = urlsplit(api)
    scratch = hub.settings.data_dir / "store" / ".scratch"
    with socket.create_connection((where.hostname, where.port)) as conn:
        conn.sendall((f"POST {where.path}/datasets/meters/deliveries HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: {pusher['Authorization']}\r\nContent-Type: text/csv\r\n"
                      "Content-Length: 3000\r\n\r\nid,name,value\n1,Nord,").encode())
        deadline = time.monotonic() + 30
        while not list(scratch.glob("*.push")):  # the server is receiving it
            assert time.monotonic() < deadline, "the server never started receiving"
            time.sleep(0.05)
    deadline = time.monotonic() + 30
    while list(scratch.glob("*.push")):
        assert time.monotonic() < deadline, "the partial body was left on disk"
        time.sleep(0.05)
    assert _current(api) == 1
    assert httpx.get(f"{api}/datasets/meters/deliveries").json()["results"] == []
