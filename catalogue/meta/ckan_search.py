"""CKAN's package_search over the catalogue database: ``q``, ``fq``, ``sort``, paging, facets, ``ext_bbox``.

``q`` is the catalogue search (every word, title matches first; ``*:*`` or nothing: all datasets).
``fq`` takes Solr's ``field:value`` terms joined by spaces or ``AND`` for the fields a package has
here (organization, groups, tags, license_id, name), each ``+`` or ``-`` prefixed if wanted; anything
else is refused with the fields it could use, never ignored. Filters and counts run in SQL except
where the value sits in a JSON list (tags, groups): those columns alone are read and counted in Python.
``ext_bbox`` is the catalogue's area search (``catalogue/meta/area.py``), the one the API's ``bbox`` uses.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import String, Select, and_, cast, distinct, func, not_, or_, select, true
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from catalogue.errors import InvalidParameter
from catalogue.meta.area import intersects
from catalogue.meta.ckan_mapping import group_name
from catalogue.meta.extent import BBox
from catalogue.meta.metadata import visible
from catalogue.meta.models import Dataset, Organization
from catalogue.meta import fts
from catalogue.meta.search import matching, parse_query, title_first_page

MAX_ROWS = 1000
FACET_FIELDS = ("organization", "groups", "tags", "license_id")
FQ_FIELDS = (*FACET_FIELDS, "name", "metadata_modified", "metadata_created")
RANGE_FIELDS = {"metadata_modified": Dataset.modified_at, "metadata_created": Dataset.created_at}
SORT_KEYS = {
    "name": Dataset.name, "title": Dataset.title, "title_string": Dataset.title,
    "metadata_modified": Dataset.modified_at, "metadata_created": Dataset.created_at,
}
FQ_TERM = re.compile(r'\s*(?P<sign>[+-]?)(?P<field>[a-z_]+):(?:"(?P<quoted>(?:[^"\\]|\\.)*)"'
                     r'|\[(?P<low>\S+) TO (?P<high>[^\s\]]+)\]|(?P<plain>[^\s"\[]+))\s*')
ESCAPE = "!"


@dataclass(frozen=True)
class PackageQuery:
    """One package_search request, checked."""

    q: str | None = None
    fq: tuple[tuple[bool, str, str], ...] = ()  # (negated, field, value)
    sort: tuple[tuple[str, bool], ...] = ()  # (key, descending)
    rows: int = 10
    start: int = 0
    facet_fields: tuple[str, ...] = ()
    facet_limit: int = 50  # -1: every value
    facet_mincount: int = 1
    bbox: BBox | None = None  # ext_bbox: west, south, east, north
    reader: int | None = None  # the publisher whose private datasets are included (a read-private token's)


@dataclass
class PackageHits:
    """One page of matching datasets, their total and the requested facet counts."""

    count: int
    datasets: list[Dataset]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def parse_fq(text: str) -> tuple[tuple[bool, str, str], ...]:
    """The terms of a Solr filter query; InvalidParameter naming the usable fields for anything else."""
    terms, position = [], 0
    text = re.sub(r"\s+AND\s+", " ", text.strip())
    while position < len(text):
        found = FQ_TERM.match(text, position)
        if found is None or found["field"] not in FQ_FIELDS:
            raise InvalidParameter(
                f"fq: cannot read '{text[position:][:60]}'. Give field:value terms (quote values with spaces) "
                f"joined by spaces or AND, with the fields {', '.join(FQ_FIELDS)}.", details={"parameter": "fq"})
        if (found["low"] is not None) != (found["field"] in RANGE_FIELDS):
            raise InvalidParameter(
                f"fq: '{found.group().strip()}': ranges [from TO to] are for {' and '.join(RANGE_FIELDS)} (which take "
                "nothing else), e.g. metadata_modified:[2026-11-01T00:00:00Z TO *].", details={"parameter": "fq"})
        if found["low"] is not None:
            value = f"{_moment(found['low'])}/{_moment(found['high'])}"
        else:
            value = re.sub(r"\\(.)", r"\1", found["quoted"] if found["quoted"] is not None else found["plain"])
        terms.append((found["sign"] == "-", found["field"], value))
        position = found.end()
    return tuple(terms)


def _moment(text: str) -> str:
    """A range end of a Solr date range: ``*`` or an ISO 8601 time (``Z`` or an offset; none: UTC)."""
    if text == "*":
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"fq: '{text}' is no ISO 8601 time (e.g. 2026-11-01T00:00:00Z) nor *.",
                               details={"parameter": "fq"}) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def parse_sort(text: str) -> tuple[tuple[str, bool], ...]:
    """``"metadata_modified desc, name asc"`` as (key, descending) pairs; ``score`` is the search rank."""
    out = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        key, _, direction = item.partition(" ")
        direction = direction.strip().lower() or "asc"
        if (key not in SORT_KEYS and key != "score") or direction not in ("asc", "desc"):
            raise InvalidParameter(f"sort: cannot sort by '{item}'. Use one or more of "
                                   f"{', '.join(['score', *SORT_KEYS])}, each followed by asc or desc.",
                                   details={"parameter": "sort"})
        out.append((key, direction == "desc"))
    return tuple(out)


def _json_list_holds(column: Any, value: str) -> ColumnElement[bool]:
    """Whether a JSON list column holds the string ``value`` (in either JSON spelling of non-ASCII letters)."""
    spellings = {json.dumps(value), json.dumps(value, ensure_ascii=False)}
    text = cast(column, String)
    patterns = ["%" + s.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_") + "%"
                for s in spellings]
    return or_(*(text.like(p, escape=ESCAPE) for p in patterns))


def _fq_condition(name: str, value: str) -> ColumnElement[bool]:
    if name in RANGE_FIELDS:
        low, high = value.split("/")
        column = RANGE_FIELDS[name]
        return and_(true(), *([column >= datetime.fromisoformat(low)] if low != "*" else []),
                    *([column <= datetime.fromisoformat(high)] if high != "*" else []))
    if name == "organization":
        return Dataset.publisher_id.in_(select(Organization.id).where(Organization.name == value).scalar_subquery())
    if name == "groups":
        return _json_list_holds(Dataset.themes, value.upper())
    if name == "tags":
        return _json_list_holds(Dataset.keywords, value)
    if name == "license_id":
        return Dataset.license == value
    return Dataset.name == value


def public() -> ColumnElement[bool]:
    """Datasets anyone may see (no private one)."""
    return visible(None)


def _filtered(query: PackageQuery, dialect: str) -> tuple[ColumnElement[bool], ColumnElement[int] | None]:
    conditions: list[ColumnElement[bool]] = [visible(query.reader)]
    rank = None
    if query.q is not None and query.q.strip() not in ("", "*:*", "*"):
        condition, rank = matching(query.q, dialect)
        conditions.append(condition)
    for negated, name, value in query.fq:
        term = _fq_condition(name, value)
        conditions.append(not_(term) if negated else term)
    return and_(true(), *conditions), rank


def _order(query: PackageQuery, rank: ColumnElement[int] | None) -> list[Any]:
    """The sort CKAN would apply: the asked one, else score then newest first; the name breaks ties."""
    asked = query.sort or (("score", True), ("metadata_modified", True))
    out: list[Any] = []
    for key, descending in asked:
        if key == "score":
            if rank is not None:  # a lower rank is a better match: score desc means rank asc
                out.append(rank.desc() if not descending else rank)
            continue
        column = SORT_KEYS[key]
        out.append(column.desc() if descending else column)
    return [*out, Dataset.name]


def search_packages(session: Session, query: PackageQuery) -> PackageHits:
    """One page of datasets matching ``query``, its total and the facet counts asked for."""
    dialect = session.get_bind().dialect.name
    condition, rank = _filtered(query, dialect)
    if query.bbox is not None:
        condition = and_(condition, intersects(session, query.bbox))
    if dialect == "sqlite" and rank is not None and not query.fq and query.bbox is None and _by_score_first(query):
        count, ids = _index_page(session, query)
    else:
        # The page is found by id alone, then loaded: sorting whole rows (descriptions, schemas) to keep ten took
        # 1.5 s at 100,000 datasets, the ids alone a fraction of it. The total comes along (a window over the
        # matches: one pass over them where a separate count would make two); a page past the end counts apart.
        page = session.execute(select(Dataset.id, func.count().over()).where(condition)
                               .order_by(*_order(query, rank)).limit(query.rows).offset(query.start)).all() \
            if query.rows else []
        ids = [row[0] for row in page]
        count = int(page[0][1]) if page else \
            session.scalar(select(func.count()).select_from(Dataset).where(condition)) or 0
    loaded = {d.id: d for d in session.scalars(
        select(Dataset).where(Dataset.id.in_(ids))
        .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version)))} if ids else {}
    facets = {name: _facet(session, name, condition, query) for name in query.facet_fields}
    return PackageHits(count, [loaded[i] for i in ids], facets)


def _by_score_first(query: PackageQuery) -> bool:
    """Whether the page is sorted by the search rank first (CKAN's default) and by it alone."""
    asked = query.sort or (("score", True),)
    return asked[0] == ("score", True) and all(key != "score" for key, _ in asked[1:])


def _index_page(session: Session, query: PackageQuery) -> tuple[int, list[int]]:
    """SQLite, ``q`` alone: the count from the full-text index, the page from its title matches, then the others.

    Each part is counted in the index and only the part a page reaches is sorted (at 100,000 datasets
    the window over every match read 32,000 rows to count and sort them: 140 ms).
    """
    groups = fts.query_words(parse_query(query.q or ""))
    if groups is None:
        return 0, []
    order = _order(replace(query, sort=(query.sort or (("score", True),))[1:]), None)

    def page(part: str, _matches: int, limit: int, offset: int) -> list[int]:
        return list(session.scalars(select(Dataset.id).where(fts.in_index(part)).order_by(*order)
                                    .limit(limit).offset(offset)))

    return title_first_page(session, fts.sqlite_match(groups, query.reader), query.rows, query.start, page)


def _facet(session: Session, name: str, condition: ColumnElement[bool], query: PackageQuery) -> list[tuple[str, int]]:
    """Values of one facet field among the matches and how many datasets have each, most frequent first."""
    counts: Counter[str] = Counter()
    if name == "organization":
        counts.update(dict(session.execute(
            select(Organization.name, func.count()).join(Dataset, Dataset.publisher_id == Organization.id)
            .where(condition).group_by(Organization.name)).tuples().all()))
    elif name == "license_id":
        counts.update(dict(session.execute(
            select(Dataset.license, func.count()).where(condition).group_by(Dataset.license)).tuples().all()))
    else:
        column = Dataset.themes if name == "groups" else Dataset.keywords
        counts.update(_list_counts(session, column, condition))
        if name == "groups":
            counts = Counter({group_name(v): c for v, c in counts.items()})
    ranked = sorted(((v, c) for v, c in counts.items() if c >= query.facet_mincount), key=lambda vc: (-vc[1], vc[0]))
    return ranked if query.facet_limit < 0 else ranked[:query.facet_limit]


def _list_counts(session: Session, column: Any, condition: ColumnElement[bool]) -> dict[str, int]:
    """How many matching datasets hold each value of a JSON list column.

    SQLite unnests the lists itself (``json_each``): at 100,000 datasets the tags facet took seconds
    read into Python. Other databases: the lists are read and counted here.
    """
    if session.get_bind().dialect.name == "sqlite":
        each = func.json_each(column).table_valued("value")
        return dict(session.execute(
            select(each.c.value, func.count(distinct(Dataset.id))).select_from(Dataset).join(each, true())
            .where(condition).group_by(each.c.value)).tuples().all())
    counts: Counter[str] = Counter()
    for (values,) in session.execute(select(column).where(condition)):
        counts.update(set(values or ()))
    return counts


def select_packages(order_by_modified: bool = False, reader: int | None = None) -> Select[Dataset]:
    """Every dataset ``reader`` may see (see ``PackageQuery``), with what a package dict needs loaded, by name
    (or newest first)."""
    order = (Dataset.modified_at.desc(), Dataset.name) if order_by_modified else (Dataset.name,)
    return (select(Dataset).where(visible(reader)).order_by(*order)
            .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version)))


def theme_counts(session: Session) -> Counter[str]:
    """How many datasets have each data theme."""
    counts: Counter[str] = Counter()
    for (values,) in session.execute(select(Dataset.themes).where(public())):
        counts.update(set(values or ()))
    return counts


def tag_counts(session: Session) -> Counter[str]:
    """How many datasets have each keyword."""
    counts: Counter[str] = Counter()
    for (values,) in session.execute(select(Dataset.keywords).where(public())):
        counts.update(set(values or ()))
    return counts


def publisher_counts(session: Session) -> dict[int, int]:
    """How many datasets each publisher (by id) has."""
    return dict(session.execute(select(Dataset.publisher_id, func.count()).where(public()).group_by(Dataset.publisher_id)).tuples().all())
