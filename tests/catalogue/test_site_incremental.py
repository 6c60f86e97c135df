"""An incremental site build leaves exactly the bytes a full build of the same catalogue makes.

Both builds are given the same build time, so every file (pages, feeds, sitemap, search
index, the kept manifest and search entries) must be byte-identical: nothing is masked.
The changes run one after another on one site, as harvests do, so each incremental build
starts from what the previous incremental build left (cards come from kept search entries).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update

from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.settings import Settings
from catalogue.sitegen.builder import SiteBuilder

LICENSE = "http://dcat-ap.de/def/licenses/dl-by-de/2.0"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]}
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
TOPICS = ["Luftqualität", "Ärztehäuser", "Baumkataster", "Straßenbäume", "Öffentliche Toiletten", "Radverkehr"]


def publish(hub: Hub, name: str, title: str, publisher: str, minute: int, rows: int = 10) -> None:
    """A dataset with one metadata-only version, modified ``minute`` minutes into 2026."""
    with hub.sessions.begin() as session:
        org = session.scalars(select(Organization).where(Organization.name == publisher)).one()
        moment = START + timedelta(minutes=minute)
        dataset = Dataset(name=name, title=title, title_en=f"{title} (en)" if minute % 3 else None, license=LICENSE,
                          description=f"{title}: Messwerte aus dem Stadtgebiet.", keywords=["Umwelt"],
                          themes=["ENVI"] if minute % 2 else ["TRAN", "GOVE"], publisher=org, table_schema=SCHEMA,
                          created_at=moment, modified_at=moment)
        version = Version(dataset=dataset, number=1, row_count=rows, bytes=100, content_hash=f"{minute:064x}",
                          descriptor_key=f"datasets/{name}/v1.datapackage.json", created_at=moment)
        session.add_all([dataset, version])
        session.flush()
        dataset.current_version = version


def new_version(hub: Hub, name: str, minute: int, rows: int) -> None:
    with hub.sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one()
        moment = START + timedelta(minutes=minute)
        version = Version(dataset=dataset, number=2, row_count=rows, bytes=200, content_hash=f"{minute:064x}",
                          descriptor_key=f"datasets/{name}/v2.datapackage.json", created_at=moment,
                          changes={"added": rows - 10, "removed": 0, "changed": 0})
        session.add(version)
        session.flush()
        dataset.current_version = version
        dataset.modified_at = moment


def set_values(hub: Hub, name: str, **values: object) -> None:
    with hub.sessions.begin() as session:
        session.execute(update(Dataset).where(Dataset.name == name).values(**values))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """40 datasets of two publishers, five to a page, titles with umlauts (folded for the order)."""
    opened = open_hub(Settings(data_dir=tmp_path / "var", site_page_size=5, public_url="http://hub.test/"))
    with opened.sessions.begin() as session:
        session.add_all([Organization(name="amt-a", title="Umweltamt", title_en="Environment Office"),
                         Organization(name="amt-b", title="Ämterverbund")])
    for i in range(40):
        publish(opened, f"ds-{i + 1:03d}", f"{TOPICS[i % len(TOPICS)]} {2000 + i}", "amt-a" if i % 3 else "amt-b",
                minute=i + 1, rows=10 + i)
    yield opened
    opened.close()


def tree(site: Path) -> dict[str, bytes]:
    """Every file of a built site by path, with its bytes (the vendored libraries are hard links of site/)."""
    return {p.relative_to(site).as_posix(): p.read_bytes()
            for p in sorted(site.rglob("*")) if p.is_file() and "vendor" not in p.parts}


def full_build_elsewhere(hub: Hub, where: Path) -> dict[str, bytes]:
    settings = Settings(data_dir=where, database_url=hub.settings.resolved_database_url,
                        site_page_size=hub.settings.site_page_size, public_url=hub.settings.public_url)
    reference = open_hub(settings)
    try:
        SiteBuilder(reference, now=NOW).build()
    finally:
        reference.close()
    return tree(settings.site_dir)


def added_at_the_front(hub: Hub) -> list[str]:
    publish(hub, "ds-000-neu", "Abfallkalender Neuzugang", "amt-b", minute=100)
    return ["ds-000-neu"]


def retitled_with_an_umlaut(hub: Hub) -> list[str]:
    set_values(hub, "ds-020", title="Öko-Zählstellen", title_en="Eco counters")
    return ["ds-020"]


def new_version_published(hub: Hub) -> list[str]:
    new_version(hub, "ds-007", minute=200, rows=1234567)
    return ["ds-007"]


def moved_to_the_other_publisher(hub: Hub) -> list[str]:
    with hub.sessions() as session:
        other = session.scalars(select(Organization.id).where(Organization.name == "amt-b")).one()
    set_values(hub, "ds-011", publisher_id=other)
    return ["ds-011"]


def made_private(hub: Hub) -> list[str]:
    set_values(hub, "ds-002", private=True)
    return ["ds-002"]


def themes_changed(hub: Hub) -> list[str]:
    set_values(hub, "ds-030", themes=["EDUC"], description="Neue Beschreibung mit Schulwegen.")
    return ["ds-030"]


CHANGES: list[Callable[[Hub], list[str]]] = [added_at_the_front, retitled_with_an_umlaut, new_version_published,
                                             moved_to_the_other_publisher, made_private, themes_changed]


def test_each_incremental_build_in_a_row_leaves_the_bytes_of_a_full_build(hub: Hub, tmp_path: Path) -> None:
    site = hub.settings.site_dir
    SiteBuilder(hub, now=NOW).build()
    assert tree(site) == full_build_elsewhere(hub, tmp_path / "reference-0")

    for step, change in enumerate(CHANGES, start=1):
        before = tree(site)
        SiteBuilder(hub, now=NOW).build(only=change(hub))
        after = tree(site)
        assert after != before, change.__name__
        reference = full_build_elsewhere(hub, tmp_path / f"reference-{step}")
        assert sorted(after) == sorted(reference), change.__name__
        differing = [path for path in reference if after[path] != reference[path]]
        assert differing == [], change.__name__


def test_a_rebuild_leaves_files_whose_bytes_did_not_change_untouched(hub: Hub) -> None:
    site = hub.settings.site_dir
    SiteBuilder(hub, now=NOW).build()
    # Made again by every build, but a description holds no part of them.
    untouched = [site / "sitemap.xml", site / "robots.txt", site / "feeds/all.atom", site / "feeds/ds-007.atom"]
    for path in untouched:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    set_values(hub, "ds-007", description="Nur die Beschreibung ist neu.")

    SiteBuilder(hub, now=NOW).build(only=["ds-007"])

    assert [p.stat().st_mtime_ns for p in untouched] == [1_000_000_000] * len(untouched)
    assert "Nur die Beschreibung ist neu." in (site / "datasets/ds-007.html").read_text(encoding="utf-8")


def test_kept_entries_whose_title_or_publisher_changed_unnamed_are_read_again(hub: Hub) -> None:
    site = hub.settings.site_dir
    SiteBuilder(hub, now=NOW).build()
    with hub.sessions.begin() as session:
        session.add(Organization(name="amt-c", title="Neues Amt"))
        session.flush()
        moved_to = session.scalars(select(Organization.id).where(Organization.name == "amt-c")).one()
    set_values(hub, "ds-005", publisher_id=moved_to, title="Zählstellen Hafen")  # not named below

    SiteBuilder(hub, now=NOW).build(only=["ds-006"])

    index = json.loads((site / "search/index.json").read_text(encoding="utf-8"))
    doc = next(d for d in index["docs"] if d["name"] == "ds-005")
    assert (doc["publisher"], doc["title"]) == ("amt-c", "Zählstellen Hafen")
    assert "Zählstellen Hafen" in (site / "publishers/amt-c.html").read_text(encoding="utf-8")


def test_an_incremental_build_of_a_site_never_built_builds_it_whole(hub: Hub, tmp_path: Path) -> None:
    """No manifest: an incremental build (a harvest's refresh) cannot know what it would leave out."""
    SiteBuilder(hub, now=NOW).build(only=["ds-001"])
    assert tree(hub.settings.site_dir) == full_build_elsewhere(hub, tmp_path / "reference")


def test_builds_at_once_wait_for_each_other_and_leave_the_bytes_of_a_full_build(hub: Hub, tmp_path: Path) -> None:
    """Two harvest processes (or the serve scheduler and build-site) each rebuilding the site at once: before
    the build lock, one's removal of a dataset's folder made the other's page write fail (FileNotFoundError)."""
    import threading

    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def build(names: list[str]) -> None:
        start.wait()
        try:
            SiteBuilder(hub, now=NOW).build(only=names)
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            failures.append(exc)

    threads = [threading.Thread(target=build, args=([f"ds-{i:03d}"],)) for i in (1, 7, 20, 33)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and not any(t.is_alive() for t in threads)
    site = hub.settings.site_dir
    assert tree(site) == full_build_elsewhere(hub, tmp_path / "reference")
    assert not list(site.rglob("*.partial"))


def test_a_build_waits_while_another_holds_the_site_and_says_so_past_its_wait(hub: Hub) -> None:
    import threading

    from catalogue.errors import SiteBusy
    from catalogue.sitegen.build_lock import site_build_lock
    from catalogue.sitegen.listings import MANIFEST

    site = hub.settings.site_dir
    with site_build_lock(site):
        waiting = threading.Thread(target=lambda: SiteBuilder(hub, now=NOW).build())
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and not (site / MANIFEST).exists()
        with pytest.raises(SiteBusy) as busy:
            with site_build_lock(site, wait_s=0.1):
                pass
    assert (busy.value.code, busy.value.status) == ("site-busy", 503)
    assert str(site) in busy.value.message and "build-site" in busy.value.message
    waiting.join(timeout=120)
    assert not waiting.is_alive() and (site / MANIFEST).is_file()


def test_the_build_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from catalogue.sitegen.build_lock import site_build_lock

    site = tmp_path / "site"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib\n"
         "from catalogue.sitegen.build_lock import site_build_lock\n"
         "with site_build_lock(pathlib.Path(sys.argv[1])):\n"
         "    print('held', flush=True)\n    time.sleep(600)\n", str(site)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        from catalogue.errors import SiteBusy

        with pytest.raises(SiteBusy):
            with site_build_lock(site, wait_s=0.1):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with site_build_lock(site, wait_s=5):
            assert (site / ".build.lock").is_file()
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()
