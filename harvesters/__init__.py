"""Harvesters: pull deliveries from subsidiaries' sources into the catalogue."""
