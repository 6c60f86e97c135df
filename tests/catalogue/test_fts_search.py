"""The catalogue's full-text index (catalogue/meta/fts.py, migration 0007) on SQLite and PostgreSQL:
German folding and stemming of indexed text and query, the index kept in step by every kind of write,
visibility of private datasets, the title-first order, and on PostgreSQL a query that uses the GIN index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.orm import Session

from catalogue.meta.ckan_search import PackageQuery, search_packages
from catalogue.meta.fts import alternatives, query_words
from catalogue.meta.models import Dataset, Organization
from catalogue.meta.search import matching, search_datasets
from tests.catalogue.search_databases import migrated_engine

DATASETS = [
    # name, title, description, keywords
    ("air-quality", "Luftqualität am Hafen", "Stündliche Messwerte von Sensoren.", ["Umwelt"]),
    ("street-lights", "Straßenbeleuchtung", "Leuchten an Straßen und Plätzen.", ["Energie"]),
    ("bike-counts", "Radverkehr", "Zählstellen mit Luftqualitätsmessung.", ["Mobilität"]),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request.param, tmp_path, "fts") as engine:
        with Session(engine) as session, session.begin():
            for number, publisher in enumerate(("stadtwerke", "umweltamt"), start=1):
                session.add(Organization(id=number, name=publisher, title=publisher.title()))
            for name, title, description, keywords in DATASETS:
                session.add(Dataset(name=name, title=title, description=description, keywords=keywords,
                                    license="dl-zero-de/2.0", publisher_id=1, table_schema={"fields": []}))
        yield engine


def _names(engine: Engine, q: str, reader: int | None = None) -> list[str]:
    """What search_datasets finds for ``q`` (after the same check through CKAN's package_search)."""
    with Session(engine) as session:
        found = search_datasets(session, q, private_of=reader)
        ckan = search_packages(session, PackageQuery(q=q, rows=100, reader=reader))
    names = [d.name for d in found.datasets]
    assert (found.total, sorted(d.name for d in ckan.datasets), ckan.count) == (len(names), sorted(names), len(names))
    return names


@pytest.mark.parametrize("q", ["Luftqualität", "luftqualitaet", "Luftqualitäten", "LUFTQUALITÄT", "luftqualitat"])
def test_umlauts_case_and_endings_are_folded_in_text_and_query(engine: Engine, q: str) -> None:
    # A title match comes first; the compound "Luftqualitätsmessung" begins with the word.
    assert _names(engine, q) == ["air-quality", "bike-counts"]


@pytest.mark.parametrize(("q", "expected"), [
    ("Straße", ["street-lights"]), ("strassen", ["street-lights"]), ("STRASSENBELEUCHTUNG", ["street-lights"]),
    ("stündlich sensor", ["air-quality"]),  # every word, in the description
    ("mobilitaet", ["bike-counts"]),  # a keyword
    ("verkehr", []),  # a word is matched from its start: not inside the compound "Radverkehr"
    ("hafen straße", []),  # every word must match in one dataset
    ("%_", []),  # no letter: nothing, not everything
])
def test_words_and_keywords(engine: Engine, q: str, expected: list[str]) -> None:
    assert _names(engine, q) == expected


def test_every_kind_of_write_keeps_the_index_in_step(engine: Engine) -> None:
    with Session(engine) as session, session.begin():  # plain SQL writes, as bulk writers and migrations do
        session.execute(insert(Dataset.__table__).values(
            id=10, name="noise", title="Lärmkarte", title_en="", description="", description_en="",
            keywords=["Ruhe"], themes=[], license="x", publisher_id=1, contact={}, update_frequency="IRREG",
            spatial={}, schema={"fields": []}))
    assert _names(engine, "larmkarte") == ["noise"]
    with Session(engine) as session, session.begin():
        session.execute(update(Dataset).where(Dataset.name == "noise").values(title="Lärmaktionsplan"))
        session.get(Dataset, 10).keywords = ["Schallschutz"]  # type: ignore[union-attr]  # an ORM write
    assert (_names(engine, "larmkarte"), _names(engine, "Lärmaktionsplan"), _names(engine, "ruhe"),
            _names(engine, "schallschutz")) == ([], ["noise"], [], ["noise"])
    with Session(engine) as session, session.begin():
        session.execute(delete(Dataset).where(Dataset.name == "noise"))
    assert _names(engine, "Lärmaktionsplan") == []


def test_private_datasets_are_found_by_their_publishers_readers_only(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(Dataset).where(Dataset.name == "air-quality").values(private=True))
    assert _names(engine, "luftqualität") == ["bike-counts"]
    assert _names(engine, "luftqualität", reader=2) == ["bike-counts"]  # another publisher's token
    assert _names(engine, "luftqualität", reader=1) == ["air-quality", "bike-counts"]
    with Session(engine) as session, session.begin():  # moved to the other publisher: its readers see it now
        session.execute(update(Dataset).where(Dataset.name == "air-quality").values(publisher_id=2))
    assert (_names(engine, "luftqualität", reader=1), _names(engine, "luftqualität", reader=2)) == (
        ["bike-counts"], ["air-quality", "bike-counts"])
    with Session(engine) as session, session.begin():
        session.execute(update(Dataset).where(Dataset.name == "air-quality").values(private=False))
    assert _names(engine, "luftqualität") == ["air-quality", "bike-counts"]


def test_pages_run_across_the_title_matches_into_the_others(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for i in range(6):  # names sort before the title match, which still comes first
            session.add(Dataset(name=f"a-{i}", title=f"Bericht {i}", description="Auch Luftqualität.", license="x",
                                publisher_id=1, table_schema={"fields": []}))
    every = ["air-quality", "a-0", "a-1", "a-2", "a-3", "a-4", "a-5", "bike-counts"]
    with Session(engine) as session:
        pages = [search_datasets(session, "Luftqualität", 3, offset) for offset in (0, 3, 6, 9)]
    assert [p.total for p in pages] == [8] * 4
    assert [d.name for p in pages for d in p.datasets] == every


def test_query_words_become_prefixes_by_word_stem_and_umlaut_spelling() -> None:
    assert alternatives("luftqualitaeten") == ("luftqualitat", "luftqualitaet")
    assert alternatives("baume") == ("baum",)
    assert alternatives("park") == ("park",)
    assert query_words(["E-Mobilität", "Straßen"]) == [("e",), ("mobilitat",), ("strass",)]
    assert query_words(["Bäume", "%"]) is None  # a term without a word matches nothing


def test_postgresql_answers_from_the_gin_index(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the GIN index is PostgreSQL's")
    with Session(engine) as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))  # three rows: the planner would scan them
        condition, _ = matching("Luftqualitäten hafen", "postgresql")
        statement = select(Dataset.id).where(condition).compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(session.execute(text(f"EXPLAIN {statement}")).scalars())
    assert "ix_datasets_search" in plan, plan
