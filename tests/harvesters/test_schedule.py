"""Harvest schedules: parsing, when a source is due, `harvest --due`, and the background scheduler of `serve`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app
from catalogue.errors import DefinitionError
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.meta.models import HarvestJob, HarvestSource
from harvesters.runner import harvest_source
from catalogue.hub import open_hub
from tests.conftest import pg_schema
from harvesters.schedule import (HarvestScheduler, due_sources, due_states, harvest_due, parse_schedule, run_due,
                                 source_schedule)

NAME = "luftmessung"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "no2", "type": "number"}], "primaryKey": ["id"]}
AT = datetime(2026, 12, 4, 10, 20, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, interval", [("90s", 90), ("15m", 900), ("6h", 21600), ("1d", 86400), ("2w", 1209600)])
def test_intervals(text: str, interval: int) -> None:
    schedule = parse_schedule(text)
    assert (schedule.interval, schedule.cron, schedule.next_after(AT)) == (
        timedelta(seconds=interval), None, AT + timedelta(seconds=interval))


def test_cron_expressions_give_the_next_time_in_utc() -> None:
    assert parse_schedule("0 * * * *").next_after(AT) == datetime(2026, 12, 4, 11, 0, tzinfo=timezone.utc)
    assert parse_schedule("30 6 * * 1-5").next_after(AT) == datetime(2026, 12, 7, 6, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["0m", "often", "61 * * * *", "* * * *"])
def test_a_bad_schedule_names_both_forms(text: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_schedule(text)
    assert text in caught.value.message
    assert "15m" in caught.value.message and ("cron" in caught.value.message or "longer than 0" in caught.value.message)


@pytest.mark.parametrize("frequency, interval", [("HOURLY", timedelta(hours=1)), ("DAILY", timedelta(days=1)),
                                                 ("WEEKLY", timedelta(weeks=1)), ("IRREG", None), ("NEVER", None),
                                                 ("UNKNOWN", None)])
def test_without_a_schedule_the_update_frequency_decides(frequency: str, interval: timedelta | None) -> None:
    found = source_schedule(None, frequency)
    assert (found.interval if found else None) == interval
    assert source_schedule("15m", frequency).interval == timedelta(minutes=15)  # type: ignore[union-attr]


def _catalogue(make: Callable[..., Hub], url: str, schedule: str | None = None, frequency: str = "DAILY") -> Hub:
    source: dict[str, Any] = {"type": "http-file", "url": url, "format": "csv"}
    if schedule:
        source["schedule"] = schedule
    return make(NAME, SCHEMA, source, update_frequency=frequency)


def _last_started(hub: Hub) -> datetime:
    with hub.sessions() as session:
        started = session.scalar(select(HarvestJob.started_at).order_by(HarvestJob.id.desc()))
    assert started is not None
    return started


def test_a_source_is_due_when_it_never_ran_and_again_after_its_interval(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="15m")
    assert due_sources(hub) == [NAME]
    assert [o.status for o in run_due(hub)] == ["published"]
    last = _last_started(hub)
    assert due_sources(hub, last + timedelta(minutes=14)) == []
    assert due_sources(hub, last + timedelta(minutes=15)) == [NAME]
    assert run_due(hub, last + timedelta(minutes=1)) == []


def test_the_update_frequency_schedules_a_source_without_its_own(file_server: Any,
                                                                 source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", frequency="HOURLY")
    harvest_source(hub, NAME)
    last = _last_started(hub)
    assert (due_sources(hub, last + timedelta(minutes=59)), due_sources(hub, last + timedelta(hours=1))) == ([], [NAME])


def test_an_irregular_dataset_is_harvested_only_on_request(file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, _ = file_server
    hub = _catalogue(source_catalogue, server.url + "l.csv", frequency="IRREG")
    assert due_sources(hub, datetime(2100, 1, 1, tzinfo=timezone.utc)) == []


def test_a_dataset_with_a_running_job_is_not_started_again(file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1m")
    with hub.sessions() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
        source_id, dataset_id = source.id, source.dataset_id
    running = jobs.start(hub, source_id, dataset_id)  # another process harvesting it right now
    assert due_sources(hub) == []
    assert server.hits == []
    jobs.fail(hub, running, RuntimeError("gone"))
    assert due_sources(hub, _last_started(hub) + timedelta(minutes=1)) == [NAME]  # the failed run counts as a run


def test_the_background_scheduler_harvests_due_sources_and_rebuilds_after_a_publication(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1d")
    rebuilt = threading.Event()
    builds: list[int] = []

    def after_publish(names: list[str]) -> None:
        assert names == [NAME]
        builds.append(1)
        rebuilt.set()

    scheduler = HarvestScheduler(hub, tick_s=0.2, after_publish=after_publish).start()
    try:
        assert rebuilt.wait(60), "the scheduler published nothing within a minute"
    finally:
        scheduler.stop()
    assert len(server.hits) == 1  # due once: harvested once, however many rounds ran
    assert builds == [1]
    assert [o.status for o in scheduler.run_once()] == []


def test_harvest_due_on_the_command_line_prints_a_summary_and_rebuilds_the_site(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n2,30\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1d")
    data_dir = str(hub.settings.data_dir)
    env = {"URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir)}
    runner = CliRunner()

    first = runner.invoke(app, ["harvest", "--due", "--data-dir", data_dir], env=env)
    assert first.exit_code == 0, first.output
    assert "Harvest summary" in first.output and "1 published" in first.output
    assert (hub.settings.data_dir / "site" / "index.html").exists()

    second = runner.invoke(app, ["harvest", "--due", "--data-dir", data_dir], env=env)
    assert (second.exit_code, second.output.strip()) == (0, "No source is due.")
    assert len(server.hits) == 1

    both = runner.invoke(app, ["harvest", NAME, "--due", "--data-dir", data_dir], env=env)
    assert both.exit_code == 2 and "one of them" in both.output


@pytest.mark.timeout(120)
def test_serve_harvests_due_sources_in_the_background_and_stops_cleanly(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1d")
    env = {**os.environ, "URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir), "PYTHONUNBUFFERED": "1"}
    serving = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0", "-d", str(hub.settings.data_dir)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not server.hits:  # the first round starts with the server
            assert serving.poll() is None and time.monotonic() < deadline, "serve harvested nothing within a minute"
            time.sleep(0.1)
        while True:
            with hub.sessions() as session:
                status = session.scalar(select(HarvestJob.status).order_by(HarvestJob.id.desc()))
            if status != "running":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        serving.send_signal(signal.SIGINT)
        out, errors = serving.communicate(timeout=60)
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.communicate()
    assert (status, serving.returncode, out.strip().splitlines()[-1]) == ("published", 0, "Stopped."), errors
    assert len(server.hits) == 1
    assert (hub.settings.data_dir / "site" / "index.html").exists()  # rebuilt after the publication


def test_validate_names_a_definition_whose_schedule_does_not_parse(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, _ = file_server
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="every tuesday")
    result = CliRunner().invoke(app, ["validate", "--definitions", str(hub.settings.definitions_dir)])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "definitions/luftmessung.yaml, at source/schedule: The schedule 'every tuesday' is neither" in message


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_running_due_harvests_at_once_run_each_source_once(
        file_server: Any, source_catalogue: Callable[..., Hub], database: str) -> None:
    """Two schedulers with their own hubs (connections) find the same sources due; each run is claimed once."""
    if database == "postgresql":
        with pg_schema("claim") as overrides:
            _race_for_due_runs(file_server, source_catalogue, overrides)
    else:
        _race_for_due_runs(file_server, source_catalogue, {})


def _race_for_due_runs(file_server: Any, source_catalogue: Callable[..., Hub], overrides: dict[str, Any]) -> None:
    server, files = file_server
    names = ["luft-a", "luft-b", "luft-c"]
    for name in names:
        files[f"{name}.csv"] = b"id,no2\n1,21.5\n"
        hub = source_catalogue(name, SCHEMA, {"type": "http-file", "url": f"{server.url}{name}.csv", "format": "csv",
                                              "schedule": "1d"}, **overrides)
    others = [open_hub(hub.settings) for _ in range(2)]
    found = [due_states(other) for other in others]  # both see every source due before either runs one
    assert [[s.source for s in states] for states in found] == [names, names]
    start = threading.Barrier(2)
    outcomes: list[list[Any]] = [[], []]

    def run(i: int) -> None:
        start.wait(30)
        outcomes[i] = [harvest_due(others[i], state) for state in found[i]]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for other in others:
            other.close()
    ran = sorted(o.source for per in outcomes for o in per if o is not None)
    assert ran == names  # each source by exactly one of the two
    assert sorted(path for path, _ in server.hits) == [f"/{name}.csv" for name in names]
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(HarvestJob)) == 3
    assert due_sources(hub) == []


def test_a_stale_due_state_claims_nothing_after_the_run_it_saw_due_ended(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1m")
    [seen] = due_states(hub)
    assert [o.status for o in run_due(hub)] == ["published"]  # another process ran it meanwhile
    assert harvest_due(hub, seen) is None
    assert len(server.hits) == 1


def test_a_source_withdrawn_by_a_catalogue_harvest_is_not_scheduled(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["l.csv"] = b"id,no2\n1,21.5\n"
    hub = _catalogue(source_catalogue, server.url + "l.csv", schedule="1m")
    assert due_sources(hub) == [NAME]
    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
        source.options = {**source.options, "withdrawn_at": "2026-12-05T00:00:00+00:00"}
    assert (due_sources(hub, datetime(2100, 1, 1, tzinfo=timezone.utc)), run_due(hub)) == ([], [])
    assert server.hits == []


@pytest.mark.timeout(180)
def test_two_harvest_due_commands_at_once_harvest_each_due_source_once(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    import os
    import subprocess
    import sys

    server, files = file_server
    names = ["luft-a", "luft-b", "luft-c"]
    for name in names:
        files[f"{name}.csv"] = b"id,no2\n1,21.5\n"
        hub = source_catalogue(name, SCHEMA, {"type": "http-file", "url": f"{server.url}{name}.csv", "format": "csv",
                                              "schedule": "1d"})
    env = {**os.environ, "URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir)}
    command = [sys.executable, "-m", "api.cli", "harvest", "--due", "-d", str(hub.settings.data_dir)]
    both = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [p.communicate(timeout=150) for p in both]
    assert [p.returncode for p in both] == [0, 0], results
    assert sorted(path for path, _ in server.hits) == [f"/{name}.csv" for name in names]
    with hub.sessions() as session:
        assert sorted(session.scalars(select(HarvestJob.status))) == ["published"] * 3
