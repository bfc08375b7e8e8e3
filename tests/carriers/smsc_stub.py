"""A tiny, scriptable SMSC for the session tests: real TCP on 127.0.0.1, our PDU codec,
and switches for the misbehaviours a session must survive.

Unlike ``roxgate.carriers.simulator`` (a realistic SMSC), this one does only what a
test tells it and records everything it sees, with a shared :attr:`SmscStub.events`
timeline tests can append to (one event loop, so list order is time order).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roxgate.carriers.smpp.pdu import (
    Bind,
    BindResp,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduError,
    PduReader,
    Status,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode,
    encode,
)


@dataclass
class StubConnection:
    """One ESME connection as the stub sees it."""

    writer: asyncio.StreamWriter
    bound: bool = False
    submits: int = 0  # submit_sm received on this connection
    outstanding: int = 0  # submit_sm received and not answered yet
    sequence: int = 0x100  # for the stub's own requests
    waiting: dict[int, asyncio.Future[Pdu]] = field(default_factory=dict)

    def send(self, pdu: Pdu) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(pdu))

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


class SmscStub:
    """Start with ``await stub.start()`` (``stub.port``), stop with ``await stub.stop()``.

    Switches (plain attributes, change them at any time):

    * ``refuse_bind``: a status to refuse binds with (then the connection is closed).
    * ``submit_delay``: seconds before each submit_sm_resp (responses to the submits
      read together are sent together).
    * ``throttle``: answer that many of the next submits with ``ESME_RTHROTTLED``.
    * ``drop_after``: close a connection, unanswered, once it has received that many
      submits (the count is per connection).
    * ``answer_submits``: False leaves submits unanswered.
    * ``ignore_enquire``: leave enquire_link unanswered.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.refuse_bind: int | None = None
        self.submit_delay = 0.0
        self.throttle = 0
        self.drop_after: int | None = None
        self.answer_submits = True
        self.ignore_enquire = False
        # Records.
        self.binds: list[Bind] = []
        self.submits: list[SubmitSm] = []
        self.submit_times: list[float] = []
        self.max_outstanding = 0  # most submit_sm unanswered at once on one connection
        self.enquire_links = 0
        self.generic_nacks: list[GenericNack] = []
        self.unbinds = 0
        self.events: list[tuple[Any, ...]] = []
        self.connections: list[StubConnection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._message_id = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> SmscStub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- actions -----------------------------------------------------------------

    @property
    def bound(self) -> list[StubConnection]:
        return [c for c in self.connections if c.bound and not c.writer.is_closing()]

    def drop(self) -> None:
        """Cut every connection at once (no unbind)."""
        for conn in self.connections:
            conn.writer.transport.abort()

    def send_raw(self, data: bytes) -> None:
        for conn in self.bound:
            conn.writer.write(data)

    async def request(self, pdu: Pdu, within: float = 5.0) -> Pdu:
        """Send a request on the (single) bound connection and return the answer."""
        conn = self.bound[0]
        pdu.sequence_number = conn.next_sequence()
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        conn.waiting[pdu.sequence_number] = future
        conn.send(pdu)
        return await asyncio.wait_for(future, within)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.005)

    # -- serving -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = StubConnection(writer)
        self.connections.append(conn)
        framer = PduReader()
        try:
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                framer.feed(data)
                answered: list[SubmitSm] = []
                for frame in framer:
                    self._on_frame(conn, frame, answered)
                if answered:
                    self._answer(conn, answered)
        except (OSError, PduError):
            pass
        finally:
            writer.transport.abort()

    def _on_frame(self, conn: StubConnection, frame: bytes, answered: list[SubmitSm]) -> None:
        pdu = decode(frame)
        if isinstance(pdu, Bind):
            self.binds.append(pdu)
            if self.refuse_bind is not None:
                conn.send(
                    BindResp(
                        command_id=CommandId(pdu.command_id | 0x80000000),
                        sequence_number=pdu.sequence_number,
                        command_status=self.refuse_bind,
                    )
                )
                conn.writer.close()
                return
            conn.bound = True
            conn.send(
                BindResp(
                    command_id=CommandId(pdu.command_id | 0x80000000),
                    sequence_number=pdu.sequence_number,
                    system_id="STUB",
                )
            )
        elif isinstance(pdu, SubmitSm):
            conn.submits += 1
            self.submits.append(pdu)
            self.submit_times.append(time.monotonic())
            conn.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, conn.outstanding)
            if self.drop_after is not None and conn.submits >= self.drop_after:
                conn.writer.transport.abort()
                return
            if self.answer_submits:
                answered.append(pdu)
        elif isinstance(pdu, EnquireLink):
            self.enquire_links += 1
            if not self.ignore_enquire:
                conn.send(EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            self.unbinds += 1
            conn.send(UnbindResp(sequence_number=pdu.sequence_number))
            conn.writer.close()
        elif isinstance(pdu, GenericNack):
            self.generic_nacks.append(pdu)
            self.events.append(("nack", pdu.sequence_number, pdu.command_status))
        elif pdu.command_id & 0x80000000:
            if isinstance(pdu, DeliverSmResp):
                self.events.append(("resp", pdu.sequence_number, pdu.command_status))
            future = conn.waiting.pop(pdu.sequence_number, None)
            if future is not None and not future.done():
                future.set_result(pdu)

    def _answer(self, conn: StubConnection, submits: list[SubmitSm]) -> None:
        if self.submit_delay > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(self.submit_delay, self._write_answers, conn, submits)
        else:
            self._write_answers(conn, submits)

    def _write_answers(self, conn: StubConnection, submits: list[SubmitSm]) -> None:
        if conn.writer.is_closing():
            return
        out = bytearray()
        for pdu in submits:
            conn.outstanding -= 1
            if self.throttle > 0:
                self.throttle -= 1
                resp = SubmitSmResp(
                    sequence_number=pdu.sequence_number, command_status=Status.ESME_RTHROTTLED
                )
            else:
                self._message_id += 1
                resp = SubmitSmResp(
                    sequence_number=pdu.sequence_number, message_id=f"{self._message_id:08X}"
                )
            out += encode(resp)
        conn.writer.write(out)


def deliver_receipt(message_id: str, state: str = "DELIVRD") -> DeliverSm:
    """A delivery receipt deliver_sm in the SMPP 3.4 Appendix B text format."""
    text = (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2401010000 done date:2401010001 "
        f"stat:{state} err:000 text:hello"
    )
    return DeliverSm(
        source_addr="61400000000",
        destination_addr="ROXGATE",
        esm_class=0x04,
        short_message=text.encode("ascii"),
    )
