"""German-aware words: folding and stemming shared by the catalogue's full-text search and the site's search index.

One implementation for both (``catalogue/meta/fts.py`` folds and stems query words with it,
``catalogue/sitegen/search_index.py`` the static index's terms; ``site/static/js/search.js``
mirrors it line for line):

* text is folded: lower case, ä ö ü → a o u, ß → ss, other accents dropped;
* a word's stem is the word without one German plural or case ending (``parkplatze`` → ``parkplatz``).
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[0-9a-z]+")
_FOLD = str.maketrans({"ä": "a", "ö": "o", "ü": "u", "ß": "ss", "ẞ": "ss"})
# Longest first: German plural and case endings cut from a word to find its stem.
ENDINGS = ("ern", "en", "er", "es", "e", "n", "s")
MIN_STEM = 4


def fold(text: str) -> str:
    """Lower case without umlauts, ß or accents: ``Grundwasserstände`` → ``grundwasserstande``."""
    lowered = text.lower().translate(_FOLD)
    if lowered.isascii():  # most titles once their umlauts are folded: nothing left to decompose
        return lowered
    return "".join(c for c in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _WORD.findall(fold(text))


def stem(word: str) -> str:
    """``word`` without one German plural or case ending, keeping at least ``MIN_STEM`` letters."""
    for ending in ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= MIN_STEM:
            return word[: -len(ending)]
    return word
