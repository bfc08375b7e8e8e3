"""uvicorn's httptools protocol, with deadlines for reading each request.

uvicorn closes a kept-alive connection that stays idle, but never one that
is part-way through sending a request, and httptools accepts a request head
of any size. A client that opens connections and sends each request head or
body a byte at a time (slowloris), or an endless header, would hold them
open, and their memory, for as long as it likes. This protocol closes a
connection

* whose request head is not complete ``header_timeout`` seconds after the
  connection opened (or, on a kept-alive connection, after the request's
  first byte),
* whose request head grows beyond ``max_head_bytes``, or
* whose request body is not complete ``body_timeout`` seconds after its head.

The send handler reads its body with its own deadline, a few seconds
shorter (``BODY_GRACE``), so that an honest slow client gets a ROX answer;
this one is the backstop for every route, and for a body still trickling in
after the answer was sent.

A TLS handshake is bounded by asyncio (60 s), before this protocol starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("roxgate.http")
MAX_HEAD_BYTES = 64 * 1024
BODY_GRACE = 5.0  # seconds the handler's own body deadline has to answer first
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0  # 0: no deadline
    body_timeout: float = 60.0 + BODY_GRACE  # 0: no deadline
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)
        # Only chunks that are head from end to end are counted: one in which a
        # request begins may end the previous one. So a head may exceed the
        # limit by up to one read (256 KiB), never grow without bound.
        if was_in_head and self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                log.debug("closing %s: request head over %d bytes", self.client, self._head_bytes)
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is None:  # a new connection's deadline already runs
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # deadlines

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            what = "head" if self._in_head else "body"
            log.debug("closing %s: request %s not complete in %g s", self.client, what, seconds)
            self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class with these deadlines (seconds; 0 for none), for uvicorn's ``http``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout + BODY_GRACE if body_timeout > 0 else 0.0,
        },
    )
