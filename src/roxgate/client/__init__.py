"""The roxgate Python SDK: send SMS through a ROX 1.1 gateway, and check, read
and answer the receipts and replies it POSTs back (docs/sdk.md).

It needs only httpx: none of the gateway's own dependencies are imported.

    from roxgate.client import Client

    with Client("https://sms.example.com", "CI00000001", "me@example.com", password) as rox:
        result = rox.send(["+61407555001", "+61407555002"], text="See you at 10")
"""

from roxgate.client._client import AsyncClient, Client
from roxgate.client._models import (
    Recipient,
    RecipientResult,
    RoxConnectionError,
    RoxError,
    SendResult,
)
from roxgate.client.receiving import (
    Receipt,
    Reply,
    parse_callback,
    parse_receipt,
    parse_reply,
    receipt_answer,
    reply_answer,
    verify_signature,
)

__all__ = [
    "AsyncClient",
    "Client",
    "Receipt",
    "Recipient",
    "RecipientResult",
    "Reply",
    "RoxConnectionError",
    "RoxError",
    "SendResult",
    "parse_callback",
    "parse_receipt",
    "parse_reply",
    "receipt_answer",
    "reply_answer",
    "verify_signature",
]
