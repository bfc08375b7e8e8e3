"""Receive roxgate receipts and replies: a raw ASGI app, no framework.

Only the standard library and the roxgate SDK (``roxgate.client``). It checks
each POST's signature, reads the receipt or reply, prints it and answers as
roxgate expects (docs/callbacks.md, docs/sdk.md):

    export ROX_CALLBACK_SECRET=...        # roxgate account secret CI00000001
    uvicorn examples.receiver:app --host 127.0.0.1 --port 9099

Then send with ``ReceiptCallbackURL`` http://127.0.0.1:9099/receipt and
``ReplyCallbackURL`` http://127.0.0.1:9099/reply (any path does: the body's
``Name`` tells a receipt from a reply). A real receiver stores the callback
before answering and does slow work afterwards; deduplicate receipts by
(SMSId, Result): delivery is at least once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from roxgate.client import (
    Receipt,
    parse_callback,
    receipt_answer,
    reply_answer,
    verify_signature,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024  # receipts and replies are far smaller
MAX_AGE_S = 300  # refuse signatures older (or newer) than this: replays


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await _respond(send, 405, b"POST only\n", extra=[(b"allow", b"POST")])
        return
    body = await _read_body(receive)
    if body is None:
        await _respond(send, 413, b"body too large\n")
        return
    secret = os.environ.get("ROX_CALLBACK_SECRET", "")
    if not secret:
        # 5xx: roxgate retries later, so nothing is lost while this is fixed.
        await _respond(send, 503, b"ROX_CALLBACK_SECRET is not set\n")
        return
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    if not verify_signature(secret, body, headers, tolerance_s=MAX_AGE_S):
        # 4xx is final: roxgate does not retry, and e-mails it to the user instead.
        await _respond(send, 401, b"bad or stale signature\n")
        return
    try:
        callback = parse_callback(body)
    except ValueError as exc:
        await _respond(send, 400, f"{exc}\n".encode())
        return
    if isinstance(callback, Receipt):
        print(
            f"receipt {callback.result} {callback.result_text!r} to {callback.dest_tn} "
            f"SMSId {callback.sms_id} RequestId {callback.request_id}",
            flush=True,
        )
        answer = receipt_answer()
    else:
        print(
            f"reply from {callback.reply_from}: {callback.reply_text!r} "
            f"to SMSId {callback.sms_id} ({callback.sms_text!r})",
            flush=True,
        )
        answer = reply_answer()
    await _respond(send, 200, answer, content_type=b"application/json")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it is longer than ``MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
