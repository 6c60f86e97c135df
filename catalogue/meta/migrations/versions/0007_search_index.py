"""Full-text search index of the datasets: FTS5 on SQLite, a GIN-indexed tsvector on PostgreSQL.

SQLite: ``dataset_search``, an FTS5 table (``unicode61`` with diacritics removed: case and ä → a folded,
ß → ss before tokenizing) whose rowid is the dataset's id, with three columns: ``title`` (the German
title, for the title-first order), ``body`` (English title, both descriptions, the keywords' values)
and ``access`` (``public``, or ``private p<publisher id>``, so visibility is decided inside the index).
Triggers on ``datasets`` keep it in step with every write (ORM or plain SQL: definitions, harvests,
pushes, catalogue runs, deletions, privacy changes), and the migration fills it from existing rows.

PostgreSQL: ``search_vector``, a generated column (so no writer keeps it in step): the German title
(weight A) and the German description and keywords in the ``german`` configuration, the English
texts in ``english``, everything also in ``simple`` (words as written, stop words kept), with a GIN
index that ``catalogue/meta/fts.py``'s ``@@`` queries use.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _folded(sql: str) -> str:
    """ß as ss before the tokenizer (unicode61 folds case and umlauts, not ß)."""
    return f"replace(replace({sql}, 'ß', 'ss'), 'ẞ', 'ss')"


def _sqlite_values(row: str) -> str:
    """The indexed texts of one ``datasets`` row (``row``: NEW, OLD or datasets), as SQL."""
    keywords = f"(SELECT group_concat(value, ' ') FROM json_each({row}.keywords))"
    body = " || ' ' || ".join(f"coalesce({part}, '')" for part in (
        f"{row}.title_en", f"{row}.description", f"{row}.description_en", keywords))
    title = f"coalesce({row}.title, '')"
    access = f"CASE WHEN {row}.private THEN 'private p' || {row}.publisher_id ELSE 'public' END"
    return f"{row}.id, {_folded(title)}, {_folded(body)}, {access}"


SQLITE_UPGRADE = [
    "CREATE VIRTUAL TABLE dataset_search USING fts5(title, body, access, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    f"INSERT INTO dataset_search (rowid, title, body, access) SELECT {_sqlite_values('datasets')} FROM datasets",
    "CREATE TRIGGER dataset_search_insert AFTER INSERT ON datasets BEGIN "
    f"INSERT INTO dataset_search (rowid, title, body, access) VALUES ({_sqlite_values('NEW')}); END",
    "CREATE TRIGGER dataset_search_update AFTER UPDATE OF title, title_en, description, description_en, keywords, "
    "private, publisher_id ON datasets BEGIN DELETE FROM dataset_search WHERE rowid = OLD.id; "
    f"INSERT INTO dataset_search (rowid, title, body, access) VALUES ({_sqlite_values('NEW')}); END",
    "CREATE TRIGGER dataset_search_delete AFTER DELETE ON datasets BEGIN "
    "DELETE FROM dataset_search WHERE rowid = OLD.id; END",
]
SQLITE_DOWNGRADE = ["DROP TRIGGER IF EXISTS dataset_search_delete", "DROP TRIGGER IF EXISTS dataset_search_update",
                    "DROP TRIGGER IF EXISTS dataset_search_insert", "DROP TABLE IF EXISTS dataset_search"]

# jsonb's text of the keywords has no \u escapes (the json column keeps them as written); every part is immutable.
_PG_KEYWORDS = "coalesce(keywords::jsonb::text, '')"
PG_UPGRADE = [
    "ALTER TABLE datasets ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('german'::regconfig, coalesce(title, '')), 'A') || "
    f"to_tsvector('german'::regconfig, coalesce(description, '') || ' ' || {_PG_KEYWORDS}) || "
    "to_tsvector('english'::regconfig, coalesce(title_en, '') || ' ' || coalesce(description_en, '')) || "
    "to_tsvector('simple'::regconfig, coalesce(title, '') || ' ' || coalesce(title_en, '') || ' ' || "
    f"coalesce(description, '') || ' ' || coalesce(description_en, '') || ' ' || {_PG_KEYWORDS})) STORED",
    "CREATE INDEX ix_datasets_search ON datasets USING gin (search_vector)",
]
PG_DOWNGRADE = ["DROP INDEX IF EXISTS ix_datasets_search", "ALTER TABLE datasets DROP COLUMN IF EXISTS search_vector"]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UPGRADE if dialect == "sqlite" else PG_UPGRADE if dialect == "postgresql" else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWNGRADE if dialect == "sqlite" else PG_DOWNGRADE if dialect == "postgresql" else []:
        op.execute(statement)
