"""The storage seam and what lies in it: parts, their layout, descriptors, GeoParquet, changes."""
