"""Paginated dataset listings of the static site, and which of their pages a rebuild must re-render.

A listing (every dataset, or one publisher's datasets) is sorted by title in the
page's language (folded, the name breaking ties), so a dataset added, removed or
retitled shifts the pages from its old or new place on. The built site keeps a
manifest of what it was built from (each dataset's publisher and titles), so an
incremental build can compare each listing before and after.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalogue.sitegen.search_index import fold
from catalogue.sitegen.partial_files import write_whole

MANIFEST = ".manifest.json"
MANIFEST_FORMAT = 2
NEIGHBOURS = 2  # page links shown either side of the current page


@dataclass(frozen=True)
class Listing:
    """Dataset names (sorted) shown ``size`` to a page: page 1 at ``first``, page n at ``{rest}{n}.html``."""

    first: str
    rest: str
    names: Sequence[str]
    size: int

    @property
    def page_count(self) -> int:
        """Number of pages; an empty listing still has its first page."""
        return max(1, -(-len(self.names) // self.size))

    def path(self, number: int) -> str:
        """Path of page ``number`` below the language root."""
        return self.first if number == 1 else f"{self.rest}{number}.html"

    def page(self, number: int) -> Sequence[str]:
        """The names on page ``number``."""
        return self.names[(number - 1) * self.size:number * self.size]

    def pages_to_render(self, before: Sequence[str] | None, changed: Collection[str]) -> set[int]:
        """Pages that differ from the last build, which listed ``before`` (None: unknown).

        ``changed`` holds the names whose cards changed. Every page's navigation shows
        the page count and page 1 shows the total, so a change of either touches them.
        """
        count = self.page_count
        if before is None or Listing(self.first, self.rest, before, self.size).page_count != count:
            return set(range(1, count + 1))
        pages = {i // self.size + 1 for i, name in enumerate(self.names) if name in changed}
        if len(before) != len(self.names):
            pages.add(1)
        if before != self.names:
            first = next((i for i, (a, b) in enumerate(zip(before, self.names)) if a != b),
                         min(len(before), len(self.names)))
            pages.update(range(first // self.size + 1, count + 1))
        return pages

    def pagination(self, number: int) -> dict[str, Any]:
        """Template context of page ``number``'s navigation; paths are relative to the language root."""
        count = self.page_count
        shown = sorted({1, count} | set(range(max(1, number - NEIGHBOURS), min(count, number + NEIGHBOURS) + 1)))
        items: list[dict[str, Any]] = []
        for k in shown:
            last = items[-1]["number"] if items else 0
            if k - last == 2:  # a gap of one page: show the page rather than an ellipsis
                items.append({"number": k - 1, "path": self.path(k - 1), "current": False})
            elif k - last > 2:
                items.append({"number": None, "path": None, "current": False})
            items.append({"number": k, "path": self.path(k), "current": k == number})
        return {
            "number": number, "count": count, "items": items,
            "prev": self.path(number - 1) if number > 1 else None,
            "next": self.path(number + 1) if number < count else None,
        }


def index_listing(names: Sequence[str], size: int) -> Listing:
    """Every dataset: page n is ``page/<n>.html`` (the front page links to page 1)."""
    return Listing("page/1.html", "page/", names, size)


def publisher_listing(publisher: str, names: Sequence[str], size: int) -> Listing:
    """One publisher's datasets: ``publishers/<name>.html``, then ``publishers/<name>/page/<n>.html``."""
    return Listing(f"publishers/{publisher}.html", f"publishers/{publisher}/page/", names, size)


@dataclass(frozen=True)
class Manifest:
    """What a site was built from: its page size, every dataset (by name) with its publisher and its
    (German, English) titles, every publisher."""

    page_size: int
    datasets: dict[str, str]
    publishers: list[str]
    titles: dict[str, tuple[str, str]]
    # Orders already sorted, by language: a build asks for each several times (read only once made).
    _orders: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def ordered(self, lang: str) -> list[str]:
        """Dataset names sorted by their title in ``lang`` (folded), the name breaking ties."""
        if lang not in self._orders:
            which = 0 if lang == "de" else 1
            self._orders[lang] = sorted(self.datasets,
                                        key=lambda n: (fold(self.titles[n][which] or self.titles[n][0]), n))
        return self._orders[lang]

    def by_publisher(self, lang: str) -> dict[str, list[str]]:
        """Dataset names of each publisher, in title order."""
        own: dict[str, list[str]] = {p: [] for p in self.publishers}
        for name in self.ordered(lang):
            own.setdefault(self.datasets[name], []).append(name)
        return own

    @classmethod
    def read(cls, site_dir: Path) -> Manifest | None:
        """The manifest of the site in ``site_dir``; None if there is none or it cannot be read."""
        try:
            doc = json.loads((site_dir / MANIFEST).read_text(encoding="utf-8"))
            if doc["format"] != MANIFEST_FORMAT:
                return None
            titles = {str(n): (str(t[0]), str(t[1])) for n, t in doc["titles"].items()}
            return cls(int(doc["page_size"]), dict(doc["datasets"]), list(doc["publishers"]), titles)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, site_dir: Path) -> None:
        """Store the manifest in ``site_dir``; replaced in one step, so a reader never sees half of it."""
        doc = {"format": MANIFEST_FORMAT, "page_size": self.page_size, "publishers": self.publishers,
               "datasets": self.datasets, "titles": {n: list(t) for n, t in sorted(self.titles.items())}}
        write_whole(site_dir / MANIFEST, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
