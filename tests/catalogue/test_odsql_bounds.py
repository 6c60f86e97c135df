"""ODSQL clauses are bounded in length and nesting before sqlglot's recursive parser reads them (issue 13, item 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalogue.errors import QueryError
from catalogue.query.odsql import MAX_CHARS, MAX_NESTING, Compiler
from catalogue.schema.model import TableSchema

SCHEMA = {"fields": [{"name": "n", "type": "integer"}, {"name": "flag", "type": "boolean"},
                     {"name": "label", "type": "string"}, {"name": "day", "type": "date"}]}

# Nesting around an expression, for each kind of level (two levels for a sign or NOT before parentheses).
LEVELS: dict[str, Callable[[str], str]] = {
    "parentheses": lambda inner: f"({inner})",
    "function call": lambda inner: f"abs({inner})",
    "two-argument call": lambda inner: f"round({inner}, 1)",
    "sign": lambda inner: f"- {inner}",
    "signed parentheses": lambda inner: f"-({inner})",
    "case": lambda inner: f"case when true then {inner} end",
}
BOOLEAN_LEVELS: dict[str, Callable[[str], str]] = {
    "parentheses": lambda inner: f"({inner})",
    "not": lambda inner: f"not {inner}",
    "not with parentheses": lambda inner: f"not ({inner})",
}


TWO_LEVELS = {"signed parentheses", "not with parentheses"}


def nest(level: Callable[[str], str], inner: str, depth: int) -> str:
    for _ in range(depth):
        inner = level(inner)
    return inner


def levels(kind: str, depth: int) -> tuple[int, int]:
    """(wraps, levels): how often to wrap to reach about ``depth`` levels, and the levels that makes."""
    cost = 2 if kind in TWO_LEVELS else 1
    wraps = max(1, depth // cost) + (depth % cost)
    return wraps, wraps * cost


def clauses(compiler: Compiler) -> dict[str, Callable[[str], Any]]:
    return {
        "select": compiler.select_list,
        "group_by": lambda text: compiler.select_list(text, "group_by"),
        "order_by": compiler.order_list,
        "where": compiler.where,
    }


def compile_clause(clause: str, text: str) -> Any:
    return clauses(Compiler(TableSchema.from_stored(SCHEMA)))[clause](text)


def assert_bounded(clause: str, text: str) -> None:
    """``text`` compiles, or is refused as invalid-query naming the clause; nothing else escapes."""
    try:
        compile_clause(clause, text)
    except QueryError as exc:
        assert (exc.code, exc.status, exc.details["parameter"]) == ("invalid-query", 400, clause), exc.to_dict()


@pytest.mark.parametrize("clause", ["select", "group_by", "order_by", "where"])
@pytest.mark.parametrize("kind", sorted(LEVELS))
@pytest.mark.parametrize("depth", [1, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 40, 50, 100, 1000])
def test_every_clause_at_every_depth(clause: str, kind: str, depth: int) -> None:
    wraps, depth = levels(kind, depth)
    inner = nest(LEVELS[kind], "n", wraps)
    text = f"{inner} = 1" if clause == "where" else inner
    if len(text) > MAX_CHARS:
        with pytest.raises(QueryError, match=f"at most {MAX_CHARS} are accepted") as caught:
            compile_clause(clause, text)
        assert caught.value.details == {"parameter": clause, "limit": MAX_CHARS}
        return
    if depth <= MAX_NESTING:
        if kind == "case":
            assert_bounded(clause, text)  # CASE is parsed, then refused by the allow-list
        else:
            compile_clause(clause, text)
        return
    with pytest.raises(QueryError) as caught:
        compile_clause(clause, text)
    error = caught.value
    assert (error.code, error.status) == ("invalid-query", 400)
    assert error.details["parameter"] == clause and error.details["limit"] == MAX_NESTING
    assert f"{clause} is nested more than {MAX_NESTING} levels deep" in error.message


@pytest.mark.parametrize("kind", sorted(BOOLEAN_LEVELS))
@pytest.mark.parametrize("depth", [MAX_NESTING, MAX_NESTING + 1, 50, 100, 900])
def test_boolean_nesting_in_where(kind: str, depth: int) -> None:
    wraps, depth = levels(kind, depth)
    text = nest(BOOLEAN_LEVELS[kind], "flag", wraps)
    if len(text) > MAX_CHARS:
        with pytest.raises(QueryError, match="characters long"):
            compile_clause("where", text)
    elif depth <= MAX_NESTING:
        compile_clause("where", text)
    else:
        with pytest.raises(QueryError, match=f"nested more than {MAX_NESTING} levels"):
            compile_clause("where", text)


def test_the_bound_leaves_room_on_the_stack() -> None:
    """The deepest accepted clauses compile with under 600 frames (Python allows 1000)."""
    deepest = [("select", nest(LEVELS["two-argument call"], "n", MAX_NESTING)),
               ("order_by", nest(LEVELS["function call"], "n", MAX_NESTING)),
               ("where", nest(LEVELS["parentheses"], "n = 1", MAX_NESTING)),
               ("where", nest(BOOLEAN_LEVELS["not with parentheses"], "flag", MAX_NESTING // 2))]
    limit = sys.getrecursionlimit()
    # Called without the RecursionError guard: run with this little stack, they must still compile.
    sys.setrecursionlimit(600 + len(_stack()))
    try:
        for clause, text in deepest:
            method = {"select": Compiler.select_list, "order_by": Compiler.order_list, "where": Compiler.where}[clause]
            method.__wrapped__(Compiler(TableSchema.from_stored(SCHEMA)), text)  # type: ignore[attr-defined]
    finally:
        sys.setrecursionlimit(limit)


def _stack() -> list[Any]:
    frame, frames = sys._getframe(), []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_long_flat_lists_are_not_nesting() -> None:
    compile_clause("where", "n in (" + ", ".join(str(i) for i in range(500)) + ")")
    compile_clause("where", " or ".join(f"n = {i}" for i in range(300)))
    compile_clause("select", ", ".join(f"n + {i} as c{i}" for i in range(200)))
    compile_clause("where", "n - 1 - 2 - 3 - -4 = - 5 and not flag and not (n > 2)")


# Fragments a hostile client may string together: openers, closers, prefix operators, operands.
FRAGMENTS = st.sampled_from(["(", ")", "abs(", "round(", ",", "not ", "-", "+", "n", "1", "'x'", " and ", " or ",
                             " = ", "[", "]", "{", "}", "case when ", " then ", " end", "`n`", "date'2026-01-01'",
                             "*", "/", " in ", " is null", "count(*)", "search(", "geom'POINT(1 2)'", ";", "--"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clause=st.sampled_from(["select", "group_by", "order_by", "where"]),
       pieces=st.lists(FRAGMENTS, max_size=400), repeat=st.integers(min_value=1, max_value=30))
def test_any_token_soup_is_compiled_or_refused_as_invalid_query(clause: str, pieces: list[str], repeat: int) -> None:
    assert_bounded(clause, "".join(pieces) * repeat)


@pytest.mark.parametrize("clause", ["select", "group_by", "order_by", "where"])
@pytest.mark.parametrize("number", ["1e400-92", "1e400", "-1e400", "9" * 50, "1e309", "1e-5000000"])
def test_numbers_sqlglot_reads_but_no_engine_holds_are_invalid_query(clause: str, number: str) -> None:
    """sqlglot reads ``1e400-92`` as one number token; float() then failed with a 500."""
    text = f"n > {number}" if clause == "where" else f"n + {number}"
    if number == "1e-5000000":  # underflows to 0.0: a number, if a useless one
        compile_clause(clause, text)
        return
    with pytest.raises(QueryError) as caught:
        compile_clause(clause, text)
    assert caught.value.details["parameter"] == clause and number.lstrip("-")[:40] in caught.value.message


@pytest.mark.parametrize("distance", ["1e400-9m", "1e400km", "1e400"])
def test_distances_out_of_range_are_invalid_query(distance: str) -> None:
    schema = {"fields": [{"name": "place", "type": "geopoint"}]}
    with pytest.raises(QueryError) as caught:
        Compiler(TableSchema.from_stored(schema)).where(f"within_distance(place, geom'POINT(9.9 53.5)', {distance})")
    assert caught.value.details["parameter"] == "where"
