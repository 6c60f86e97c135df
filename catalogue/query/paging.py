"""Paging rules of records: the page-size and offset walls, and where the next page starts.

The HTTP layer only turns the answers into status codes and links; the rules live here so
every front end (API, site, a future CLI) pages the same way.
"""

from __future__ import annotations

from catalogue.errors import InvalidParameter
from catalogue.settings import Settings


def page_limit(limit: int | None, offset: int, settings: Settings) -> int:
    """The rows of one page: ``limit`` or the default; InvalidParameter past either wall.

    A request may lower the configured maximum, never raise it. Past ``max_offset_rows`` an
    offset would make the engine skip ever more rows, so the keyset cursor takes over there.
    """
    limit = settings.default_page_size if limit is None else limit
    if limit > settings.max_returned_rows:
        raise InvalidParameter(
            f"limit={limit} is above the maximum of {settings.max_returned_rows} rows per page. "
            "Page with offset or cursor, or use /exports for the whole dataset.",
            details={"parameter": "limit", "maximum": settings.max_returned_rows},
        )
    if offset + limit > settings.max_offset_rows:
        raise InvalidParameter(
            f"offset+limit may be at most {settings.max_offset_rows}. To read further, follow links.next "
            "(a cursor that pages to the end of any dataset), or use /exports.",
            details={"parameter": "offset", "maximum": settings.max_offset_rows},
        )
    return limit


def next_page(
    *, next_cursor: str | None, keyed: bool, offset: int, limit: int, total_count: int, max_offset_rows: int
) -> dict[str, str | int] | None:
    """The parameters of the next page (``cursor`` or ``offset``, and ``limit``), or None on the last page.

    A plan that pages by position continues with its cursor; otherwise the next offset page is
    offered only while it stays inside the offset wall (past it, a request would be refused).
    """
    if next_cursor:
        return {"cursor": next_cursor, "limit": limit}
    if not keyed and offset + limit < total_count and offset + 2 * limit <= max_offset_rows:
        return {"offset": offset + limit, "limit": limit}
    return None
