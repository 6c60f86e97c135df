"""Operations: /ready and its checks, /metrics in the Prometheus text format, JSON log lines, the config file."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import select

from catalogue.errors import InvalidConfigFile
from catalogue.hub import Hub, open_hub
from catalogue.ingest import jobs
from catalogue.ingest.delivery import IngestResult
from catalogue.meta.db import create_catalogue_engine, session_factory
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.models import Dataset
from catalogue.registry import load_registry
from catalogue.settings import CONFIG_ENV, Settings
from tests.api.live_server import live_server
from tests.conftest import in_process_client
from tests.catalogue.seaweed_server import Seaweed, seaweed  # noqa: F401 - the real SeaweedFS fixture

REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    """A loopback port nobody listens on: bound to learn a free one, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fresh_hub(tmp_path: Path) -> Iterator[Hub]:
    """A new catalogue with the demo definitions and no harvest job yet."""
    hub = open_hub(Settings(data_dir=tmp_path / "var"))
    sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
    yield hub
    hub.close()


@pytest.fixture
async def ops_client(fresh_hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async for client in in_process_client(fresh_hub):
        yield client


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in a Prometheus text answer, by its sorted labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.mark.anyio
async def test_ready_answers_200_with_each_check_on_a_working_hub(ops_client: httpx.AsyncClient) -> None:
    answer = await ops_client.get("/ready")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "storage"}  # no queue configured: none checked
    assert all(check["status"] == "ok" for check in body["checks"].values())
    assert answer.headers["cache-control"] == "no-store"
    head = await ops_client.head("/ready")
    assert (head.status_code, head.content) == (200, b"")


@pytest.mark.anyio
async def test_ready_answers_503_naming_the_unreachable_database(tmp_path: Path) -> None:
    password = "do-not-show-" + uuid.uuid4().hex[:8]
    settings = Settings(data_dir=tmp_path / "var",
                        database_url=f"postgresql+psycopg://postgres:{password}@127.0.0.1:{free_port()}/test")
    # open_hub would create the schema, which needs the database: the hub is put together by hand, as a
    # server that started before its database went away holds it.
    registry = load_registry()
    engine = create_catalogue_engine(settings)
    hub = Hub(settings=settings, engine=engine, sessions=session_factory(engine),
              storage=registry.get("storage", settings.storage)(settings), registry=registry)
    try:
        async for client in in_process_client(hub):
            answer = await client.get("/ready")
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["failed"] == ["database"]
            assert body["checks"]["database"]["status"] == "failed"
            assert "unreachable" in body["checks"]["database"]["detail"]
            assert body["checks"]["storage"]["status"] == "ok"
            assert body["error"]["code"] == "not-ready" and "database" in body["error"]["message"]
            assert password not in answer.text
            head = await client.head("/ready")
            assert (head.status_code, head.content) == (503, b"")
            # The scrape still answers without the database: the harvest families are left out, nothing fails.
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200
            assert not _samples(scrape.text, "urbandata_harvest_runs_total")
    finally:
        hub.close()


class Relay:
    """A TCP relay on a free loopback port to ``upstream``; ``close`` cuts every connection and refuses new ones."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept(); close alone does not
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for conn in self.open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()


@pytest.mark.anyio
async def test_ready_answers_503_naming_object_storage_that_went_away(
        seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    host, port = seaweed.endpoint.removeprefix("http://").split(":")
    relay = Relay((host, int(port)))
    try:
        hub = open_hub(Settings(data_dir=tmp_path / "var", storage="s3", s3_endpoint_url=f"http://127.0.0.1:{relay.port}",
                                s3_bucket=seaweed.bucket, s3_prefix=f"ops-{uuid.uuid4().hex[:8]}",
                                ready_timeout_s=5.0))
        try:
            async for client in in_process_client(hub):
                answer = await client.get("/ready")
                assert answer.status_code == 200, answer.text
                relay.close()  # the object store is gone: refused connections from now on
                answer = await client.get("/ready")
                assert answer.status_code == 503, answer.text
                body = answer.json()
                assert body["failed"] == ["storage"] and body["checks"]["database"]["status"] == "ok"
                assert "StorageUnavailable" in body["checks"]["storage"]["detail"]
                assert seaweed.secret_key not in answer.text and seaweed.access_key not in answer.text
        finally:
            hub.close()
    finally:
        relay.close()


@pytest.mark.anyio
async def test_ready_checks_the_job_queue_when_there_is_one(fresh_hub: Hub, tmp_path: Path) -> None:
    pytest.importorskip("dramatiq")
    down = fresh_hub.settings.model_copy(update={"queue_url": f"redis://127.0.0.1:{free_port()}/0"})
    async for client in in_process_client(Hub(down, fresh_hub.engine, fresh_hub.sessions, fresh_hub.storage, fresh_hub.registry)):
        answer = await client.get("/ready")
        assert answer.status_code == 503, answer.text
        assert answer.json()["failed"] == ["queue"]
    up = fresh_hub.settings.model_copy(update={"queue_url": REDIS_URL})
    async for client in in_process_client(Hub(up, fresh_hub.engine, fresh_hub.sessions, fresh_hub.storage, fresh_hub.registry)):
        answer = await client.get("/ready")
        if answer.status_code == 503 and answer.json()["failed"] == ["queue"]:
            pytest.skip(f"no Redis answers at {REDIS_URL}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"]["queue"]["status"] == "ok"


@pytest.mark.anyio
async def test_metrics_count_requests_by_route_template(ops_client: httpx.AsyncClient) -> None:
    for name in ("alpha-unknown", "beta-unknown", "gamma-unknown"):
        assert (await ops_client.get(f"/api/v1/datasets/{name}")).status_code == 404
    assert (await ops_client.get("/api/v1/datasets")).status_code == 200
    answer = await ops_client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    requests = _samples(answer.text, "urbandata_http_requests_total")
    one_dataset = {labels: value for labels, value in requests.items() if dict(labels)["route"] == "/api/v1/datasets/{name}"}
    assert one_dataset == {(("method", "GET"), ("route", "/api/v1/datasets/{name}"), ("status", "4xx")): 3.0}
    assert requests[(("method", "GET"), ("route", "/api/v1/datasets"), ("status", "2xx"))] == 1.0
    assert not [labels for labels in requests if "unknown" in dict(labels)["route"]]  # raw paths never label
    latency = _samples(answer.text, "urbandata_http_request_duration_seconds_count")
    assert latency[(("route", "/api/v1/datasets/{name}"),)] == 3.0
    workers = _samples(answer.text, "urbandata_sql_workers")
    assert set(workers) == {(("state", "busy"),), (("state", "idle"),)}
    assert _samples(answer.text, "urbandata_sql_workers_limit") == {(): 2.0}


@pytest.mark.anyio
async def test_metrics_count_harvest_runs_and_rows_from_the_jobs_table(fresh_hub: Hub) -> None:
    with fresh_hub.sessions() as session:
        dataset_id = session.scalars(select(Dataset.id).order_by(Dataset.id)).first()
    assert dataset_id is not None
    for rows in (5, 7):
        job = jobs.start(fresh_hub, None, dataset_id)
        jobs.finish(fresh_hub, job, IngestResult("published", "x", 1, rows, {}))
    jobs.fail(fresh_hub, jobs.start(fresh_hub, None, dataset_id), RuntimeError("the source is down"))
    jobs.start(fresh_hub, None, dataset_id)  # still running
    async for client in in_process_client(fresh_hub):
        text = (await client.get("/metrics")).text
    assert _samples(text, "urbandata_harvest_runs_total") == {(("outcome", "failed"),): 1.0,
                                                               (("outcome", "published"),): 2.0}
    assert _samples(text, "urbandata_harvest_rows_total")[(("outcome", "published"),)] == 12.0
    active = _samples(text, "urbandata_harvest_runs_active")
    assert active[(("state", "running"),)] == 1.0 and active[(("state", "queued"),)] == 0.0


@pytest.mark.anyio
async def test_metrics_show_the_job_queue_depth(fresh_hub: Hub) -> None:
    pytest.importorskip("dramatiq")
    from harvesters.queue import HarvestQueue, redis_client

    namespace = f"ops-test-{uuid.uuid4().hex[:8]}"
    settings = fresh_hub.settings.model_copy(update={"queue_url": REDIS_URL, "queue_namespace": namespace})
    try:
        redis_client(settings).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    queue = HarvestQueue(settings)
    try:
        queue.send("some-source", "some-dataset", 1)
        queue.send("other-source", "other-dataset", 2)
        async for client in in_process_client(Hub(settings, fresh_hub.engine, fresh_hub.sessions, fresh_hub.storage,
                                        fresh_hub.registry)):
            text = (await client.get("/metrics")).text
        depths = _samples(text, "urbandata_queue_depth")
        assert depths == {(("queue", "harvests"),): 2.0, (("queue", "harvests.DQ"),): 0.0}
    finally:
        conn = redis_client(settings)
        conn.delete(*conn.keys(f"{namespace}:*") or ["none"])
        conn.close()
        queue.broker.close()


def test_json_log_lines_of_a_real_server_parse(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with live_server({"data_dir": str(tmp_path / "var"), "log_format": "json"}, log) as url:
        answer = httpx.get(f"{url}/api/v1/datasets/no-such-dataset", headers={"X-Request-ID": "ops-test-42"})
        assert answer.status_code == 404
        assert answer.headers["x-request-id"] == "ops-test-42"
        fresh = httpx.get(f"{url}/ready")
        assert fresh.status_code == 200 and len(fresh.headers["x-request-id"]) == 32  # made when none is sent
        scraped = httpx.get(f"{url}/metrics").text
    assert _samples(scraped, "urbandata_http_requests_total")[
        (("method", "GET"), ("route", "/api/v1/datasets/{name}"), ("status", "4xx"))] == 1.0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    [request] = [e for e in entries if e.get("request_id") == "ops-test-42"]
    assert request["logger"] == "urbandata.access" and request["level"] == "info"
    assert (request["route"], request["status"], request["method"]) == ("/api/v1/datasets/{name}", 404, "GET")
    assert request["path"] == "/api/v1/datasets/no-such-dataset"
    assert isinstance(request["duration_ms"], float) and request["duration_ms"] > 0


def test_settings_come_from_the_config_file_with_the_environment_on_top(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "urbandata.toml"
    config.write_text('sql_workers = 3\nduckdb_threads = 4\nlog_format = "json"\n'
                      'harvest_allowed_hosts = ["10.1.0.0/16"]\n', encoding="utf-8")
    monkeypatch.delenv("URBANDATA_HARVEST_ALLOWED_HOSTS", raising=False)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("URBANDATA_DUCKDB_THREADS", "1")
    settings = Settings()
    assert (settings.sql_workers, settings.duckdb_threads, settings.log_format) == (3, 1, "json")
    assert settings.harvest_allowed_hosts == ["10.1.0.0/16"]
    assert Settings(sql_workers=5).sql_workers == 5  # arguments over both
    monkeypatch.delenv(CONFIG_ENV)
    assert Settings().sql_workers == 2  # no file, the default


def test_a_bad_config_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.toml"
    monkeypatch.setenv(CONFIG_ENV, str(missing))
    with pytest.raises(InvalidConfigFile, match="missing.toml"):
        Settings()
    broken = tmp_path / "broken.toml"
    broken.write_text("sql_workers = \n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(broken))
    with pytest.raises(InvalidConfigFile, match=r"broken\.toml cannot be read as TOML.*line 1"):
        Settings()
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sql_wrokers = 3\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(unknown))
    with pytest.raises(ValidationError, match="sql_wrokers"):
        Settings()


def test_the_command_line_reads_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    config = tmp_path / "urbandata.toml"
    config.write_text("sql_max_rows = 4321\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test: --config sets it for the process
    result = CliRunner().invoke(app, ["--config", str(config), "settings", "--data-dir", str(tmp_path / "var")])
    assert result.exit_code == 0, result.output
    assert "4321" in result.output
    missing = CliRunner().invoke(app, ["--config", str(tmp_path / "nope.toml"), "settings"])
    assert missing.exit_code == 1 and "nope.toml" in missing.output
