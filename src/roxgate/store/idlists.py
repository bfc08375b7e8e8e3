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

from sqlalchemy import Connection, String, TextClause, TypeDecorator, bindparam, text


class IdListStatement:
    """``sql`` with ``{name}`` where ``column {name}`` should test list membership.

    ``IdListStatement("UPDATE t SET x = 1 WHERE id {ids}", "ids")`` is
    ``… WHERE id IN :ids`` on SQLite and ``… WHERE id = ANY(CAST(:ids AS
    text[]))`` on PostgreSQL; either way ``ids`` is bound as a Python list.
    The lists hold strings (our ids are text).
    """

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, sql: str, *lists: str) -> None:
        self.sqlite: TextClause = text(sql.format(**{n: f"IN :{n}" for n in lists})).bindparams(
            *(bindparam(n, expanding=True) for n in lists)
        )
        self.postgresql: TextClause = text(
            sql.format(**{n: f"= ANY(CAST(:{n} AS text[]))" for n in lists})
        ).bindparams(*(bindparam(n, type_=_TextArray()) for n in lists))

    def on(self, conn: Connection) -> TextClause:
        """The statement in ``conn``'s dialect."""
        return self.postgresql if conn.dialect.name == "postgresql" else self.sqlite


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


class _TextArray(TypeDecorator[list[str]]):
    """A list bound as its array literal (see :func:`pg_array_literal`)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else pg_array_literal(value)
