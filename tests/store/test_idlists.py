"""Lists of ids bound as one array on PostgreSQL, expanded on SQLite."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, text

from roxgate.store.idlists import IdListStatement, pg_array_literal
from roxgate.store.schema import unmatched_receipts

AWKWARD = ["plain", 'with "quotes"', "back\\slash", "a,b", "{braces}", " spaced ", "", "NULL", "ü✓"]


def test_the_common_case_is_joined_without_escaping() -> None:
    assert pg_array_literal(["a", "b"]) == '{"a","b"}'
    assert pg_array_literal([1, 22, 333]) == "{1,22,333}"
    assert pg_array_literal([]) == "{}"
    assert pg_array_literal(["x", None, 3]) == '{"x",NULL,3}'


def test_a_nul_inside_a_value_does_not_split_it() -> None:
    # The fast path joins on NUL; a value holding one must not become two elements.
    assert pg_array_literal(["a\x00b", "c"]) == '{"a\x00b","c"}'


def test_every_value_comes_back_whole_from_postgresql(pg_engine_factory: Any) -> None:
    _url, engine = pg_engine_factory("arrays")
    with engine.connect() as conn:
        texts = conn.execute(
            text("SELECT CAST(:a AS text[])"), {"a": pg_array_literal(AWKWARD)}
        ).scalar_one()
        with_null = conn.execute(
            text("SELECT CAST(:a AS text[])"), {"a": pg_array_literal(["x", None])}
        ).scalar_one()
        numbers = conn.execute(
            text("SELECT CAST(:a AS bigint[])"), {"a": pg_array_literal([0, -5, 2**40])}
        ).scalar_one()
    assert texts == AWKWARD
    assert with_null == ["x", None]
    assert numbers == [0, -5, 2**40]


def test_a_statement_finds_the_same_rows_on_both_databases(store_factory: Any) -> None:
    engine: Engine = store_factory("idlists")
    # Carrier ids come from the network: any text at all.
    names = ["c-1", 'c"quoted', "c\\slash", "c,comma", "c}brace"]
    with engine.begin() as conn:
        conn.execute(
            insert(unmatched_receipts),
            [
                {"carrier_id": n, "state": "DELIVRD", "source": "1", "destination": "2",
                 "received_at": 0}
                for n in names
            ],
        )  # fmt: skip
    find = IdListStatement(
        "SELECT carrier_id FROM unmatched_receipts WHERE carrier_id {ids} ORDER BY carrier_id",
        "ids",
    )
    with engine.connect() as conn:
        found = find.execute(conn, {"ids": [*names[1:], "absent"]}).scalars().all()
        none = find.execute(conn, {"ids": []}).scalars().all()
    assert found == sorted(names[1:])
    assert none == []


@pytest.mark.parametrize("values", [["a"] * 3, list(range(3))])
def test_tuples_are_taken_like_lists(values: list[Any]) -> None:
    assert pg_array_literal(tuple(values)) == pg_array_literal(values)
