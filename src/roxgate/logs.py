"""How ``roxgate serve`` logs: readable text, or one JSON object per line.

``ROXGATE_LOG_FORMAT=json`` writes objects with ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``message``, the context of the work being done when
known (``request_id``, ``account``, ``sms_id``), any ``extra`` fields, and
``exception`` for a traceback. The context travels in :mod:`contextvars`:
the send handler binds its request, the dispatcher and the callback worker
bind the message they handle; each of those runs in its own asyncio task, so
the values never leak into another request's lines.

Every line, in either format, goes through :class:`RedactSecrets` first: no
code path logs a password on purpose, and this is the net under it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from itertools import islice
from typing import Any, Final

import orjson

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED: Final = "[redacted]"

REQUEST_ID: ContextVar[str | None] = ContextVar("roxgate_request_id", default=None)
ACCOUNT: ContextVar[str | None] = ContextVar("roxgate_account", default=None)
SMS_ID: ContextVar[str | None] = ContextVar("roxgate_sms_id", default=None)
_CONTEXT: Final = (("request_id", REQUEST_ID), ("account", ACCOUNT), ("sms_id", SMS_ID))

# The attributes every LogRecord has. ``extra`` fields are set on a record after
# them, so its extras are the keys past the first _BARE_SIZE.
_BARE: Final = logging.LogRecord("", 0, "", 0, "", None, None).__dict__
_BARE_SIZE: Final = len(_BARE)
# Not extras: set by formatting. color_message: uvicorn's copy of its message
# with terminal colours (the plain one is enough).
_NOT_EXTRAS: Final = frozenset(_BARE) | {"message", "asctime", "color_message"}

# Words that mark a secret, in an extra's name or before a value in a message.
_SECRET_WORDS: Final = ("pass", "pwd", "secret", "token")
# ``password=…``, ``"Password": "…"``, ``secret: …`` inside a message.
_SECRET_VALUE: Final = re.compile(
    r"""(?P<key>pass(?:word|wd|phrase)?|pwd|secret|token)(?P<sep>["']?\s*[=:]\s*)"""
    r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\]]+)""",
    re.IGNORECASE,
)
# The password of a URL: scheme://user:PASSWORD@host (found from "://", quickly).
_URL_PASSWORD: Final = re.compile(r"(?P<head>://[^/\s:@]*:)[^@\s/]*@")


def bind_request(request_id: str) -> None:
    """Log lines from here on (in this task) belong to ``request_id``; no account yet."""
    REQUEST_ID.set(request_id)
    ACCOUNT.set(None)
    SMS_ID.set(None)


def _mentions_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` without the values of anything that looks like a password or a secret."""
    # The substring tests spare nearly every line the regular expressions
    # (several microseconds each, per line, on the intake's path).
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    if _mentions_secret(text):
        text = _SECRET_VALUE.sub(rf"\g<key>\g<sep>{REDACTED}", text)
    return text


def redact_url(url: str) -> str:
    """A URL fit for a log line: its password (if any) replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", url)


def _extras(record: logging.LogRecord) -> list[str]:
    return [k for k in islice(record.__dict__, _BARE_SIZE, None) if k not in _NOT_EXTRAS]


class RedactSecrets(logging.Filter):
    """Blank secrets out of a record before any handler formats it.

    Extras named like ``password`` / ``secret`` / ``token`` lose their value;
    the message and the traceback lose ``password=…``-like values and URL
    passwords. The message is formatted here once (``msg % args``) and kept,
    so formatting it again costs nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key in _extras(record):
            if _mentions_secret(key):
                record.__dict__[key] = REDACTED
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _iso_utc(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in _CONTEXT:
            value = record.__dict__.get(name) or var.get()
            if value is not None:
                entry[name] = value
        for key in _extras(record):
            entry.setdefault(key, record.__dict__[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra orjson cannot encode is still logged, as text.
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send every logger's records (uvicorn's and warnings included) to standard
    error, in ``log_format`` (``text`` or ``json``). Raises ``ValueError`` for
    an unknown format or level."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log_level must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Python's warnings would otherwise go to stderr as bare lines.
    logging.captureWarnings(True)
