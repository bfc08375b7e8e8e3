"""Per-account rate limits: requests and messages per minute, as token buckets in memory.

Each account has a bucket of requests and one of messages (recipients) in
each api process. A bucket holds a minute's allowance and refills
continuously at the per-minute rate, so an idle account may burst a whole
minute's worth at once and a busy one gets the rate on average.

The buckets live in the process, not in the database: the check costs a
dictionary look-up and some arithmetic, where a shared counter would cost a
database round trip (and, on SQLite, a write) per request on the intake's hot
path. The price is that with N api processes behind a load balancer the limit
applies per process, so an account may get up to N times its limit in total
(docs/security.md says how to size it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from roxgate.rox.codes import Result, RoxError


class RateLimited(RoxError):
    """2041: too much, too fast; a retry after ``retry_after`` seconds may succeed."""

    def __init__(self, text: str, retry_after: int) -> None:
        super().__init__(Result.RATE_LIMITED, text)
        self.retry_after = retry_after


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, at least 1."""
    return max(1, math.ceil(wait))


@dataclass(slots=True)
class TokenBucket:
    per_minute: int
    tokens: float
    stamp: float  # when ``tokens`` was last brought up to date (monotonic seconds)

    def take(self, cost: int, now: float) -> float:
        """Take ``cost`` tokens: 0.0 when taken, else the seconds until they could be."""
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        # A request bigger than a whole minute's allowance could never pass if
        # it needed ``cost`` tokens: it passes with a full bucket instead, and
        # leaves it in debt, so the average rate still holds.
        need = min(cost, self.per_minute)
        if self.tokens >= need:
            self.tokens -= cost
            return 0.0
        return (need - self.tokens) / rate

    def resize(self, per_minute: int) -> None:
        """Apply a changed limit (an operator's ``account set``) to a live bucket."""
        self.per_minute = per_minute
        self.tokens = min(self.tokens, float(per_minute))


class AccountRateLimiter:
    """The buckets of every account that sent through this process.

    Only authenticated accounts get a bucket, so their number is bounded by
    the accounts in the database, whatever an outsider sends.
    """

    def __init__(
        self,
        requests_per_minute: int,
        messages_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The defaults (0 = unlimited) apply to accounts without their own limits."""
        self.default_requests = requests_per_minute
        self.default_messages = messages_per_minute
        self._clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._messages: dict[str, TokenBucket] = {}

    def check_request(self, account_id: str, own_limit: int | None) -> None:
        """Count one request of the account, or raise RateLimited (nothing counted)."""
        limit = self.default_requests if own_limit is None else own_limit
        if limit <= 0:
            return
        wait = self._bucket(self._requests, account_id, limit).take(1, self._clock())
        if wait:
            seconds = retry_after_seconds(wait)
            raise RateLimited(
                f"Rate limit exceeded: {limit} requests per minute for this account; "
                f"retry after {seconds} s",
                seconds,
            )

    def check_messages(self, account_id: str, own_limit: int | None, count: int) -> None:
        """Count ``count`` messages of the account, or raise RateLimited (nothing counted)."""
        limit = self.default_messages if own_limit is None else own_limit
        if limit <= 0 or count <= 0:
            return
        wait = self._bucket(self._messages, account_id, limit).take(count, self._clock())
        if wait:
            seconds = retry_after_seconds(wait)
            raise RateLimited(
                f"Rate limit exceeded: {limit} messages per minute for this account "
                f"(this request has {count}); retry after {seconds} s",
                seconds,
            )

    def _bucket(self, buckets: dict[str, TokenBucket], account_id: str, limit: int) -> TokenBucket:
        bucket = buckets.get(account_id)
        if bucket is None:
            bucket = buckets[account_id] = TokenBucket(limit, float(limit), self._clock())
        elif bucket.per_minute != limit:
            bucket.resize(limit)
        return bucket
