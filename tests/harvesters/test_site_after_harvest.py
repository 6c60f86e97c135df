"""After a harvest that publishes, the static site is rebuilt incrementally: only that dataset's pages change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from api.cli import app
from catalogue.hub import Hub

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "no2", "type": "number"}], "primaryKey": ["id"]}
KEPT = {".manifest.json", ".search-docs.json"}  # what an incremental build compares against


def _blank(site: Path) -> None:
    """Empty every generated file, so that the ones a build writes show by their size."""
    for path in site.rglob("*"):
        if path.is_file() and path.name not in KEPT and "static" not in path.parts:
            path.write_text("", encoding="utf-8")


def _rewritten(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*")
                  if p.is_file() and p.name not in KEPT and "static" not in p.parts and p.stat().st_size)


def test_a_harvest_that_publishes_rebuilds_only_its_datasets_pages(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    for name in ("luft-a", "luft-b"):
        files[f"{name}.csv"] = b"id,no2\n1,21.5\n"
        hub = source_catalogue(name, SCHEMA, {"type": "http-file", "url": f"{server.url}{name}.csv", "format": "csv"})
    site, data_dir = hub.settings.site_dir, str(hub.settings.data_dir)
    env = {"URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir)}
    runner = CliRunner()
    assert not site.exists()

    first = runner.invoke(app, ["harvest", "--all", "--data-dir", data_dir], env=env)
    assert first.exit_code == 0, first.output
    assert (site / "static").is_dir() and (site / "datasets" / "luft-a.html").stat().st_size  # no site yet: a full build
    _blank(site)

    files["luft-b.csv"] = b"id,no2\n1,21.5\n2,30.1\n"
    second = runner.invoke(app, ["harvest", "luft-b", "--data-dir", data_dir], env=env)
    assert second.exit_code == 0, second.output
    assert "1 published" in second.output
    rewritten = _rewritten(site)
    assert not [path for path in rewritten if "luft-a" in path]
    assert rewritten == sorted([
        *(f"{root}{page}" for root in ("", "en/") for page in [
            "datasets/luft-b.html", "datasets/luft-b/sql.html", "datasets/luft-b/v1.html", "datasets/luft-b/v2.html",
            "harvest.html", "index.html", "page/1.html", "publishers/testamt.html"]),  # its card is on both listings
        "data/luft-b/luft-b-v2.zip", "data/luft-b/v2.parquet", "feeds/all.atom", "feeds/luft-b.atom", "openapi.json",
        "robots.txt", "search/index.json", "sitemap.xml"])

    _blank(site)
    unchanged = runner.invoke(app, ["harvest", "luft-a", "--data-dir", data_dir], env=env)
    assert unchanged.exit_code == 0, unchanged.output
    assert _rewritten(site) == []  # nothing published: no build
