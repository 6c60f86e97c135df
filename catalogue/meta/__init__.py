"""Catalogue metadata: models, database, definitions, search, licences, vocabularies."""
