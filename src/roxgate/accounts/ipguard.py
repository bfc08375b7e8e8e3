"""Failed logins per client address: refuse an address that keeps guessing.

The per-user lock-out (2006) stops guessing one user's password, but not a
client that tries one password on many users (spraying), nor one that makes
the gateway run argon2 (~200 ms of CPU, one at a time) for every guess. So
each api process also counts failed logins (2002, 2006) per client address:
after ``max_failures`` within ``window_seconds`` of the first, that address
is refused with 2041 *before* anything is looked up or verified, until the
window ends. Successful logins never reset the count (one good account must
not launder guesses at others), and other addresses are not affected.

An IPv6 client is counted by its /64: one host usually holds a whole /64, and
counting single addresses would let it rotate through 2^64 of them.

Memory is bounded: at most ``max_addresses`` windows are kept; when an
attacker rotating addresses fills that, the oldest windows are dropped first
(the per-user lock-out still holds for those).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from roxgate.accounts.ratelimit import RateLimited, retry_after_seconds

log = logging.getLogger("roxgate.auth")
MAX_ADDRESSES = 65_536


@dataclass(slots=True)
class _Window:
    started: float
    failures: int


@lru_cache(maxsize=4096)  # bounded; spares the parse on every request while windows exist
def source_key(client_ip: str | None) -> str | None:
    """What failures are counted under: the IPv4 address, or the IPv6 /64."""
    if client_ip is None:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailedLoginGuard:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_failures`` 0 disables the guard."""
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_addresses = max_addresses
        self._clock = clock
        # Oldest window first: windows are only ever appended, so expiry and
        # eviction both take from the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, client_ip: str | None) -> None:
        """Raise RateLimited when ``client_ip`` is refused for now."""
        if not self._windows:  # the usual case: nothing to look up
            return
        key = source_key(client_ip)
        window = self._windows.get(key) if key is not None else None
        if window is None or window.failures < self.max_failures:
            return
        remaining = window.started + self.window - self._clock()
        if remaining <= 0:
            return
        seconds = retry_after_seconds(remaining)
        raise RateLimited(
            f"Too many failed logins from this address; retry after {seconds} s", seconds
        )

    def failed(self, client_ip: str | None) -> None:
        """Count a failed login from ``client_ip``."""
        if self.max_failures <= 0:
            return
        key = source_key(client_ip)
        if key is None:
            return
        now = self._clock()
        self._expire(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now, 0)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)
        window.failures += 1
        if window.failures == self.max_failures:
            log.warning(
                "%d failed logins from %s within %.0f s: refusing it (2041) until %.0f s "
                "after the first",
                window.failures,
                key,
                now - window.started,
                self.window,
            )

    def _expire(self, now: float) -> None:
        while self._windows:
            key, oldest = next(iter(self._windows.items()))
            if oldest.started + self.window > now:
                return
            del self._windows[key]
