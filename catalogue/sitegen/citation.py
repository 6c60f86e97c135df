"""How to cite one version of a dataset: plain text, BibTeX and RIS, each naming the version and its hash."""

from __future__ import annotations

import re
from dataclasses import dataclass

SITE_NAME = "Datendrehscheibe Musterstadt"


@dataclass(frozen=True)
class Cited:
    """What a citation names."""

    dataset: str
    title: str
    publisher: str
    year: int
    version: int
    sha256: str
    url: str
    licence: str
    date: str  # YYYY-MM-DD of the version


def plain(c: Cited) -> str:
    """One line in the author (year): title style."""
    return (f"{c.publisher} ({c.year}): {c.title}, Version {c.version}. {SITE_NAME}. {c.url} "
            f"(Lizenz: {c.licence}; SHA-256: {c.sha256})")


def _bib(value: str) -> str:
    """A BibTeX field value: braces and backslashes escaped, special characters kept in braces."""
    return re.sub(r"([\\{}%&$#_^~])", r"\\\1", value)


def bibtex(c: Cited) -> str:
    """A ``@dataset`` entry (biblatex) keyed by dataset and version."""
    key = re.sub(r"[^A-Za-z0-9]+", "_", f"{c.dataset}_v{c.version}")
    fields = [
        ("author", "{" + _bib(c.publisher) + "}"), ("title", _bib(c.title)), ("year", str(c.year)),
        ("version", str(c.version)), ("publisher", _bib(SITE_NAME)), ("url", c.url),
        ("note", _bib(f"Lizenz: {c.licence}; SHA-256: {c.sha256}")), ("date", c.date),
    ]
    body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields)
    return f"@dataset{{{key},\n{body}\n}}"


def ris(c: Cited) -> str:
    """An RIS record of type DATA."""
    one_line = {k: v.replace("\n", " ") for k, v in
                {"AU": c.publisher, "TI": c.title, "PB": SITE_NAME, "UR": c.url}.items()}
    lines = [("TY", "DATA"), ("AU", one_line["AU"]), ("TI", one_line["TI"]), ("PY", str(c.year)),
             ("DA", c.date.replace("-", "/")), ("ET", f"Version {c.version}"), ("PB", one_line["PB"]),
             ("UR", one_line["UR"]), ("N1", f"Lizenz: {c.licence}; SHA-256: {c.sha256}"), ("ER", "")]
    return "\n".join(f"{tag}  - {value}".rstrip() for tag, value in lines)
