"""Statements that take a list of ids, written once for SQLite and PostgreSQL.

SQLite gets an expanding ``IN (?, ?, …)``: it has no array type. PostgreSQL
gets ``= ANY(CAST(:ids AS text[]))`` with the whole list bound as one array, so
the statement's text is the same whatever the list's length. That matters on
the hot paths (claims, submissions, receipts, a batch every few
milliseconds): an ``IN`` list of a new length is a new statement, which
psycopg converts again and PostgreSQL parses and plans again (1.3 ms for 300
ids), where one text is prepared once and its plan reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, CursorResult, TextClause, bindparam, text


class IdListStatement:
    """``sql`` with ``{name}`` where ``column {name}`` should test list membership.

    ``IdListStatement("UPDATE t SET x = 1 WHERE id {ids}", "ids")`` runs as
    ``… WHERE id IN :ids`` on SQLite and ``… WHERE id = ANY(CAST(:ids AS
    text[]))`` on PostgreSQL; either way ``ids`` is given as a Python list of
    strings (our ids are text) to :meth:`execute`.

    On PostgreSQL the list is sent as its array literal, untyped: the server
    reads it as ``text[]`` once, when binding. Typed as a string instead, it
    became a run-time cast the server repeated for every row it scanned
    (a look-up of 300 carrier ids took 450 ms on 20,000 parts).
    """

    __slots__ = ("_lists", "postgresql", "sqlite")

    def __init__(self, sql: str, *lists: str) -> None:
        self._lists = lists
        self.sqlite: TextClause = text(sql.format(**{n: f"IN :{n}" for n in lists})).bindparams(
            *(bindparam(n, expanding=True) for n in lists)
        )
        self.postgresql: TextClause = text(
            sql.format(**{n: f"= ANY(CAST(:{n} AS text[]))" for n in lists})
        )

    def execute(self, conn: Connection, params: dict[str, Any]) -> CursorResult[Any]:
        if conn.dialect.name != "postgresql":
            return conn.execute(self.sqlite, params)
        arrays = {n: pg_array_literal(params[n]) for n in self._lists}
        return conn.execute(self.postgresql, {**params, **arrays})


def pg_array_literal(values: Iterable[Any]) -> str:
    """``values`` as the text of a PostgreSQL array (``{"a","b"}``, ``{1,2}``, ``NULL``).

    Bound as a string and cast on the server (``CAST(%s AS text[])``), it
    replaces psycopg's list adaptation, which runs in Python per element and
    was the largest share of intake on PostgreSQL (8 arrays of 500 a request).
    Strings are quoted and escaped (a bound value, so no SQL injection is
    possible; escaping only keeps each element whole); the common case, no
    quote or backslash anywhere, is a few C-level joins for the whole column.
    """
    column = values if isinstance(values, list | tuple) else list(values)
    if not column:
        return "{}"
    if all(type(v) is str for v in column):
        joined = "\x00".join(column)  # NUL cannot occur in PostgreSQL text
        # (a NUL inside a value would split it: such a column takes the slow path)
        if '"' not in joined and "\\" not in joined and joined.count("\x00") == len(column) - 1:
            return '{"' + joined.replace("\x00", '","') + '"}'
    elif all(type(v) is int for v in column):
        return "{" + ",".join(map(str, column)) + "}"
    return "{" + ",".join(map(_element, column)) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return str(value)
    text_value = str(value)
    return '"' + text_value.replace("\\", "\\\\").replace('"', '\\"') + '"'
