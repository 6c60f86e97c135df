"""Markdown descriptions made safe for a page: raw HTML is not rendered and unsafe link schemes are refused."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

# "js-default": CommonMark with raw HTML off; markdown-it's validateLink refuses javascript:, vbscript:,
# file: and data: (other than images) links, which then stay plain text.
_MD = MarkdownIt("js-default").disable("image")


def markdown(text: str) -> Markup:
    """``text`` as sanitised HTML (links open without a referrer and never run script)."""
    html = _MD.render(text or "")
    return Markup(html.replace("<a href=", '<a rel="nofollow noopener noreferrer" href='))


def plain_excerpt(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` cut at a word boundary, with an ellipsis when cut."""
    flat = " ".join((text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit + 1].rsplit(" ", 1)[0].rstrip(",;:.–- ")
    return (cut or flat[:limit]) + " …"
