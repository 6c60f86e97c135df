"""A large synthetic catalogue, inserted cheaply: metadata rows only, each with one metadata-only version."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert, select, update

from bench.context import Context
from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.settings import Settings

TOPICS = ["Parkplatzbelegung", "Luftqualität", "Verkehrszählung", "Abfallbehälter", "Grundwasserstände",
          "Baumkataster", "Haltestellen", "Ladesäulen", "Radverkehr", "Lärmkarte", "Bebauungspläne",
          "Wahlergebnisse", "Bevölkerung", "Spielplätze", "Straßenbeleuchtung", "Wasserverbrauch",
          "Stromverbrauch", "Schulen", "Kindertagesstätten", "Grünflächen"]
TOPICS_EN = ["Parking occupancy", "Air quality", "Traffic counts", "Waste bins", "Groundwater levels",
             "Tree register", "Stops", "Charging points", "Cycling", "Noise map", "Development plans",
             "Election results", "Population", "Playgrounds", "Street lighting", "Water consumption",
             "Electricity consumption", "Schools", "Day-care centres", "Green spaces"]
PLACES = ["Altstadt", "Südstadt", "Nordviertel", "Östliche Vorstadt", "Hafen", "Weststadt", "Grünau", "Mühlenkamp"]
WORDS = ["Messwerte", "stündlich", "täglich", "Sensoren", "Stadtwerke", "Quartier", "Zeitreihe", "Übersicht",
         "Standorte", "Kennzahlen", "Jahreswerte", "Erhebung", "Open Data", "Verwaltung", "Echtzeit"]
KEYWORDS = ["Verkehr", "Umwelt", "Energie", "Wasser", "Bildung", "Soziales", "Mobilität", "Klima", "Gesundheit",
            "Freizeit", "Planung", "Bürger", "Echtzeit", "Statistik"]
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "wert", "type": "number"},
                     {"name": "zeit", "type": "datetime"}], "primaryKey": ["id"]}
LICENSE = "http://dcat-ap.de/def/licenses/dl-by-de/2.0"
RARE_EVERY = 1000  # one dataset in this many carries the rare word "Sonderauswertung"



def _dataset_rows(start: int, stop: int, publishers: int) -> list[dict[str, object]]:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(start, stop):
        rnd = random.Random(i)
        topic = rnd.randrange(len(TOPICS))
        place = rnd.choice(PLACES)
        words = " ".join(rnd.choice(WORDS) for _ in range(12))
        rare = " Sonderauswertung." if i % RARE_EVERY == 7 else ""
        rows.append({
            "id": i + 1, "name": f"ds-{i:06d}", "title": f"{TOPICS[topic]} {place} {2000 + i % 26}",
            "title_en": f"{TOPICS_EN[topic]} {place} {2000 + i % 26}",
            "description": f"{TOPICS[topic]} im Stadtteil {place}: {words}.{rare}",
            "description_en": f"{TOPICS_EN[topic]} in {place}.",
            "keywords": rnd.sample(KEYWORDS, 4), "themes": ["GOVE"], "license": LICENSE,
            "publisher_id": i % publishers + 1, "contact": {}, "update_frequency": "ANNUAL", "spatial": {},
            "table_schema": SCHEMA, "created_at": now, "modified_at": now + timedelta(seconds=i),
        })
    return rows


def grow_catalogue(hub: Hub, have: int, want: int) -> None:
    """Insert datasets ``have``..``want`` (and their publishers), each with one metadata-only version."""
    publishers = max(5, want // 100)
    with hub.sessions.begin() as session:
        existing = session.scalar(select(Organization.id).order_by(Organization.id.desc()).limit(1)) or 0
        if publishers > existing:
            session.execute(insert(Organization), [
                {"id": p, "name": f"pub-{p:04d}", "title": f"Eigenbetrieb {p}", "title_en": f"Municipal company {p}",
                 "description": "Ein Unternehmen der Stadt.", "description_en": "", "homepage": "", "email": ""}
                for p in range(existing + 1, publishers + 1)
            ])
        # Existing datasets keep their publisher; new ones spread over all publishers.
        for start in range(have, want, 20_000):
            stop = min(want, start + 20_000)
            session.execute(insert(Dataset), _dataset_rows(start, stop, publishers))
            session.execute(insert(Version), [
                {"id": i + 1, "dataset_id": i + 1, "number": 1, "row_count": 100 + i, "bytes": 4096 + i,
                 "content_hash": f"{i:064x}", "table_schema": SCHEMA, "descriptor_key": f"datasets/ds-{i:06d}/v1.datapackage.json",
                 "parts": [{"path": f"parts/{i:064x}.parquet", "sha256": f"{i:064x}", "rows": 100 + i, "bytes": 4096 + i}],
                 "changes": {"added": 100 + i, "removed": 0, "changed": 0}, "provenance": {"mode": "replace"},
                 "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
                for i in range(start, stop)
            ])
            session.execute(update(Dataset).where(Dataset.id > start, Dataset.id <= stop)
                            .values(current_version_id=Dataset.id))


def grown_catalogues(ctx: Context, label: str) -> Iterator[tuple[int, Path]]:
    """The synthetic catalogue in ``<work>/<label>-catalogue`` (SQLite), grown to each of ctx.search_sizes in turn.

    Yields (size, data directory) once the catalogue holds ``size`` datasets and no hub has it open (a
    server may take it); the directory is removed at the end.
    """
    data_dir = ctx.work / f"{label}-catalogue"
    shutil.rmtree(data_dir, ignore_errors=True)
    have = 0
    try:
        for size in sorted(ctx.search_sizes):
            ctx.step(f"{label}: inserting datasets up to {size:,}")
            hub = open_hub(Settings(data_dir=data_dir))
            try:
                grow_catalogue(hub, have, size)
            finally:
                hub.close()
            have = size
            yield size, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def add_dataset(hub: Hub, name: str, title: str, word: str) -> None:
    """Publish one more dataset (with a metadata-only version) whose description carries ``word``.

    Named to sort near the front, it moves every later card of the index listing and of its
    publisher's listing, lands among the recently updated on the front page, and is found by search.
    """
    with hub.sessions.begin() as session:
        new_id = (session.scalar(select(Dataset.id).order_by(Dataset.id.desc()).limit(1)) or 0) + 1
        row = _dataset_rows(new_id - 1, new_id, 1)[0]
        row.update(name=name, title=title, description=f"{row['description']} {word}",
                   modified_at=datetime.now(timezone.utc))
        session.execute(insert(Dataset), [row])
        session.execute(insert(Version), [{
            "id": new_id, "dataset_id": new_id, "number": 1, "row_count": 1, "bytes": 4096,
            "content_hash": f"{new_id:064x}", "table_schema": SCHEMA,
            "descriptor_key": f"datasets/{name}/v1.datapackage.json",
            "parts": [{"path": f"parts/{new_id:064x}.parquet", "sha256": f"{new_id:064x}", "rows": 1, "bytes": 4096}],
            "changes": {"added": 1, "removed": 0, "changed": 0}, "provenance": {"mode": "replace"},
            "created_at": datetime.now(timezone.utc)}])
        session.execute(update(Dataset).where(Dataset.id == new_id).values(current_version_id=new_id))


def remove_datasets(hub: Hub, names: list[str]) -> None:
    """Delete the datasets ``add_dataset`` published (and their versions), so the ids of ``grow_catalogue`` stay free."""
    from sqlalchemy import delete

    with hub.sessions.begin() as session:
        ids = list(session.scalars(select(Dataset.id).where(Dataset.name.in_(names))))
        session.execute(update(Dataset).where(Dataset.id.in_(ids)).values(current_version_id=None))
        session.execute(delete(Version).where(Version.dataset_id.in_(ids)))
        session.execute(delete(Dataset).where(Dataset.id.in_(ids)))
