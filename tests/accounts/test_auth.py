"""The authenticator against a real database: lock-out, cache rules, one verify at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from roxgate.accounts import admin
from roxgate.accounts.auth import Authenticator
from roxgate.rox.codes import Result, RoxError
from roxgate.store.schema import users

PASSWORD = "s3cret-pass-phrase"


def seed(engine: Any) -> Any:
    admin.add_account(engine, "CI00000001", "A", allowed_nets="10.0.0.0/8,2001:db8::/32")
    admin.add_user(engine, "CI00000001", "Ann@Example.com", PASSWORD)
    admin.add_user(engine, "CI00000001", "bob@example.com", PASSWORD + "-bob")
    return engine


@pytest.fixture
def engine(engine_factory: Any) -> Any:
    _, engine = engine_factory("auth")
    return seed(engine)


@pytest.fixture
def any_engine(store_factory: Any) -> Any:
    """For the tests whose queries matter: on SQLite and on PostgreSQL."""
    return seed(store_factory("auth"))


def make_auth(engine: Any, **kwargs: Any) -> Authenticator:
    return Authenticator(engine, asyncio.to_thread, **kwargs)


async def code_of(
    auth: Authenticator, password: str, email: str = "ann@example.com", ip: str = "10.1.2.3"
) -> str:
    try:
        await auth.authenticate("CI00000001", email, password, ip)
    except RoxError as err:
        return err.code.value
    return "0000"


def test_success_is_cached_and_rechecked(any_engine: Any) -> None:
    engine = any_engine

    async def scenario() -> None:
        auth = make_auth(engine)
        assert await code_of(auth, PASSWORD, email="ANN@example.com ") == "0000"
        assert await code_of(auth, PASSWORD) == "0000"
        assert auth.verifications == 1  # the second was a cache hit
        # A hit still re-reads the user: disabling takes effect at once.
        admin.set_user_status(engine, "CI00000001", "ann@example.com", "disabled")
        assert await code_of(auth, PASSWORD) == Result.USER_DISABLED.value
        admin.set_user_status(engine, "CI00000001", "ann@example.com", "active")
        admin.update_account(engine, "CI00000001", status="suspended")
        assert await code_of(auth, PASSWORD) == Result.ACCOUNT_SUSPENDED.value
        admin.update_account(engine, "CI00000001", status="active")
        # A new password invalidates the cached verification of the old one.
        admin.set_password(engine, "CI00000001", "ann@example.com", "brand-new-password")
        assert await code_of(auth, PASSWORD) == Result.AUTH_FAILED.value
        assert await code_of(auth, "brand-new-password") == "0000"

    asyncio.run(scenario())


def test_failures_are_never_cached_and_lock_after_five(any_engine: Any) -> None:
    engine = any_engine

    async def scenario() -> None:
        auth = make_auth(engine)
        codes = [await code_of(auth, "wrong") for _ in range(5)]
        assert codes == ["2002"] * 4 + ["2006"]
        assert auth.verifications == 5
        assert await code_of(auth, PASSWORD) == "2006"  # locked even with the right one
        assert auth.verifications == 5  # and no verification was spent on it
        admin.unlock_user(engine, "CI00000001", "ann@example.com")
        assert await code_of(auth, PASSWORD) == "0000"

    asyncio.run(scenario())


def test_success_resets_the_failure_count(any_engine: Any) -> None:
    engine = any_engine

    async def scenario() -> None:
        auth = make_auth(engine)
        for _ in range(4):
            assert await code_of(auth, "wrong") == "2002"
        assert await code_of(auth, PASSWORD) == "0000"
        for _ in range(4):
            assert await code_of(auth, "wrong") == "2002"  # counting starts again

    asyncio.run(scenario())


def test_one_verification_at_a_time_and_single_flight(engine: Any) -> None:
    async def scenario() -> None:
        auth = make_auth(engine)
        same = [code_of(auth, PASSWORD) for _ in range(8)]
        other = [code_of(auth, PASSWORD + "-bob", email="bob@example.com") for _ in range(4)]
        codes = await asyncio.gather(*same, *other)
        assert codes == ["0000"] * 12
        assert auth.verifications == 2  # one per distinct credential
        assert auth.peak_concurrent_verifications == 1

    asyncio.run(scenario())


def test_cache_disabled_verifies_every_time(engine: Any) -> None:
    async def scenario() -> None:
        auth = make_auth(engine, cache_seconds=0)
        for _ in range(3):
            assert await code_of(auth, PASSWORD) == "0000"
        assert auth.verifications == 3

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("ip", "code"),
    [
        ("10.9.9.9", "0000"),
        ("::ffff:10.0.0.1", "0000"),
        ("2001:db8::1", "0000"),
        ("192.0.2.1", "2007"),
        (None, "2007"),
    ],
)
def test_source_networks(engine: Any, ip: str | None, code: str) -> None:
    async def scenario() -> str:
        return await code_of(make_auth(engine), PASSWORD, ip=ip)  # type: ignore[arg-type]

    assert asyncio.run(scenario()) == code


def test_password_is_stored_only_as_argon2id(engine: Any, tmp_path: Path) -> None:
    with engine.connect() as conn:
        hashes = conn.execute(select(users.c.password_hash)).scalars().all()
    assert all(h.startswith("$argon2id$") for h in hashes)
    db_file = Path(engine.url.database)
    for path in (db_file, db_file.with_name(db_file.name + "-wal")):
        if path.exists():
            assert PASSWORD.encode() not in path.read_bytes()
