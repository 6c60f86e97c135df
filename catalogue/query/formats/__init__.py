"""Export formats: the rows of a version as csv, json, ndjson, geojson, parquet or xlsx.

Each format is a class registered under the ``urbandata.export_formats`` entry
point (see :class:`catalogue.query.formats.base.ExportFormat`);
:mod:`catalogue.query.exports` plans the query and hands the rows to the one asked for.
"""
