"""The gate in front of user SQL: one read-only SELECT over our dataset views, checked on DuckDB's own AST.

The tokens are checked first (one statement, starting like a query, nested
at most 100 deep: :mod:`catalogue.sql.tokens`), then DuckDB's parser
(``json_serialize_sql``, which reads no file) builds the tree in a throwaway
connection; we never look at the raw text with patterns. The tree is then walked with
allow-lists:

- query nodes: SELECT, set operations (UNION...), CTEs, recursive CTEs;
- table references: joins, subqueries, ``VALUES``, PIVOT, DESCRIBE/SUMMARIZE
  of a query, base tables that are a CTE in scope or a *plain* name
  (``"parking-occupancy"``, ``parking_occupancy``, ``"car-parks@1"``) the
  runner resolves to a dataset view, and the table functions in
  :data:`TABLE_FUNCTIONS` (pure generators; every file reader, ``query``,
  ``glob``, ``duckdb_*`` and ``pragma_*`` function is refused). Qualified
  names (``information_schema.tables``, ``pg_catalog.x``, ``db.main.t``) are
  refused: the only catalogue users see is the datasets;
- expressions: every parsed class except parameters; functions must be a
  scalar, aggregate or macro function DuckDB (with spatial) knows, minus
  :data:`DENIED_FUNCTIONS` (settings, environment, SQL from strings, sleeping,
  and built-in macros that run catalogue table functions).

The worker sandbox (``catalogue.sql_worker``) is the second line of defence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb

from catalogue import duck
from catalogue.errors import SqlNotAllowed, SqlSyntaxError
from catalogue.sql.tokens import check_tokens

QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE", "RECURSIVE_CTE_NODE"})
TABLE_REFS = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EMPTY", "EXPRESSION_LIST", "PIVOT", "SHOW_REF"})
EXPRESSION_CLASSES = frozenset({
    "BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "CONSTANT", "FUNCTION",
    "LAMBDA", "LAMBDA_REF", "OPERATOR", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY", "WINDOW",
})
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Binder-handled names that duckdb_functions() does not list as scalar functions.
SPECIAL_FUNCTIONS = frozenset({"unnest", "unlist"})
_DENIED_BY_REASON = {
    "it reads settings, session state or the environment": (
        "current_setting", "getenv", "getvariable", "current_query", "setseed", "nextval", "currval"),
    "it runs SQL from a string": (
        "query", "query_table", "json_execute_serialized_sql", "json_serialize_sql", "json_deserialize_sql",
        "json_serialize_plan"),
    # table functions today; listed so that a scalar twin in a later DuckDB stays refused
    "it reads files": ("read_text", "read_blob", "read_csv", "read_parquet", "read_json", "glob", "st_read"),
    "it stalls the worker or writes logs": ("sleep_ms", "pg_sleep", "write_log"),
    # built-in macros that run duckdb_* / pragma_* table functions (view definitions hold file paths)
    "it inspects the database catalogue": ("format_type", "get_block_size", "pg_get_constraintdef", "pg_get_viewdef"),
}
DENIED_FUNCTIONS = {name: reason for reason, names in _DENIED_BY_REASON.items() for name in names}
RELATION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(@[1-9][0-9]*)?")
NO_LOCATION = 18446744073709551615  # how the serializer writes "no position"


@dataclass(frozen=True)
class CheckedSql:
    """A statement that passed the guard: its text and the dataset view names it reads."""

    text: str
    relations: frozenset[str]


@cache
def known_functions() -> frozenset[str]:
    """Lower-case names of the scalar, aggregate and macro functions DuckDB with spatial offers."""
    con = duck.connect(memory_limit_mb=256, threads=1)
    try:
        rows = con.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'macro')"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows) | SPECIAL_FUNCTIONS


def check_sql(sql: str, *, max_chars: int) -> CheckedSql:
    """Refuse anything but one read-only SELECT over dataset views; SqlSyntaxError / SqlNotAllowed say why.

    Nothing here touches a file: the tokens are checked first (:mod:`catalogue.sql.tokens`), then
    DuckDB's bare parser (``json_serialize_sql``; never ``extract_statements``, which runs
    ``IMPORT DATABASE``'s files and PRAGMAs) builds the tree that is walked.
    """
    if not sql.strip():
        raise SqlSyntaxError("The sql parameter is empty. Give one SELECT statement.")
    if len(sql) > max_chars:
        raise SqlNotAllowed(f"The statement is {len(sql)} characters long; at most {max_chars} are accepted.")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800" in a JSON body): no text DuckDB can take
        raise SqlSyntaxError(f"The statement holds a character that is no text (a lone surrogate) at character "
                             f"{exc.start}.", details={"position": exc.start}) from None
    check_tokens(sql)
    con = duckdb.connect(config={"enable_external_access": False})  # throwaway: only the parser runs
    try:
        tree = _parse(con, sql)
    finally:
        con.close()
    walker = _Walker(known_functions())
    walker.walk(tree["statements"][0]["node"], frozenset())
    return CheckedSql(sql, frozenset(walker.relations))


TOO_DEEP = ("The statement is nested too deeply for the parser (a chain of operators such as 1 + 1 + ... counts "
            "one level per operator). Name parts of it in a WITH clause, or split it up.")


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    (raw,) = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()  # type: ignore[misc]
    try:
        tree: dict[str, Any] = json.loads(raw)
    except RecursionError:
        raise SqlNotAllowed(TOO_DEEP) from None
    if tree.get("error"):
        message = str(tree.get("error_message", "invalid SQL"))
        if "max_expression_depth" in message or "memory exhausted" in message:
            raise SqlNotAllowed(TOO_DEEP)  # DuckDB's own text suggests a SET, which is refused
        if tree.get("error_type") == "parser":
            position = int(tree.get("position", 0))
            raise SqlSyntaxError(f"Syntax error at character {position}: {message}.", details={"position": position})
        if sql.lstrip(" \t\r\n(").upper().startswith(("PIVOT", "UNPIVOT")):
            # Without IN (...) DuckDB runs a first statement to find the values that become columns.
            raise SqlNotAllowed(
                "A PIVOT statement must list the values that become columns, as it may run only one statement: "
                "PIVOT t ON col IN ('a', 'b') USING count(*), or SELECT * FROM t PIVOT (count(*) FOR col IN "
                "('a', 'b')).")
        raise SqlNotAllowed("Only SELECT statements are allowed (PRAGMA and other commands are refused).")
    if len(tree.get("statements", [])) != 1:
        raise SqlNotAllowed("Send exactly one SELECT statement per request.")
    return tree


class _Walker:
    """Walks the serialized tree iteratively (deep nesting must not exhaust Python's stack)."""

    def __init__(self, functions: frozenset[str]) -> None:
        self.functions = functions
        self.relations: set[str] = set()

    def walk(self, root: Any, scope: frozenset[str]) -> None:
        stack: list[tuple[Any, frozenset[str]]] = [(root, scope)]
        while stack:
            node, names = stack.pop()
            if isinstance(node, list):
                stack += [(child, names) for child in node]
            elif isinstance(node, dict):
                stack += self._visit(node, names)

    def _visit(self, node: dict[str, Any], scope: frozenset[str]) -> list[tuple[Any, frozenset[str]]]:
        """Check one object; return the children to walk, each with the CTE names visible there."""
        kind = node.get("type")
        if "class" in node:
            self._expression(node)
            if node["class"] == "CONSTANT":
                return []
        elif "cte_map" in node:
            if kind not in QUERY_NODES:
                _refuse(node, f"{kind} query parts are not allowed")
            return self._query_node(node, scope)
        elif "sample" in node and isinstance(kind, str):
            if kind not in TABLE_REFS:
                _refuse(node, f"{kind} table references are not allowed")
            self._table_ref(node, scope)
        return [(child, scope) for child in node.values() if isinstance(child, (dict, list))]

    def _query_node(self, node: dict[str, Any], scope: frozenset[str]) -> list[tuple[Any, frozenset[str]]]:
        # A CTE sees the ones defined before it and itself (recursive); the body sees them all.
        children: list[tuple[Any, frozenset[str]]] = []
        visible = set(scope)
        for entry in node["cte_map"].get("map", []):
            visible.add(str(entry["key"]).lower())
            children.append((entry["value"], frozenset(visible)))
        body = frozenset(visible)
        if node.get("type") == "RECURSIVE_CTE_NODE" and node.get("cte_name"):
            body |= {str(node["cte_name"]).lower()}
        children += [(v, body) for k, v in node.items() if k != "cte_map" and isinstance(v, (dict, list))]
        return children

    def _table_ref(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        kind = node["type"]
        if kind == "BASE_TABLE":
            self._relation(node, node.get("table_name", ""), scope)
            if node.get("at_clause"):
                _refuse(node, "AT (...) time travel clauses are not allowed; pin a version as \"dataset@N\"")
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if function.get("class") != "FUNCTION" or name not in TABLE_FUNCTIONS:
                _refuse(node, f"the table function {name or '?'}() is not allowed (it could read files, run SQL "
                              "or inspect the database); read datasets by name, e.g. FROM \"parking-occupancy\"")
        elif kind == "SHOW_REF" and (node.get("show_type") not in ("DESCRIBE", "SUMMARY") or node.get("query") is None):
            _refuse(node, "SHOW statements are not allowed; DESCRIBE or SUMMARIZE a dataset instead")

    def _relation(self, node: dict[str, Any], name: str, scope: frozenset[str]) -> None:
        if node.get("schema_name") or node.get("catalog_name"):
            qualified = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p)
            _refuse(node, f"'{qualified}' is not a dataset: only datasets can be read, by their plain name")
        lowered = name.lower()
        if lowered in scope:
            return
        if not RELATION_NAME.fullmatch(lowered):
            _refuse(node, f"'{name}' is not a dataset name; reading files, URLs or other tables is not allowed")
        self.relations.add(lowered)

    def _expression(self, node: dict[str, Any]) -> None:
        cls = node["class"]
        if cls not in EXPRESSION_CLASSES:
            what = "parameters ($1, ?)" if cls == "PARAMETER" else f"{cls} expressions"
            _refuse(node, f"{what} are not allowed")
        if cls == "FUNCTION" or (cls == "WINDOW" and node.get("type") == "WINDOW_AGGREGATE"):
            # Checked by name whatever the qualifier: `x.upper()` is a method call on column x,
            # and `main.getenv()` is still getenv.
            name = str(node.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS:
                _refuse(node, f"the function {name}() is not allowed: {DENIED_FUNCTIONS[name]}")
            if name not in self.functions:
                _refuse(node, f"{name}() is no scalar or aggregate function DuckDB knows (table functions "
                              "belong in FROM, and only range, generate_series and unnest are allowed there)")


def _refuse(node: dict[str, Any], reason: str) -> None:
    location = node.get("query_location")
    details = {"position": location} if isinstance(location, int) and location != NO_LOCATION else None
    where = f" (at character {location})" if details else ""
    raise SqlNotAllowed(f"Not allowed{where}: {reason}.", details=details)
