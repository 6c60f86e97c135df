"""Paginated listings: which names a page shows, its navigation, and what a rebuild must re-render."""

from __future__ import annotations

from pathlib import Path

from catalogue.sitegen.listings import MANIFEST, Manifest, index_listing, publisher_listing

NAMES = [f"ds-{i:02d}" for i in range(1, 15)]  # 14 names, 3 to a page: pages of 3, 3, 3, 3, 2


def test_pages_hold_the_names_in_order_at_their_paths() -> None:
    index = index_listing(NAMES, 3)
    assert index.page_count == 5
    assert [list(index.page(n)) for n in range(1, 6)] == [NAMES[0:3], NAMES[3:6], NAMES[6:9], NAMES[9:12], NAMES[12:]]
    assert [index.path(n) for n in (1, 2, 5)] == ["page/1.html", "page/2.html", "page/5.html"]
    own = publisher_listing("amt-a", [], 3)
    assert (own.page_count, list(own.page(1)), own.path(1), own.path(2)) == (
        1, [], "publishers/amt-a.html", "publishers/amt-a/page/2.html")


def test_navigation_shows_the_ends_and_two_pages_either_side() -> None:
    listing = index_listing([f"ds-{i:02d}" for i in range(24)], 2)  # 12 pages

    def numbers(page: int) -> list[int | None]:
        return [item["number"] for item in listing.pagination(page)["items"]]

    assert numbers(6) == [1, None, 4, 5, 6, 7, 8, None, 12]
    assert numbers(1) == [1, 2, 3, None, 12]
    assert numbers(4) == [1, 2, 3, 4, 5, 6, None, 12]
    assert numbers(5) == [1, 2, 3, 4, 5, 6, 7, None, 12]  # a gap of one page shows that page
    assert numbers(12) == [1, None, 10, 11, 12]
    assert listing.pagination(6) == {
        "number": 6, "count": 12, "prev": "page/5.html", "next": "page/7.html",
        "items": [
            {"number": 1, "path": "page/1.html", "current": False},
            {"number": None, "path": None, "current": False},
            *[{"number": k, "path": f"page/{k}.html", "current": k == 6} for k in (4, 5, 6, 7, 8)],
            {"number": None, "path": None, "current": False},
            {"number": 12, "path": "page/12.html", "current": False},
        ],
    }
    assert (listing.pagination(1)["prev"], listing.pagination(12)["next"]) == (None, None)


def test_an_edit_touches_only_the_pages_showing_the_edited_datasets() -> None:
    index = index_listing(NAMES, 3)
    assert index.pages_to_render(NAMES, {"ds-08", "ds-13"}) == {3, 5}
    assert index.pages_to_render(NAMES, set()) == set()
    assert index.pages_to_render(None, set()) == {1, 2, 3, 4, 5}  # nothing known about the last build


def test_an_added_or_removed_dataset_touches_the_pages_from_its_position_and_page_one() -> None:
    added = sorted([*NAMES, "ds-07b"])  # 15 names: still 5 pages
    assert index_listing(added, 3).pages_to_render(NAMES, {"ds-07b"}) == {1, 3, 4, 5}
    removed = [n for n in NAMES if n != "ds-11"]  # 13 names: still 5 pages
    assert index_listing(removed, 3).pages_to_render(NAMES, set()) == {1, 4, 5}
    swapped = [*NAMES[:-1], "ds-99"]  # same count, the last name replaced
    assert index_listing(swapped, 3).pages_to_render(NAMES, set()) == {5}


def test_a_change_of_the_page_count_touches_every_page() -> None:
    grown = [*NAMES, "ds-15", "ds-16"]  # 6 pages: every page's navigation changes
    assert index_listing(grown, 3).pages_to_render(NAMES, set()) == {1, 2, 3, 4, 5, 6}
    assert index_listing(NAMES[:12], 3).pages_to_render(NAMES, set()) == {1, 2, 3, 4}


def test_the_manifest_round_trips_and_a_broken_one_reads_as_none(tmp_path: Path) -> None:
    titles = {"ds-01": ("Zoo", "Zoo"), "ds-02": ("Bäder", "Pools"), "ds-03": ("Ämter", "Offices")}
    manifest = Manifest(3, {"ds-01": "amt-a", "ds-02": "amt-b", "ds-03": "amt-a"}, ["amt-a", "amt-b", "amt-c"], titles)
    manifest.write(tmp_path)
    assert Manifest.read(tmp_path) == manifest
    assert manifest.by_publisher("de") == {"amt-a": ["ds-03", "ds-01"], "amt-b": ["ds-02"], "amt-c": []}
    assert manifest.ordered("de") == ["ds-03", "ds-02", "ds-01"]  # Ä sorts as A
    assert manifest.ordered("en") == ["ds-03", "ds-02", "ds-01"]
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]
    for broken in ("", "{", '{"format": 2}', '{"format": 99, "page_size": 3, "datasets": {}, "publishers": []}'):
        (tmp_path / MANIFEST).write_text(broken, encoding="utf-8")
        assert Manifest.read(tmp_path) is None
    assert Manifest.read(tmp_path / "missing") is None
