"""What the SDK sends and gets back: recipients, results, errors (SPEC.md §1–2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from roxgate.rox.codes import Result
from roxgate.rox.timefmt import parse_local_time

OK: Final = Result.OK.value

# Accepted spellings of a recipient's keys in a dict: ours and ROX's.
_RECIPIENT_KEYS: Final[Mapping[str, str]] = {
    "dest_tn": "dest_tn",
    "DestTn": "dest_tn",
    "text": "text",
    "SMSText": "text",
    "dest_name": "dest_name",
    "DestName": "dest_name",
    "dest_email": "dest_email",
    "DestEmail": "dest_email",
}


@dataclass(frozen=True, slots=True)
class Recipient:
    """One destination of a send. ``text`` is its own text (``SMSText``); a
    ``text=`` given to ``send`` (``GlobalText``) overrides it."""

    dest_tn: str
    text: str | None = None
    dest_name: str | None = None
    dest_email: str | None = None

    def to_rox(self) -> dict[str, str]:
        """The recipient object of a ``ROX_API_Request`` (absent fields left out)."""
        body = {"DestTn": self.dest_tn}
        if self.dest_name is not None:
            body["DestName"] = self.dest_name
        if self.dest_email is not None:
            body["DestEmail"] = self.dest_email
        if self.text is not None:
            body["SMSText"] = self.text
        return body


RecipientLike = Recipient | Mapping[str, Any] | str


def to_recipient(value: RecipientLike) -> Recipient:
    """A ``Recipient`` from a ``Recipient``, a dict (our or ROX key names) or a number."""
    if isinstance(value, Recipient):
        return value
    if isinstance(value, str):
        return Recipient(value)
    if isinstance(value, Mapping):
        fields: dict[str, Any] = {}
        for key, item in value.items():
            name = _RECIPIENT_KEYS.get(key)
            if name is None:
                raise ValueError(
                    f"unknown recipient key {key!r} (use dest_tn/DestTn, text/SMSText, "
                    "dest_name/DestName, dest_email/DestEmail)"
                )
            if name in fields:
                raise ValueError(f"recipient key {key!r} given twice ({name})")
            if item is not None and not isinstance(item, str):
                raise TypeError(f"recipient {key!r} must be a string, not {type(item).__name__}")
            fields[name] = item
        if not fields.get("dest_tn"):
            raise ValueError("recipient without dest_tn/DestTn")
        return Recipient(**fields)
    raise TypeError(f"a recipient is a Recipient, a dict or a str, not {type(value).__name__}")


def to_recipients(values: Iterable[RecipientLike]) -> list[Recipient]:
    if isinstance(values, (str, Mapping, Recipient)):
        # One recipient given bare: a string would otherwise be split into digits.
        raise TypeError("recipients must be an iterable of recipients; use send_one for one")
    return [to_recipient(v) for v in values]


def parse_timestamp(value: Any) -> datetime | None:
    """``01-Jan-2030 00:00:01 (UTC)`` as an aware UTC datetime; None when absent or odd."""
    if not isinstance(value, str):
        return None
    try:
        return parse_local_time(value.strip().removesuffix("(UTC)"), 0)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What the gateway did with one recipient.

    ``index`` is the recipient's position (from 0) in what was given to ``send``;
    ``dest_tn`` the number as the gateway normalised it (E.164); ``sms_id`` is
    None when it was rejected (``result`` then says why). ``timestamp`` is,
    when queued, when it is due to be sent (UTC), else when it was refused.
    ``request_id`` is the ``RequestId`` of the request that carried it.
    """

    index: int
    dest_tn: str
    sms_id: str | None
    result: str
    result_text: str
    timestamp: datetime | None
    request_id: str = ""

    @property
    def queued(self) -> bool:
        return self.result == OK and self.sms_id is not None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The answer to a ``send``: one ``RequestId`` per request made (one per 500
    recipients), and one result per recipient, in the order given."""

    request_ids: list[str]
    results: list[RecipientResult]

    @property
    def queued(self) -> list[RecipientResult]:
        return [r for r in self.results if r.queued]

    @property
    def rejected(self) -> list[RecipientResult]:
        return [r for r in self.results if not r.queued]

    @property
    def ok(self) -> bool:
        """True when every recipient was queued."""
        return all(r.queued for r in self.results)

    @property
    def sms_ids(self) -> list[str | None]:
        return [r.sms_id for r in self.results]

    def __len__(self) -> int:
        return len(self.results)


class RoxError(Exception):
    """The gateway refused a request as a whole (top-level ``Result`` not ``0000``):
    bad credentials (2002), no credit (2040), … Nothing of that request was queued.

    ``partial`` holds what earlier requests of the same ``send`` (a send of more
    than 500 recipients makes several) had already queued, or None.
    ``idempotency_key`` is the key of the whole ``send``: call ``send`` again
    with it and the requests already accepted are answered again, not repeated.
    """

    def __init__(
        self,
        code: str,
        text: str,
        request_id: str | None = None,
        *,
        partial: SendResult | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.request_id = request_id
        self.partial = partial
        self.idempotency_key = idempotency_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, text={self.text!r})"


class RoxConnectionError(RoxError):
    """No ROX answer after every retry: the gateway could not be reached, timed
    out, answered an HTTP error or something that is not a ``ROX_API_Response``.

    Its ``code`` is ``2100`` (service unavailable) so that code which retries
    2100 later handles both alike. Unlike a 2100 from the gateway, the outcome
    of the last attempt is unknown: send again with ``idempotency_key`` (set
    whenever retries are enabled) and nothing is queued twice.
    """

    def __init__(
        self,
        text: str,
        *,
        partial: SendResult | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(
            Result.UNAVAILABLE.value,
            text,
            None,
            partial=partial,
            idempotency_key=idempotency_key,
        )
