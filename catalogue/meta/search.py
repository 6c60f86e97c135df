"""Catalogue search: datasets whose title, description or keywords contain every word of a query.

Plain SQL (``LIKE``/``ILIKE``) over the metadata columns, so it runs the same
on SQLite and PostgreSQL with no extension and no index to keep in step. Case
is ignored: PostgreSQL's ``ILIKE`` folds every letter; SQLite's ``LIKE`` only
ASCII, so a word with non-ASCII letters is also tried capitalised and in upper
case (``über`` finds ``Über``). Keywords are stored as JSON text, where
non-ASCII letters may be ``\\u``-escaped; a word is matched in that form too.

Where the catalogue is on PostgreSQL, a word also matches by its stem through PostgreSQL's full-text
search: the German columns and keywords in the ``german`` configuration, the English ones in
``english`` (see ``matching``). SQLite keeps to the plain matching above.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, case, cast, func, literal, literal_column, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from catalogue.errors import InvalidParameter
from catalogue.meta.area import intersects
from catalogue.meta.extent import BBox
from catalogue.meta.metadata import of_publisher, visible
from catalogue.meta.models import Dataset

ESCAPE = "!"
MAX_TERMS = 10
MAX_QUERY_CHARS = 200


@dataclass
class SearchResult:
    """One page of matching datasets and how many match in all."""

    total: int
    datasets: list[Dataset]


def _like_pattern(text: str) -> str:
    escaped = text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"


def _variants(term: str) -> list[str]:
    """Spellings to try for one word: itself, and where SQLite cannot fold case, its other cases."""
    found = [term]
    if not term.isascii():
        found += [term.lower(), term.capitalize(), term.upper()]
        escaped = json.dumps(term.lower())[1:-1]  # as the JSON keywords column stores it
        found.append(escaped)
    return list(dict.fromkeys(found))


def _searched_text() -> ColumnElement[str]:
    """Every searched column in one text, a line apart: one LIKE per spelling instead of one per column.

    A word has no line break (queries are split on whitespace), so no match spans two columns.
    """
    columns = [Dataset.title, Dataset.title_en, Dataset.description, Dataset.description_en,
               cast(Dataset.keywords, String)]
    text: ColumnElement[str] = func.coalesce(columns[0], "")
    for column in columns[1:]:
        text = text.concat("\n").concat(func.coalesce(column, ""))
    return text


def _term_matches(term: str, text: ColumnElement[str]) -> ColumnElement[bool]:
    return or_(*(text.ilike(_like_pattern(v), escape=ESCAPE) for v in _variants(term)))


def parse_query(q: str) -> list[str]:
    """The words of a search query; InvalidParameter when there are none or too many."""
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidParameter(f"The search query may have at most {MAX_QUERY_CHARS} characters.",
                               details={"parameter": "q"})
    terms = list(dict.fromkeys(q.split()))
    if not terms:
        raise InvalidParameter("The search query is empty; give at least one word.", details={"parameter": "q"})
    if len(terms) > MAX_TERMS:
        raise InvalidParameter(f"The search query may have at most {MAX_TERMS} words.", details={"parameter": "q"})
    return terms


def _config(name: str) -> ColumnElement[Any]:
    return literal_column(f"'{name}'::regconfig")  # a constant: the names are this module's, never the user's


def _full_text() -> ColumnElement[Any]:
    """PostgreSQL: the German columns (and keywords) in the ``german`` configuration, the English in ``english``."""
    keywords = cast(cast(Dataset.keywords, JSONB), String)  # jsonb's text has no \u escapes, unlike stored JSON
    german = func.concat_ws(" ", Dataset.title, Dataset.description, keywords)
    english = func.concat_ws(" ", Dataset.title_en, Dataset.description_en)
    return func.to_tsvector(_config("german"), german).op("||")(func.to_tsvector(_config("english"), english))


def _word_query(word: str) -> ColumnElement[Any]:
    """One search word as a text query: its German stem or its English one."""
    return func.plainto_tsquery(_config("german"), word).op("||")(func.plainto_tsquery(_config("english"), word))


def matching(q: str, dialect: str = "sqlite") -> tuple[ColumnElement[bool], ColumnElement[int]]:
    """The condition "matches every word of ``q``" and a rank to sort by (0: the first word is in the title).

    A word matches where it is part of a searched column. On PostgreSQL (``dialect``), also where a word
    of the German text has its stem (``german`` configuration: ``Baum`` finds ``Bäume``, ``Parkhaus``
    finds ``Parkhäuser``) or of the English text its English stem.
    """
    terms = parse_query(q)
    text = _searched_text()
    words = [_term_matches(t, text) for t in terms]
    in_title = or_(*(Dataset.title.ilike(_like_pattern(v), escape=ESCAPE) for v in _variants(terms[0])))
    if dialect == "postgresql":
        vector = _full_text()
        words = [or_(word, vector.bool_op("@@")(_word_query(t))) for word, t in zip(words, terms)]
        in_title = or_(in_title, func.to_tsvector(_config("german"), Dataset.title).bool_op("@@")(
            func.plainto_tsquery(_config("german"), terms[0])))
    return and_(*words), case((in_title, 0), else_=1)


def search_datasets(
    session: Session, q: str | None, limit: int = 100, offset: int = 0, *, publisher: str | None = None,
    private_of: int | None = None, bbox: BBox | None = None,
) -> SearchResult:
    """Datasets matching every word of ``q`` (case-insensitive), title matches first, then by name.

    Only datasets ``visible(private_of)`` are searched (default: the public ones). With ``bbox``, only
    those whose spatial extent intersects it (``catalogue/meta/area.py``); ``q`` may then be None (by name).
    """
    if limit < 0 or offset < 0:
        raise InvalidParameter("limit and offset must be zero or positive.")
    if q is None and bbox is None:
        raise InvalidParameter("Give a search query (q) or an area (bbox).", details={"parameter": "q"})
    dialect = session.get_bind().dialect.name
    condition, rank = matching(q, dialect) if q is not None else (true(), literal(0))
    condition = and_(visible(private_of), condition)
    if bbox is not None:
        condition = and_(condition, intersects(session, bbox))
    if publisher is not None:
        condition = and_(condition, of_publisher(publisher))
    # The total comes along with the page (a window over the matches): one pass over the
    # catalogue, where a separate count would make two. A page past the end counts apart.
    rows = session.execute(
        select(Dataset, func.count().over()).where(condition)
        .order_by(rank, Dataset.name)
        .limit(limit).offset(offset)
        .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version))
    ).all()
    if rows:
        total = int(rows[0][1])
    elif offset == 0 and limit > 0:
        total = 0
    else:
        total = session.scalar(select(func.count()).select_from(Dataset).where(condition)) or 0
    return SearchResult(total=total, datasets=[row[0] for row in rows])
