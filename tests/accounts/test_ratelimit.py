"""Token buckets per account and failed logins per address, on a clock the test turns."""

from __future__ import annotations

import pytest

from roxgate.accounts.ipguard import FailedLoginGuard, source_key
from roxgate.accounts.ratelimit import AccountRateLimiter, RateLimited, TokenBucket
from roxgate.rox.codes import Result


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(action: object, *args: object) -> RateLimited | None:
    try:
        action(*args)  # type: ignore[operator]
    except RateLimited as err:
        assert err.code is Result.RATE_LIMITED
        return err
    return None


def test_bucket_bursts_a_minute_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(per_minute=60, tokens=60.0, stamp=0.0)
    assert all(bucket.take(1, 0.0) == 0.0 for _ in range(60))
    assert bucket.take(1, 0.0) == pytest.approx(1.0)  # one a second
    assert bucket.take(1, 0.5) == pytest.approx(0.5)
    assert bucket.take(1, 1.0) == 0.0
    assert bucket.take(5, 1.0) == pytest.approx(5.0)
    # Never more than a minute's worth, however long it idles.
    assert bucket.take(1, 10_000.0) == 0.0
    assert bucket.tokens == pytest.approx(59.0)


def test_bucket_lets_an_oversized_request_through_only_when_full() -> None:
    bucket = TokenBucket(per_minute=5, tokens=5.0, stamp=0.0)
    assert bucket.take(10, 0.0) == 0.0  # full: passes, and leaves 5 in debt
    assert bucket.tokens == pytest.approx(-5.0)
    assert bucket.take(1, 0.0) == pytest.approx(72.0)  # 6 tokens at 1 per 12 s
    assert bucket.take(10, 72.0) == pytest.approx(48.0)  # needs a full bucket: 4 more
    assert bucket.take(10, 120.0) == 0.0


def test_bucket_resize_never_adds_tokens() -> None:
    bucket = TokenBucket(per_minute=100, tokens=80.0, stamp=0.0)
    bucket.resize(10)
    assert (bucket.per_minute, bucket.tokens) == (10, 10.0)
    bucket.resize(1000)
    assert bucket.tokens == 10.0


def test_account_limits_defaults_overrides_and_separate_buckets() -> None:
    clock = Clock()
    limiter = AccountRateLimiter(requests_per_minute=2, messages_per_minute=0, clock=clock)
    for _ in range(2):
        limiter.check_request("CI00000001", None)
    err = refused(limiter.check_request, "CI00000001", None)
    assert err is not None and err.retry_after == 30
    assert err.text == (
        "Rate limit exceeded: 2 requests per minute for this account; retry after 30 s"
    )
    limiter.check_request("CI00000002", None)  # another account: its own bucket
    for _ in range(50):
        limiter.check_request("CI00000003", 0)  # its own limit: unlimited
        limiter.check_messages("CI00000003", None, 500)  # no default message limit
    assert refused(limiter.check_request, "CI00000004", 1) is None
    err = refused(limiter.check_request, "CI00000004", 1)
    assert err is not None and err.retry_after == 60
    clock.now += 29.5
    assert refused(limiter.check_request, "CI00000001", None) is not None  # 0.98 of a token
    clock.now += 0.6
    assert refused(limiter.check_request, "CI00000001", None) is None
    # A refused request takes nothing: the next token still comes at the rate.
    clock.now += 30
    assert refused(limiter.check_request, "CI00000001", None) is None


def test_message_limit_counts_recipients() -> None:
    clock = Clock()
    limiter = AccountRateLimiter(0, 100, clock=clock)
    limiter.check_messages("CI00000001", None, 60)
    err = refused(limiter.check_messages, "CI00000001", None, 60)
    assert err is not None and err.retry_after == 12
    assert "100 messages per minute for this account (this request has 60)" in err.text
    limiter.check_messages("CI00000001", None, 40)
    limiter.check_messages("CI00000001", None, 0)  # nothing to send, nothing counted
    # The operator raises the account's limit: the live bucket refills at the new rate.
    err = refused(limiter.check_messages, "CI00000001", 1000, 60)
    assert err is not None and err.retry_after == 4 and "1000 messages per minute" in err.text
    clock.now += 3.7
    assert refused(limiter.check_messages, "CI00000001", 1000, 60) is None


def test_source_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert source_key("203.0.113.7") == "203.0.113.7"
    assert source_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert (
        source_key("2001:db8:1:2:aaaa::1")
        == source_key("2001:db8:1:2::ffff")
        == ("2001:db8:1:2::/64")
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("not an address") is None
    assert source_key(None) is None


def test_guard_refuses_after_max_failures_until_the_window_ends() -> None:
    clock = Clock()
    guard = FailedLoginGuard(max_failures=3, window_seconds=60, clock=clock)
    for _ in range(3):
        guard.check("198.51.100.1")
        guard.failed("198.51.100.1")
        clock.now += 10
    err = refused(guard.check, "198.51.100.1")
    assert err is not None and err.retry_after == 30  # 60 s after the first failure
    assert err.text == "Too many failed logins from this address; retry after 30 s"
    guard.check("198.51.100.2")  # other addresses are not affected
    guard.check(None)
    clock.now += 30
    guard.check("198.51.100.1")  # the window has passed
    guard.failed("198.51.100.1")  # …and counting starts again
    guard.check("198.51.100.1")


def test_guard_disabled_and_unknown_addresses() -> None:
    guard = FailedLoginGuard(max_failures=0, window_seconds=60)
    for _ in range(100):
        guard.failed("198.51.100.1")
    guard.check("198.51.100.1")
    assert len(guard) == 0
    guard = FailedLoginGuard(max_failures=1, window_seconds=60)
    guard.failed(None)
    guard.failed("garbage")
    assert len(guard) == 0


def test_guard_memory_is_bounded_against_rotating_addresses() -> None:
    clock = Clock()
    guard = FailedLoginGuard(max_failures=5, window_seconds=600, max_addresses=1000, clock=clock)
    for i in range(200_000):
        guard.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        assert len(guard) <= 1000
    for i in range(50_000):  # an IPv6 attacker: one /64 whatever it rotates through
        guard.failed(f"2001:db8::{i:x}")
    assert refused(guard.check, "2001:db8::1:2345") is not None
    # Windows that have ended are dropped as new failures come.
    clock.now += 601
    guard.failed("192.0.2.1")
    assert len(guard) == 1
