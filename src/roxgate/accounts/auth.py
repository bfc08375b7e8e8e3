"""Authenticating ROX senders: argon2id, lock-out, and a safe verification cache.

argon2id verification costs ~200 ms of CPU and 64 MiB here, which a burst of
500-recipient requests must not pay every time. So a *successful*
verification is remembered for a short while, under these rules:

* the cache key is an HMAC (with a per-process random key) of account,
  e-mail and password, so the raw password is never held as a key and a
  memory dump does not give a cheap offline oracle;
* a hit still reloads the user and account and re-checks lock, status and
  that the stored hash is the one that was verified (a password change or
  ``user disable`` takes effect on the next request);
* failures are never cached;
* only one argon2 verification runs at a time (bounds memory and CPU), and
  concurrent requests with the same credentials wait for the first one's
  answer instead of verifying again.

Failed logins are also counted per client address (``accounts/ipguard.py``):
an address with too many is refused before any of this runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine

from roxgate.accounts.ipguard import FailedLoginGuard
from roxgate.accounts.passwords import hash_password, needs_rehash, verify_password
from roxgate.rox.codes import Result, RoxError
from roxgate.store import reads
from roxgate.store.ids import now_ms

T = TypeVar("T")
RunInThread = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is sending: the authenticated user and what we need of the account."""

    account_id: str
    user_id: int
    region: str
    tz_offset: int
    allowed_countries: frozenset[str] | None
    credits: int | None
    # The account's own rate limits per minute; None: the gateway's defaults.
    rate_requests: int | None = None
    rate_messages: int | None = None


@dataclass(slots=True)
class _CacheEntry:
    password_hash: str
    expires: float


class Authenticator:
    def __init__(
        self,
        engine: Engine,
        run: RunInThread,
        cache_seconds: float = 60.0,
        max_failures: int = 5,
        lock_seconds: int = 900,
        cache_size: int = 10_000,
        read: RunInThread | None = None,
        ip_guard: FailedLoginGuard | None = None,
    ) -> None:
        """``run`` runs blocking work (argon2, writes) off the loop; ``read`` runs the
        per-request user lookup (by default also ``run``); ``ip_guard`` counts failed
        logins per client address and refuses an address with too many."""
        self._engine = engine
        self._ip_guard = ip_guard
        self._run = run
        self._read = read or run
        self._cache_seconds = cache_seconds
        self._max_failures = max_failures
        self._lock_ms = lock_seconds * 1000
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, _CacheEntry] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._verify_slot = asyncio.Semaphore(1)
        self._inflight: dict[bytes, asyncio.Lock] = {}
        # Counters for metrics and tests: argon2 verifications run, and the
        # most that ever ran at once (must stay 1).
        self.verifications = 0
        self.peak_concurrent_verifications = 0
        self._verifying = 0

    def _key(self, account_id: str, email: str, password: str) -> bytes:
        material = "\x00".join((account_id, email, password)).encode("utf-8", "surrogatepass")
        return hmac.new(self._cache_key, material, hashlib.sha256).digest()

    def _cached(self, key: bytes, password_hash: str) -> bool:
        entry = self._cache.get(key)
        if entry is None:
            return False
        if entry.expires < time.monotonic() or not hmac.compare_digest(
            entry.password_hash, password_hash
        ):
            self._cache.pop(key, None)
            return False
        return True

    def _remember(self, key: bytes, password_hash: str) -> None:
        if self._cache_seconds <= 0:
            return
        self._cache[key] = _CacheEntry(password_hash, time.monotonic() + self._cache_seconds)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def authenticate(
        self, account_id: str, email: str, password: str, client_ip: str | None
    ) -> Principal:
        """The sender's principal, or RoxError with the code SPEC.md §2 gives."""
        guard = self._ip_guard
        if guard is None:
            return await self._authenticate(account_id, email, password, client_ip)
        guard.check(client_ip)  # before any look-up or argon2
        try:
            return await self._authenticate(account_id, email, password, client_ip)
        except RoxError as err:
            if err.code in (Result.AUTH_FAILED, Result.USER_LOCKED):
                guard.failed(client_ip)
            raise

    async def _authenticate(
        self, account_id: str, email: str, password: str, client_ip: str | None
    ) -> Principal:
        email = email.strip().lower()
        login = await self._read(reads.load_login, self._engine, account_id, email)
        if login is None:
            # Unknown account and unknown user answer exactly like a wrong password.
            raise RoxError(Result.AUTH_FAILED, "Authentication failed")
        if login["locked_until"] is not None and login["locked_until"] > now_ms():
            raise RoxError(
                Result.USER_LOCKED,
                "User temporarily locked after repeated failed logins; try again later",
            )
        key = self._key(account_id, email, password)
        if not self._cached(key, login["password_hash"]):
            await self._verify(key, login, password)
        return self._authorise(login, client_ip)

    async def _verify(self, key: bytes, login: dict[str, Any], password: str) -> None:
        lock = self._inflight.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                # Another request with the same credentials may have just verified them.
                if self._cached(key, login["password_hash"]):
                    return
                async with self._verify_slot:
                    self.verifications += 1
                    self._verifying += 1
                    self.peak_concurrent_verifications = max(
                        self.peak_concurrent_verifications, self._verifying
                    )
                    try:
                        ok = await self._run(verify_password, login["password_hash"], password)
                    finally:
                        self._verifying -= 1
                if not ok:
                    locked = await self._run(
                        reads.record_login_failure,
                        self._engine,
                        login["user_id"],
                        self._max_failures,
                        now_ms() + self._lock_ms,
                    )
                    if locked:
                        raise RoxError(
                            Result.USER_LOCKED,
                            "User temporarily locked after repeated failed logins; try again later",
                        )
                    raise RoxError(Result.AUTH_FAILED, "Authentication failed")
                new_hash = None
                if needs_rehash(login["password_hash"]):
                    new_hash = await self._run(hash_password, password)
                if login["failed_logins"] or new_hash is not None:
                    await self._run(
                        reads.record_login_success, self._engine, login["user_id"], new_hash
                    )
                self._remember(key, new_hash or login["password_hash"])
        finally:
            if not lock.locked() and self._inflight.get(key) is lock:
                del self._inflight[key]

    @staticmethod
    def _authorise(login: dict[str, Any], client_ip: str | None) -> Principal:
        # Checked only after the password: an outsider learns nothing about the account.
        if login["account_status"] != "active":
            raise RoxError(Result.ACCOUNT_SUSPENDED, "Account suspended")
        if login["user_status"] != "active":
            raise RoxError(Result.USER_DISABLED, "User disabled")
        if not login["api_enabled"]:
            raise RoxError(Result.API_NOT_ENABLED, "API access is not enabled for this account")
        if login["allowed_nets"] and not _ip_allowed(client_ip, login["allowed_nets"]):
            raise RoxError(
                Result.IP_NOT_ALLOWED,
                f"Source address {client_ip} is not allowed for this account",
            )
        countries = login["allowed_countries"]
        return Principal(
            account_id=login["account_id"],
            user_id=login["user_id"],
            region=login["region"],
            tz_offset=login["tz_offset"],
            allowed_countries=frozenset(countries.split(",")) if countries else None,
            credits=login["credits"],
            rate_requests=login["rate_requests_per_minute"],
            rate_messages=login["rate_messages_per_minute"],
        )


def _ip_allowed(client_ip: str | None, nets: str) -> bool:
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net, strict=False) for net in nets.split(","))
