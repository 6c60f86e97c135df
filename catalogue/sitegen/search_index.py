"""The site's prebuilt search index: German-aware terms and facet values of every dataset, as static JSON.

A static host has no search server, so the builder writes ``search/index.json``:
every dataset's card data and facet values (``docs``), and a sorted list of terms
with the documents holding each (``terms``, ``postings``). ``site/static/js/search.js``
reads it and matches exactly as ``search`` here does (the tests hold this function
to the expected answers, and the JavaScript mirrors it line for line):

* text is folded: lower case, ä ö ü → a o u, ß → ss, other accents dropped;
* a query word matches every term it begins (``grundwasser`` → ``grundwasserstande``);
* a query word also matches by its stem, German plural and case endings cut
  (``parkplatze`` → ``parkplatz``), so "Parkplätze" finds "Parkplatz" and back;
* every query word must match (AND); hits are ordered by the number of title matches, then title.

Each dataset's entry is kept beside the site (``.search-docs.json``, not served), so an
incremental build replaces the entries of changed datasets and rewrites the index without
reading the others from the catalogue.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from catalogue.meta.german_words import ENDINGS, MIN_STEM, fold, stem, words
from catalogue.sitegen.partial_files import write_whole

INDEX_PATH = "search/index.json"
DOCS_FILE = ".search-docs.json"
INDEX_FORMAT = 1
DOCS_FORMAT = 2  # the kept entries; 2: with each dataset's row count, which its card shows
# Folding and stemming live in catalogue/meta/german_words.py (the catalogue's full-text search uses them too).
__all__ = ["ENDINGS", "MIN_STEM", "build_index", "doc_terms", "fold", "read_entries", "search", "stem", "words",
           "write_index"]


def doc_terms(texts: Iterable[str]) -> list[str]:
    """The sorted, distinct terms of a dataset's texts (each word and its stem)."""
    found: set[str] = set()
    for text in texts:
        for w in words(text):
            found.update((w, stem(w)))
    return sorted(found)


def build_index(entries: Mapping[str, Mapping[str, Any]],
                publishers: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The index document from each dataset's entry ``{"doc": {...}, "terms": [...], "title_terms": [...]}``;
    ``publishers`` gives each publisher's (German, English) title, shown once instead of in every doc."""
    names = sorted(entries, key=lambda n: (fold(entries[n]["doc"]["title"]), n))
    docs = [entries[n]["doc"] for n in names]
    postings: defaultdict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        for term in entries[name]["terms"]:
            postings[term].append(i)
    terms = sorted(postings)
    title_terms = [entries[n]["title_terms"] for n in names]
    return {"format": INDEX_FORMAT, "docs": docs, "terms": terms, "postings": [postings[t] for t in terms],
            "title_terms": title_terms, "publishers": {k: list(v) for k, v in sorted((publishers or {}).items())}}


def _matching(index: Mapping[str, Any], word: str) -> set[int]:
    """Documents with a term beginning ``word`` or its stem (a binary search for the prefix range)."""
    terms: list[str] = index["terms"]
    found: set[int] = set()
    for prefix in {word, stem(word)}:
        lo, hi = 0, len(terms)
        while lo < hi:
            mid = (lo + hi) // 2
            if terms[mid] < prefix:
                lo = mid + 1
            else:
                hi = mid
        while lo < len(terms) and terms[lo].startswith(prefix):
            found.update(index["postings"][lo])
            lo += 1
    return found


def search(index: Mapping[str, Any], query: str, filters: Mapping[str, str] | None = None) -> list[str]:
    """Names of the datasets matching every word of ``query`` and every facet filter, best first.

    ``filters`` maps a facet key of the docs (``publisher``, ``themes``, ``license``, ``formats``,
    ``frequency``, ``geometry``, ``timeseries``) to a value; list-valued facets match if they hold it.
    """
    docs: list[dict[str, Any]] = index["docs"]
    hits: set[int] | None = None
    query_words = words(query)
    for word in query_words:
        found = _matching(index, word)
        hits = found if hits is None else hits & found
    chosen = set(range(len(docs))) if hits is None else hits
    for key, value in (filters or {}).items():
        chosen = {i for i in chosen if _facet_has(docs[i].get(key), value)}

    def title_score(i: int) -> int:
        held = index["title_terms"][i]
        return sum(1 for w in query_words if any(t.startswith(w) or t.startswith(stem(w)) for t in held))

    return [docs[i]["name"] for i in sorted(chosen, key=lambda i: (-title_score(i), i))]


def _facet_has(held: Any, value: str) -> bool:
    if isinstance(held, list):
        return value in held
    if isinstance(held, bool):
        return value == ("true" if held else "false")
    return bool(held == value)


def read_entries(site_dir: Path) -> dict[str, Any]:
    """The kept entries of the last build (empty when there are none or they cannot be read)."""
    try:
        doc = json.loads((site_dir / DOCS_FILE).read_text(encoding="utf-8"))
        return dict(doc["entries"]) if doc.get("format") == DOCS_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_index(site_dir: Path, entries: Mapping[str, Any], publishers: Mapping[str, tuple[str, str]]) -> None:
    """Write the served index and the kept entries, each replaced in one step."""
    _replace(site_dir / INDEX_PATH, build_index(entries, publishers))
    _replace(site_dir / DOCS_FILE, {"format": DOCS_FORMAT, "entries": dict(sorted(entries.items()))})


def _replace(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
