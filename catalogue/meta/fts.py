"""The catalogue's full-text index (migration 0007) and the queries over it.

Indexed: the German title, the English title, both descriptions and the keywords. A query's words
are folded and stemmed as the site's search does (``catalogue/meta/german_words.py``), and each word
matches every indexed word it begins, or its stem begins, or (for ``ae``, ``oe``, ``ue`` typed for
ä, ö, ü) its umlaut spelling begins: ``Luftqualität``, ``luftqualitaet`` and ``Luftqualitäten`` all
find "Luftqualität". Every word of a query must match. A word is matched from its start: a part
inside a compound (``verkehr`` in "Radverkehr") is not found, as in the site's search.

* SQLite: the FTS5 table ``dataset_search`` (rowid = dataset id; columns ``title``, ``body``,
  ``access``), kept in step by triggers. Its tokenizer folds case and umlauts of the indexed text;
  ß is written as ss before. Visibility is a condition on ``access``, so a search, its count and its
  title-first split are answered by the index alone.
* PostgreSQL: the generated column ``datasets.search_vector`` (``german``, ``english`` and ``simple``
  configurations, the German title weighted A) with a GIN index; each word is a prefix query in each
  configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, column, func, literal_column, select, table
from sqlalchemy.sql.elements import ColumnElement

from catalogue.meta.german_words import stem, words
from catalogue.meta.models import Dataset

TABLE = "dataset_search"
CONFIGS = ("german", "english", "simple")
_DIGRAPHS = re.compile(r"(?<=[aou])e")  # ae, oe, ue: how ä, ö, ü are typed without umlauts

_index = table(TABLE, column("rowid"))


def alternatives(word: str) -> tuple[str, ...]:
    """The prefixes one folded query word matches by: itself, its stem, and both with ae/oe/ue as ä/ö/ü (folded).

    A prefix that begins another is enough alone (every word the longer one begins, the shorter begins too).
    """
    plain = _DIGRAPHS.sub("", word) if ("ae" in word or "oe" in word or "ue" in word) else word
    found = sorted({word, stem(word), plain, stem(plain)}, key=len)
    kept: list[str] = []
    for prefix in found:
        if not any(prefix.startswith(k) for k in kept):
            kept.append(prefix)
    return tuple(kept)


def query_words(terms: list[str]) -> list[tuple[str, ...]] | None:
    """Each word of the query ``terms`` as its alternatives; None when a term has no letter or digit (nothing matches)."""
    out: list[tuple[str, ...]] = []
    for term in terms:
        found = words(term)
        if not found:
            return None
        out.extend(alternatives(w) for w in dict.fromkeys(found))
    return out


@dataclass(frozen=True)
class Match:
    """FTS5 queries (SQLite) of one search: every word, and split by whether the first word is in the title."""

    every: str
    titled: str
    untitled: str


def _any_of(prefixes: tuple[str, ...]) -> str:
    # The prefixes are [0-9a-z]+ (folded words): quoted, they are never FTS5 syntax.
    return "(" + " OR ".join(f'"{p}"*' for p in prefixes) + ")"


def sqlite_match(groups: list[tuple[str, ...]], reader: int | None | bool = False) -> Match:
    """The FTS5 queries for ``groups`` (from ``query_words``).

    ``reader``: False for no visibility condition (the caller adds it in SQL); None for public datasets
    only; a publisher id for public ones and that publisher's private ones (``metadata.visible``).
    Visibility is written as "NOT private" (few datasets are private: a short list to skip, where
    "public" would be nearly every dataset's: at 100,000 datasets counting 32,000 matches took 12 ms
    with "AND public", 6 ms with "NOT private").
    """
    first, rest = _any_of(groups[0]), [_any_of(g) for g in groups[1:]]
    hidden = "" if reader is False else ' NOT access : "private"' if reader is None else \
        f' NOT (access : "private" NOT access : "p{int(reader)}")'
    every = " AND ".join([first, *rest])
    titled = " AND ".join([f"title : {first}", *rest])
    return Match(every=f"({every}){hidden}", titled=f"({titled}){hidden}",
                 untitled=f"(({every}) NOT title : {first}){hidden}")


def hits(match: str) -> Select[Any]:
    """The ids (rowid) of the datasets an FTS5 query matches."""
    return select(_index.c.rowid).where(literal_column(TABLE).bool_op("MATCH")(match))


def count(match: str) -> Select[Any]:
    """How many datasets an FTS5 query matches, counted in the index."""
    return select(func.count()).select_from(_index).where(literal_column(TABLE).bool_op("MATCH")(match))


def _config(name: str) -> ColumnElement[Any]:
    return literal_column(f"'{name}'::regconfig")  # a constant: the names are this module's, never the user's


def _prefix_query(config: str, prefix: str, weight: str = "") -> ColumnElement[Any]:
    return func.to_tsquery(_config(config), f"{prefix}:*{weight}")


def _any_query(prefixes: tuple[str, ...], configs: tuple[str, ...] = CONFIGS, weight: str = "") -> ColumnElement[Any]:
    queries = [_prefix_query(c, p, weight) for p in prefixes for c in configs]
    found = queries[0]
    for q in queries[1:]:
        found = found.op("||")(q)
    return found


def pg_match(groups: list[tuple[str, ...]]) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """PostgreSQL: "every word matches" over the GIN-indexed ``search_vector``, and "the first word is in the title"."""
    vector: ColumnElement[Any] = literal_column("datasets.search_vector")
    query = _any_query(groups[0])
    for group in groups[1:]:
        query = query.op("&&")(_any_query(group))
    in_title = vector.bool_op("@@")(_any_query(groups[0], ("german",), weight="A"))
    return vector.bool_op("@@")(query), in_title


def in_index(match: str) -> ColumnElement[bool]:
    """SQLite: the dataset is among an FTS5 query's matches."""
    return Dataset.id.in_(hits(match))
