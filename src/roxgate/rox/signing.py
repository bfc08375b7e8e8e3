"""Callback signatures (SPEC.md §3, "Callback security").

Every callback carries ``X-Rox-Timestamp: <unix seconds>`` and
``X-Rox-Signature: sha256=<hex>``, the HMAC-SHA256 keyed with the UTF-8 bytes
of the account's callback secret over ``b"<timestamp>." + raw body``. The
timestamp is inside the MAC so that a receiver which rejects stale timestamps
also rejects replays of an old, validly signed POST.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Rox-Timestamp"
SIGNATURE_HEADER = "X-Rox-Signature"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``"sha256=<hex>"`` for ``body`` sent at ``timestamp`` (Unix seconds)."""
    # Not the one-shot hmac.digest: it releases the GIL even for a few hundred
    # bytes, and in the gateway getting it back can cost milliseconds behind the
    # database writer thread. An HMAC object keeps it for inputs under 2 KiB.
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp, hashlib.sha256)
    mac.update(body)
    return SCHEME + mac.hexdigest()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers for a POST of ``body`` made now (or at ``now``, Unix seconds)."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict from another framework may spell header names in any case.
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``headers`` sign exactly ``body`` with ``secret``, at a time within
    ``tolerance_s`` of ``now`` (either side: a clock ahead is as suspect as one behind).

    ``body`` must be the raw bytes received, before any JSON parsing: a
    re-serialised body differs in whitespace and key order.
    """
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if stamp is None or given is None:
        return False
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 15:
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII input.
    return hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace"))
