"""Catalogue search by German stem on both databases (the full-text index of catalogue/meta/fts.py: folded,
stemmed query words as prefixes); PostgreSQL adds English stems (``english`` configuration). Both through
search_datasets and CKAN's package_search ``q``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from catalogue.meta.ckan_search import PackageQuery, search_packages
from catalogue.meta.models import Dataset, Organization
from catalogue.meta.search import search_datasets
from tests.catalogue.search_databases import migrated_engine

DATASETS = [
    # name, title, description, keywords, English title, English description
    ("street-trees", "Bäume an Straßen", "Jeder Standort im Bezirk mit Art und Pflanzjahr.", ["Umwelt"],
     "Street tree register", "Every tree in the district with species and planting year."),
    ("car-parks", "Parken in der Innenstadt", "Belegung der Stellplätze.", ["Parkhäuser", "Verkehr"],
     "Parking downtown", "Occupancy of the spaces."),
    ("groundwater", "Grundwasserstände", "Messungen an Messstellen.", ["Wasser"],
     "Groundwater levels", "Measurements at gauging stations."),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request.param, tmp_path, "fulltext") as engine:
        with Session(engine) as session, session.begin():
            publisher = Organization(name="hamburg", title="Freie und Hansestadt Hamburg")
            for name, title, description, keywords, title_en, description_en in DATASETS:
                session.add(Dataset(name=name, title=title, description=description, keywords=keywords,
                                    title_en=title_en, description_en=description_en, license="dl-zero-de/2.0",
                                    publisher=publisher, table_schema={"fields": []}))
        yield engine


def _found(engine: Engine, q: str) -> tuple[list[str], list[str]]:
    """What search_datasets and CKAN's package_search find for ``q``."""
    with Session(engine) as session:
        api = [d.name for d in search_datasets(session, q).datasets]
        ckan = [d.name for d in search_packages(session, PackageQuery(q=q, rows=100, sort=(("name", False),))).datasets]
    return api, sorted(ckan)


@pytest.mark.parametrize(("q", "by_stem", "english"), [
    ("Baum", ["street-trees"], False),  # German: Bäume -> baum
    ("Parkhaus", ["car-parks"], False),  # a keyword's plural: Parkhäuser -> parkhaus
    ("Grundwasserstand", ["groundwater"], False),  # Grundwasserstände
    ("trees planted", ["street-trees"], True),  # English: every word by its stem (tree, plant)
])
def test_words_match_by_their_stem_and_english_stems_on_postgresql(engine: Engine, q: str, by_stem: list[str],
                                                                     english: bool) -> None:
    expected = by_stem if engine.dialect.name == "postgresql" or not english else []
    assert _found(engine, q) == (expected, expected)


@pytest.mark.parametrize(("q", "expected"), [
    ("Pflanzjahr", ["street-trees"]),  # as written in the description
    ("park", ["car-parks"]),  # part of a word still matches
    ("bäume straßen", ["street-trees"]),  # case folded, every word
    ("Grundwasser Verkehr", []),  # two datasets' words: none has both
])
def test_both_databases_keep_matching_words_as_written(engine: Engine, q: str, expected: list[str]) -> None:
    assert _found(engine, q) == (expected, expected)


def test_a_title_match_comes_first(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Dataset(name="a-register", title="Register", description="Auch Bäume.", license="x",
                            publisher=session.query(Organization).one(), table_schema={"fields": []}))
        session.commit()
    assert _found(engine, "Bäume")[0] == ["street-trees", "a-register"]
