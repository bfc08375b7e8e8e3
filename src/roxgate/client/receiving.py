"""The customer's side of callbacks: check, read and answer receipts and replies
(SPEC.md §3; the bodies are described in docs/callbacks.md).

Framework-free: give it the raw body bytes and the request headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from roxgate.client._models import OK, parse_timestamp
from roxgate.rox import signing

RECEIPT_NAME: Final = "ROX_API_Receipt"
# The seed's reply body is named ROX_API_Reply_Response (a copy slip); roxgate
# sends ROX_API_Reply. Both are accepted.
REPLY_NAMES: Final = ("ROX_API_Reply", "ROX_API_Reply_Response")
DEFAULT_TOLERANCE_S: Final = signing.DEFAULT_TOLERANCE_S

Body = bytes | bytearray | memoryview | str | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A ``ROX_API_Receipt``: the final state of one message.

    ``result`` is ``"0000"`` when delivered, else the code of what went wrong
    (2060–2066). Deduplicate by ``(sms_id, result)``: delivery is at least once.
    """

    account_id: str
    username: str
    request_id: str
    sms_id: str
    dest_tn: str
    result: str
    result_text: str
    timestamp: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def delivered(self) -> bool:
        return self.result == OK


@dataclass(frozen=True, slots=True)
class Reply:
    """A ``ROX_API_Reply``: an SMS from ``reply_from`` answering message ``sms_id``
    (whose text was ``sms_text``)."""

    account_id: str
    username: str
    request_id: str
    sms_id: str
    reply_from: str
    reply_text: str
    sms_text: str
    timestamp: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def _load(body: Body, what: str) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body).removeprefix(b"\xef\xbb\xbf")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"not a {what}: the body is not UTF-8") from None
    elif not isinstance(body, str):
        raise TypeError(f"body must be bytes, str or a dict, not {type(body).__name__}")
    try:
        data = json.loads(body.removeprefix("\ufeff"))
    except ValueError:
        raise ValueError(f"not a {what}: the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a {what}: the body is not a JSON object")
    return data


def _object(data: Mapping[str, Any], path: str, what: str) -> Mapping[str, Any]:
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(value, Mapping):
        raise ValueError(f"not a {what}: {path} is missing or not an object")
    return value


def _text(obj: Mapping[str, Any], path: str, key: str, what: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"not a {what}: {path}.{key} is missing or not a string")
    return value


def parse_receipt(body: Body) -> Receipt:
    """A ``Receipt`` from the raw body (bytes or str, a UTF-8 BOM allowed) or a
    parsed dict. Raises ``ValueError`` saying what is wrong with a malformed one."""
    what = RECEIPT_NAME
    data = _load(body, what)
    if data.get("Name") != RECEIPT_NAME:
        raise ValueError(f"not a {what}: Name is {data.get('Name')!r}")
    sender = _object(data, "Sender", what)
    messages = _object(data, "Messages", what)
    receipt = _object(data, "Messages.Receipt", what)
    result = receipt.get("Result")
    if not isinstance(result, str) or len(result) != 4:
        raise ValueError(f"not a {what}: Messages.Receipt.Result is not a 4-character code")
    r = "Messages.Receipt"
    return Receipt(
        account_id=_text(sender, "Sender", "AccountId", what, required=True),
        username=_text(sender, "Sender", "Username", what, required=False),
        request_id=_text(messages, "Messages", "RequestId", what, required=False),
        sms_id=_text(receipt, r, "SMSId", what, required=True),
        dest_tn=_text(receipt, r, "DestTn", what, required=False),
        result=result,
        result_text=_text(receipt, r, "ResultText", what, required=False),
        timestamp=parse_timestamp(receipt.get("Timestamp")),
        raw=data,
    )


def parse_reply(body: Body) -> Reply:
    """A ``Reply`` from the raw body or a parsed dict; the name may be
    ``ROX_API_Reply`` or ``ROX_API_Reply_Response``. ``ValueError`` when malformed."""
    what = "ROX_API_Reply"
    data = _load(body, what)
    if data.get("Name") not in REPLY_NAMES:
        raise ValueError(f"not a {what}: Name is {data.get('Name')!r}")
    sender = _object(data, "Sender", what)
    messages = _object(data, "Messages", what)
    reply = _object(data, "Messages.Reply", what)
    r = "Messages.Reply"
    return Reply(
        account_id=_text(sender, "Sender", "AccountId", what, required=True),
        username=_text(sender, "Sender", "Username", what, required=False),
        request_id=_text(messages, "Messages", "RequestId", what, required=False),
        sms_id=_text(reply, r, "SMSId", what, required=False),
        reply_from=_text(reply, r, "ReplyFrom", what, required=True),
        reply_text=_text(reply, r, "ReplyText", what, required=False),
        sms_text=_text(reply, r, "SMSText", what, required=False),
        timestamp=parse_timestamp(reply.get("Timestamp")),
        raw=data,
    )


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when ``X-Rox-Timestamp`` / ``X-Rox-Signature`` in ``headers`` sign
    exactly ``body`` (the raw bytes received) with the account's callback
    ``secret``, at a time within ``tolerance_s`` seconds of now (either side).
    Header names are looked up in any case."""
    return signing.verify(secret, bytes(body), headers, tolerance_s)


def _answer(name: str, result: str, text: str) -> bytes:
    body = {"Name": name, "Version": 1.1, "Result": result, "ResultText": text}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def receipt_answer(result: str = OK, text: str = "OK") -> bytes:
    """The JSON body to answer a receipt POST with (``application/json``).

    ``0000`` tells the gateway the receipt is taken; any other ``result`` makes
    it try again later (then e-mail the user)."""
    return _answer("ROX_API_Receipt_Response", result, text)


def reply_answer(result: str = OK, text: str = "OK") -> bytes:
    """The JSON body to answer a reply POST with; as ``receipt_answer``."""
    return _answer("ROX_API_Reply_Response", result, text)


def parse_callback(body: Body) -> Receipt | Reply:
    """A ``Receipt`` or a ``Reply``, by the body's ``Name`` (one URL for both)."""
    data = _load(body, "ROX_API_Receipt or ROX_API_Reply")
    if data.get("Name") == RECEIPT_NAME:
        return parse_receipt(data)
    if data.get("Name") in REPLY_NAMES:
        return parse_reply(data)
    raise ValueError(f"not a ROX_API_Receipt or ROX_API_Reply: Name is {data.get('Name')!r}")
