"""A dataset's spatial extent as a bounding box: read from its ``spatial`` metadata, or from a query parameter.

Pure functions (no database): the models keep the box in step with ``spatial`` (``Dataset.bbox_*``), and
the area search (``catalogue/meta/area.py``) reads a request's box with ``parse_bbox``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from catalogue.errors import InvalidParameter

BBox = tuple[float, float, float, float]  # west, south, east, north in degrees (WGS 84)


def extent_bbox(spatial: dict[str, Any] | None) -> BBox | None:
    """The bounding box of an extent given as ``{"bbox": [w, s, e, n]}`` or a GeoJSON geometry; None without one."""
    if not spatial:
        return None
    if "bbox" in spatial:
        west, south, east, north = (float(v) for v in spatial["bbox"])
        return west, south, east, north
    if "coordinates" in spatial:
        points = list(_points(spatial["coordinates"]))
        if not points:
            return None
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
        return min(xs), min(ys), max(xs), max(ys)
    return None


def _points(coordinates: Any) -> Iterator[Any]:
    if coordinates and isinstance(coordinates[0], (int, float)):
        yield coordinates
    else:
        for inner in coordinates:
            yield from _points(inner)


def parse_bbox(text: str, parameter: str = "bbox") -> BBox:
    """``west,south,east,north`` in degrees; InvalidParameter naming ``parameter`` for anything else."""
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameter(f"{parameter} takes four numbers west,south,east,north (e.g. 9.9,53.5,10.1,53.6); "
                               f"got '{text[:80]}'.", details={"parameter": parameter}) from None
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidParameter(f"{parameter}: west must not exceed east nor south north, longitudes within -180..180 "
                               "and latitudes within -90..90.", details={"parameter": parameter})
    return west, south, east, north
