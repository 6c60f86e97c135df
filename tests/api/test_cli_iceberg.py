"""``urbandata iceberg-sync``: the versions published while Iceberg tables were off (or failed) registered afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.settings import Settings
from catalogue.store import iceberg
from tests import production_backend

pytest.importorskip("pyiceberg", reason="the [iceberg] extra: pip install -e '.[iceberg]'")

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"}], "primaryKey": ["id"]}


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def unregistered(make_catalogue: Any) -> Hub:
    """Two versions of ``streets`` published with Iceberg tables off."""
    hub: Hub = make_catalogue("streets", SCHEMA, b"id,name\n1,Markt\n")
    result = ingest_delivery(hub, "streets", Delivery(b"id,name\n2,Hafen\n", "csv", {}, "append", {"source_url": "t"}))
    assert result.status == "published"
    return hub


def test_sync_registers_the_missing_versions_once(unregistered: Hub, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'iceberg.sqlite'}"
    monkeypatch.setenv("URBANDATA_ICEBERG_CATALOG_URL", url)
    data_dir = str(unregistered.settings.data_dir)

    first = run("iceberg-sync", "-d", data_dir)
    assert first.exit_code == 0, first.output
    assert "streets: registered version(s) 1, 2; metadata " in flat(first.output)
    again = run("iceberg-sync", "streets", "-d", data_dir)
    assert again.exit_code == 0, again.output
    assert "streets: up to date; metadata " in flat(again.output)

    from catalogue.hub import open_hub

    hub = open_hub(Settings(data_dir=unregistered.settings.data_dir, iceberg_catalog_url=url))
    try:
        with iceberg.open_catalog(hub) as catalog:
            table = catalog.load_table(iceberg.table_identifier("streets"))
        assert sorted(iceberg.snapshot_ids(table)) == [1, 2]
        assert sorted(table.scan().to_arrow().column("name").to_pylist()) == ["Hafen", "Markt"]
    finally:
        hub.close()


def test_sync_says_what_is_wrong(unregistered: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = str(unregistered.settings.data_dir)
    monkeypatch.delenv("URBANDATA_ICEBERG_CATALOG_URL", raising=False)
    off = run("iceberg-sync", "-d", data_dir)
    assert off.exit_code == 1
    assert "Iceberg tables are off" in flat(off.output) and "URBANDATA_ICEBERG_CATALOG_URL" in flat(off.output)

    monkeypatch.setenv("URBANDATA_ICEBERG_CATALOG_URL", f"sqlite:///{tmp_path / 'iceberg.sqlite'}")
    unknown = run("iceberg-sync", "nowhere", "-d", data_dir)
    assert unknown.exit_code == 1
    assert "[dataset-not-found]" in flat(unknown.output) and "'nowhere'" in flat(unknown.output)

    monkeypatch.setenv("URBANDATA_ICEBERG_CATALOG_URL", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}")
    unreachable = run("iceberg-sync", "-d", data_dir)
    assert unreachable.exit_code == 1
    assert "cannot be opened" in flat(unreachable.output)

    monkeypatch.setenv("URBANDATA_ICEBERG_CATALOG_URL", "postgresql+nosuchdriver://hub:s3cret@127.0.0.1/x")
    no_driver = run("iceberg-sync", "-d", data_dir)
    assert no_driver.exit_code == 1
    assert "hub:***@127.0.0.1" in flat(no_driver.output) and "s3cret" not in no_driver.output

    if not production_backend.ACTIVE:  # elsewhere on PostgreSQL is the same database, which has a catalogue
        missing = run("iceberg-sync", "-d", str(tmp_path / "elsewhere"))
        assert missing.exit_code == 1 and "no catalogue" in flat(missing.output)
