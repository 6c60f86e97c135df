"""The first look at user SQL, on tokens only: one statement, that starts like a query, not nested too deep.

It runs before any parser, because DuckDB's statement extraction is no pure
parser: ``duckdb.extract_statements`` runs a client context that carries out
``IMPORT DATABASE '<dir>'`` (it opens ``<dir>/schema.sql``) and PRAGMAs while
"parsing", which made the API process an oracle for which directories exist.
DuckDB's tokenizer only splits text. The bound on nesting keeps the parser and
Python's JSON reader within their stacks (DuckDB answers "memory exhausted"
past about 10,000 levels, and its depth limit names a ``SET`` we refuse).
"""

from __future__ import annotations

import re

import duckdb

from catalogue.errors import SqlNotAllowed, SqlSyntaxError

# Words a reading statement may start with (the AST walk decides the rest); "(" may open one too.
QUERY_STARTS = frozenset({
    "SELECT", "WITH", "FROM", "VALUES", "TABLE", "DESCRIBE", "DESC", "SUMMARIZE", "PIVOT", "UNPIVOT", "SHOW",
})
# Parentheses, brackets and braces open, and each NOT in a run adds, one level. Real queries use
# fewer than 20; at 100 DuckDB's tree is still far from its limits and Python's JSON reader's.
MAX_NESTING = 100
# Subqueries and lambdas inside each other: DuckDB binds and plans them in time that grows
# geometrically with the depth, deaf to interrupts (measured, 1.5.5: ARRAY(SELECT ...) 8 levels
# 0.05 s, 10 0.56 s, 12 10.6 s; scalar subqueries 16 0.07 s, 20 1.4 s; lambdas 14 0.15 s, 16 1.1 s).
MAX_SUBQUERY_NESTING = 10
KEYWORD = re.compile(r"[A-Za-z_]+")
BRACKETS = "()[]{}"

Token = tuple[int, str, str]  # (character position, DuckDB token type name, text)


def check_tokens(sql: str) -> None:
    """Refuse, from the tokens alone, more than one statement, a statement that is no query, and deep nesting."""
    tokens = tokenize(sql)
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token[2] == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    statements = [s for s in statements if s]
    if len(statements) > 1:
        raise SqlNotAllowed(f"Found {len(statements)} statements; send exactly one SELECT statement per request.",
                            details={"position": statements[1][0][0]})
    if not statements:
        if tokens or not sql.strip(" \t\r\n;"):
            raise SqlSyntaxError("The sql parameter holds no statement, only ';' or comments. "
                                 "Give one SELECT statement.")
        return  # not tokenizable: the parser reports the syntax error and its position
    position, kind, text = statements[0][0]
    if kind == "keyword" and text.upper() not in QUERY_STARTS:
        # Any other first word (a typo such as SELEC is no keyword) is left to the parser's syntax error.
        raise SqlNotAllowed(
            f"{text.upper()} statements are not allowed: this endpoint only reads, so it runs one SELECT "
            "(or WITH ... SELECT) statement; no COPY, ATTACH, IMPORT, EXPORT, SET, PRAGMA, INSTALL, LOAD, "
            "CREATE or other changes.", details={"position": position})
    depth, where = subquery_nesting(tokens)
    if depth > MAX_SUBQUERY_NESTING:
        raise SqlNotAllowed(
            f"The statement nests subqueries or lambdas {depth} levels deep at character {where}; at most "
            f"{MAX_SUBQUERY_NESTING} are accepted. Name the inner queries in a WITH clause instead.",
            details={"position": where, "limit": MAX_SUBQUERY_NESTING})
    depth, where = nesting(tokens)
    if depth > MAX_NESTING:
        raise SqlNotAllowed(
            f"The statement nests {depth} levels deep at character {where} (parentheses, brackets and NOTs); "
            f"at most {MAX_NESTING} are accepted. Name parts of it in a WITH clause, or nest less.",
            details={"position": where, "limit": MAX_NESTING})


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql`` (comments dropped), each bracket and ';' a token of its own.

    DuckDB counts positions in UTF-8 bytes; they are turned into characters here.
    """
    try:
        found = duckdb.tokenize(sql)
    except (duckdb.Error, RuntimeError, UnicodeError, TypeError):
        return []
    character: dict[int, int] = {}  # byte offset -> character offset
    offset = 0
    for index, char in enumerate(sql):
        character[offset] = index
        offset += len(char.encode("utf-8", "surrogatepass"))
    character[offset] = len(sql)
    starts = [character.get(position, -1) for position, _ in found]
    if -1 in starts:  # not on a character boundary: leave it to the parser
        return []
    out: list[Token] = []
    for (position, kind), start, end in zip(found, starts, starts[1:] + [len(sql)]):
        if kind == duckdb.token_type.operator and sql[start] in BRACKETS + ";":
            text = sql[start]
        elif kind == duckdb.token_type.keyword and (word := KEYWORD.match(sql, start)):
            text = word.group(0)
        else:
            text = sql[start:end].strip()
        out.append((start, kind.name, text))
    return out


def subquery_nesting(tokens: list[Token]) -> tuple[int, int]:
    """The deepest nesting of subqueries and lambdas, and where it is reached.

    A bracket counts when its first token starts a query, or when it holds a lambda
    (``lambda x: ...`` or ``x -> ...``; JSON's ``->`` counts too, which costs nothing real).
    """
    opened: list[bool] = []  # per open bracket: whether it holds a subquery or lambda
    depth = deepest = where = 0
    for (position, kind, text), following in zip(tokens, tokens[1:] + [(0, "", "")]):
        if kind == "operator" and text in "([{":
            query = following[1] == "keyword" and following[2].upper() in QUERY_STARTS
            opened.append(query)
            depth += query
        elif kind == "operator" and text in ")]}" and opened:
            depth -= opened.pop()
        elif opened and not opened[-1] and (kind == "keyword" and text.upper() == "LAMBDA" or text == "->"):
            opened[-1] = True
            depth += 1
        if depth > deepest:
            deepest, where = depth, position
    return deepest, where


def nesting(tokens: list[Token]) -> tuple[int, int]:
    """The deepest nesting in ``tokens`` and the position where it is reached."""
    levels: list[int] = []  # per open bracket: the levels it adds (itself and the run of NOTs before it)
    run = total = deepest = where = 0  # total = sum(levels), kept as it goes (20,000 brackets stay linear)
    for position, kind, text in tokens:
        if kind == "keyword" and text.upper() == "NOT":
            run += 1
        elif kind == "operator" and text in "([{":
            levels.append(run + 1)
            total += run + 1
            run = 0
        else:
            if kind == "operator" and text in ")]}" and levels:
                total -= levels.pop()
            run = 0
        if total + run > deepest:
            deepest, where = total + run, position
    return deepest, where
