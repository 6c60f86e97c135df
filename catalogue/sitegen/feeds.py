"""The site's machine-readable files: Atom feeds of new versions, sitemap.xml and robots.txt."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

ATOM_ENTRIES = 50


@dataclass(frozen=True)
class FeedEntry:
    """One published version."""

    dataset: str
    title: str
    number: int
    created_at: datetime
    row_count: int
    sha256: str


def _iso(moment: datetime) -> str:
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def atom(feed_id: str, title: str, self_url: str, site_url: str, entries: Iterable[FeedEntry],
         updated: datetime) -> str:
    """An Atom 1.0 feed; ``site_url`` ends with ``/`` and every entry links to its version page below it."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"  <id>{escape(feed_id)}</id>",
        f"  <title>{escape(title)}</title>",
        f"  <updated>{_iso(updated)}</updated>",
        f"  <link rel=\"self\" href={quoteattr(self_url)}/>",
        f"  <link rel=\"alternate\" type=\"text/html\" href={quoteattr(site_url)}/>",
        "  <author><name>Datendrehscheibe Musterstadt</name></author>",
    ]
    for e in list(entries)[:ATOM_ENTRIES]:
        page = f"{site_url}datasets/{e.dataset}/v{e.number}.html"
        parts += [
            "  <entry>",
            f"    <id>urn:urbandata:{escape(e.dataset)}:v{e.number}:{e.sha256}</id>",
            f"    <title>{escape(f'{e.title} – Version {e.number}')}</title>",
            f"    <updated>{_iso(e.created_at)}</updated>",
            f"    <link rel=\"alternate\" type=\"text/html\" href={quoteattr(page)}/>",
            f"    <summary>{escape(f'{e.row_count} Zeilen, SHA-256 {e.sha256}')}</summary>",
            "  </entry>",
        ]
    parts.append("</feed>")
    return "\n".join(parts) + "\n"


def sitemap(site_url: str, pages: Iterable[str]) -> str:
    """A sitemap of ``pages`` (paths below the site root), each with its other-language page as alternate."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:xhtml="http://www.w3.org/1999/xhtml">']
    for page in sorted(set(pages)):
        alternates = (f"<xhtml:link rel=\"alternate\" hreflang=\"de\" href={quoteattr(site_url + page)}/>"
                      f"<xhtml:link rel=\"alternate\" hreflang=\"en\" href={quoteattr(site_url + 'en/' + page)}/>")
        for prefix in ("", "en/"):
            lines.append(f"  <url><loc>{escape(site_url + prefix + page)}</loc>{alternates}</url>")
    lines.append("</urlset>")
    return "\n".join(lines) + "\n"


def robots(site_url: str) -> str:
    """Every page may be crawled; the API's data answers are left to the API's own host."""
    return f"User-agent: *\nAllow: /\nSitemap: {site_url}sitemap.xml\n"
