"""Catalogue search: datasets whose title, description or keywords hold every word of a query.

The words are looked up in the full-text index (``catalogue/meta/fts.py``: FTS5 on SQLite, a
GIN-indexed tsvector on PostgreSQL), folded and stemmed the German way: ``Luftqualitäten``,
``luftqualitaet`` and ``LUFTQUALITÄT`` find "Luftqualität"; each word matches the words it begins.
Order: datasets with the first word in their (German) title first, then by name.

On SQLite a plain search (no area, no publisher) is answered by the index: its count, its title-first
split and the visibility condition; only the page's datasets are read. The page is the matches in name
order, taken along the name index where many match (a few steps of it find a page) and by sorting the
matches where few do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, case, false, func, literal, select, text, true
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from catalogue.errors import InvalidParameter
from catalogue.meta import fts
from catalogue.meta.area import intersects
from catalogue.meta.extent import BBox
from catalogue.meta.metadata import of_publisher, visible
from catalogue.meta.models import Dataset

MAX_TERMS = 10
MAX_QUERY_CHARS = 200


@dataclass
class SearchResult:
    """One page of matching datasets and how many match in all."""

    total: int
    datasets: list[Dataset]


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


def matching(q: str, dialect: str = "sqlite") -> tuple[ColumnElement[bool], ColumnElement[int]]:
    """The condition "matches every word of ``q``" and a rank to sort by (0: the first word is in the title).

    Visibility is not part of it (callers add ``metadata.visible``).
    """
    groups = fts.query_words(parse_query(q))
    if groups is None:
        return false(), literal(1)
    if dialect == "postgresql":
        condition, in_title = fts.pg_match(groups)
        return condition, case((in_title, 0), else_=1)
    match = fts.sqlite_match(groups)
    return fts.in_index(match.every), case((fts.in_index(match.titled), 0), else_=1)


def search_datasets(
    session: Session, q: str | None, limit: int = 100, offset: int = 0, *, publisher: str | None = None,
    private_of: int | None = None, bbox: BBox | None = None,
) -> SearchResult:
    """Datasets matching every word of ``q`` (see the module), title matches first, then by name.

    Only datasets ``visible(private_of)`` are searched (default: the public ones). With ``bbox``, only
    those whose spatial extent intersects it (``catalogue/meta/area.py``); ``q`` may then be None (by name).
    """
    if limit < 0 or offset < 0:
        raise InvalidParameter("limit and offset must be zero or positive.")
    if q is None and bbox is None:
        raise InvalidParameter("Give a search query (q) or an area (bbox).", details={"parameter": "q"})
    dialect = session.get_bind().dialect.name
    if q is not None and dialect == "sqlite" and bbox is None and publisher is None:
        return _search_index(session, q, limit, offset, private_of)
    condition, rank = matching(q, dialect) if q is not None else (true(), literal(0))
    condition = and_(visible(private_of), condition)
    if bbox is not None:
        condition = and_(condition, intersects(session, bbox))
    if publisher is not None:
        condition = and_(condition, of_publisher(publisher))
    # The total comes along with the page (a window over the matches): one pass over the
    # catalogue, where a separate count would make two. A page past the end counts apart.
    rows = session.execute(
        select(Dataset.id, func.count().over()).where(condition)
        .order_by(rank, Dataset.name)
        .limit(limit).offset(offset)
    ).all()
    if rows:
        total = int(rows[0][1])
    elif offset == 0 and limit > 0:
        total = 0
    else:
        total = session.scalar(select(func.count()).select_from(Dataset).where(condition)) or 0
    return SearchResult(total=total, datasets=_loaded(session, [row[0] for row in rows]))


# Below this many matches a page is found by sorting the matches by name; above, by walking the name index
# until a page of matches is found (about limit / share-of-matches steps). Where the two meet, both take ~1 ms.
SORT_AT_MOST = 300
# The index of UNIQUE (name) (sqlite_autoindex_datasets_1 where create_all or migration 0001 made the table).
_NAME_INDEX = text("SELECT l.name FROM pragma_index_list('datasets') AS l WHERE l.\"unique\" AND "
                   "(SELECT group_concat(i.name) FROM pragma_index_info(l.name) AS i) = 'name'")


def _search_index(session: Session, q: str, limit: int, offset: int, reader: int | None) -> SearchResult:
    """SQLite: the count, the title-first split and visibility from the FTS5 index; only the page is read."""
    groups = fts.query_words(parse_query(q))
    if groups is None:
        return SearchResult(total=0, datasets=[])
    total, ids = title_first_page(session, fts.sqlite_match(groups, reader), limit, offset,
                                  lambda match, matches, n, skip: _by_name(session, match, matches, n, skip))
    return SearchResult(total=total, datasets=_loaded(session, ids))


def title_first_page(session: Session, match: fts.Match, limit: int, offset: int,
                     page: Callable[[str, int, int, int], list[int]]) -> tuple[int, list[int]]:
    """SQLite: the total of an FTS5 search and the ids of one page, the title matches before the others.

    Both parts are counted in the index. ``page(part, its matches, limit, offset)`` orders one part
    (the title matches, then the others) and is called only for the parts the page reaches. (Counting
    the title matches costs about 1 ms at 100,000 datasets; not knowing there are none cost a walk of
    the whole name index, 9 ms, for a word that is in no title.)
    """
    total = session.scalar(fts.count(match.every)) or 0
    titled = (session.scalar(fts.count(match.titled)) or 0) if limit and offset < total else 0
    ids: list[int] = []
    if limit and offset < titled:
        ids = page(match.titled, titled, limit, offset)
    if len(ids) < limit and offset + len(ids) < total:
        ids += page(match.untitled, total - titled, limit - len(ids), max(0, offset - titled))
    return total, ids


def _by_name(session: Session, match: str, matches: int, limit: int, offset: int) -> list[int]:
    """Ids of one page of an FTS5 query's ``matches`` datasets in name order."""
    # Many matches: "INDEXED BY" keeps SQLite on the name index (its planner would sort every match to keep a page).
    name_index = session.scalar(_NAME_INDEX) if matches > SORT_AT_MOST else None
    index = f'INDEXED BY "{name_index}"' if name_index else "NOT INDEXED"
    return list(session.scalars(text(
        f"SELECT id FROM datasets {index} WHERE id IN (SELECT rowid FROM {fts.TABLE} WHERE {fts.TABLE} MATCH :match) "
        "ORDER BY name LIMIT :limit OFFSET :offset"), {"match": match, "limit": limit, "offset": offset}))


def _loaded(session: Session, ids: list[int]) -> list[Dataset]:
    """The datasets ``ids`` in that order, with publisher and current version loaded."""
    if not ids:
        return []
    found = {d.id: d for d in session.scalars(
        select(Dataset).where(Dataset.id.in_(ids))
        .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version)))}
    return [found[i] for i in ids]
