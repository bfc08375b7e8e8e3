"""Tests for roxgate.carriers.simulator (the built-in SMSC) and for the node-smpp peer
in tests/peers, both driven over real TCP on 127.0.0.1 by a raw client built on the PDU
codec. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from roxgate.carriers.simulator import AUTO_REPLY_TEXT, MAGIC_NUMBERS, SmscSimulator
from roxgate.carriers.smpp.pdu import (
    Bind,
    BindResp,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    Pdu,
    PduReader,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    Unbind,
    UnbindResp,
    decode,
    encode,
    get_cstr_tlv,
    get_int_tlv,
    split_frames,
)
from roxgate.carriers.smpp.receipt import parse_receipt
from roxgate.sms.text import decode_gsm7, encode_gsm7
from tests.peers.nodepeer import NodeSmsc, node_available

T = TypeVar("T")
P = TypeVar("P")


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class RawClient:
    """An ESME reduced to the wire: write PDUs, read PDUs, nothing automatic."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = PduReader()
        self.backlog: list[Pdu] = []  # PDUs read while waiting for another kind
        self.unread: list[bytes] = []  # complete frames not decoded yet
        self.seq = 0

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, pdu: Pdu) -> int:
        if not pdu.sequence_number and not pdu.command_id & 0x80000000:
            pdu.sequence_number = self.next_seq()
        self.writer.write(encode(pdu))
        return pdu.sequence_number

    async def _read_one(self, within: float) -> Pdu | None:
        """The next PDU off the wire; ``None`` at end of stream."""
        while True:
            self.unread.extend(self.frames)
            if self.unread:
                return decode(self.unread.pop(0))
            data = await asyncio.wait_for(self.reader.read(65536), within)
            if not data:
                return None
            self.frames.feed(data)

    async def read(self, within: float = 5.0) -> Pdu:
        if self.backlog:
            return self.backlog.pop(0)
        pdu = await self._read_one(within)
        if pdu is None:
            raise ConnectionError("connection closed by the SMSC")
        return pdu

    async def expect(self, cls: type[P], within: float = 5.0) -> P:
        """The next PDU of type ``cls``; others read meanwhile are kept for later."""
        for i, pdu in enumerate(self.backlog):
            if isinstance(pdu, cls):
                return self.backlog.pop(i)  # type: ignore[return-value]
        deadline = time.monotonic() + within
        while True:
            pdu = await self._read_one(max(0.01, deadline - time.monotonic()))
            if pdu is None:
                raise ConnectionError(f"connection closed while waiting for {cls.__name__}")
            if isinstance(pdu, cls):
                return pdu
            self.backlog.append(pdu)

    async def nothing_for(self, seconds: float) -> bool:
        """True when no PDU arrives within ``seconds``."""
        try:
            pdu = await self._read_one(seconds)
        except TimeoutError:
            return True
        if pdu is not None:
            self.backlog.append(pdu)
        return False

    async def closed(self, within: float = 3.0) -> bool:
        """True when the SMSC closes the connection in ``within`` seconds (PDUs read
        meanwhile are kept)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                pdu = await self._read_one(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if pdu is None:
                return True
            self.backlog.append(pdu)
        return False

    async def bind(
        self,
        kind: CommandId = CommandId.BIND_TRANSCEIVER,
        system_id: str = "rox",
        password: str = "",
    ) -> BindResp:
        self.send(Bind(command_id=kind, system_id=system_id, password=password))
        resp = await self.expect(BindResp)
        assert resp.command_id == kind | 0x80000000
        return resp

    async def submit(self, destination: str, text: str = "Hello", registered: int = 1) -> int:
        return self.send(
            SubmitSm(
                source_addr_ton=5,
                source_addr="RoxGate",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=destination,
                registered_delivery=registered,
                short_message=encode_gsm7(text),
            )
        )

    async def submit_resp(self, seq: int, within: float = 5.0) -> SubmitSmResp:
        resp = await self.expect(SubmitSmResp, within)
        assert resp.sequence_number == seq
        return resp

    def ack(self, pdu: DeliverSm, status: int = Status.ESME_ROK) -> None:
        self.send(DeliverSmResp(sequence_number=pdu.sequence_number, command_status=status))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def with_sim(body: Callable[[SmscSimulator], Awaitable[T]], **options: Any) -> T:
    options.setdefault("receipt_delay", 0.0)
    sim = SmscSimulator(**options)
    await sim.start()
    try:
        return await body(sim)
    finally:
        await sim.stop()


async def wait_until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------
# bind
# ---------------------------------------------------------------------------


def test_bind_kinds_any_credentials() -> None:
    async def body(sim: SmscSimulator) -> None:
        assert sim.port > 0
        for kind in (
            CommandId.BIND_TRANSCEIVER,
            CommandId.BIND_TRANSMITTER,
            CommandId.BIND_RECEIVER,
        ):
            client = await RawClient.connect(sim.port)
            resp = await client.bind(kind, system_id=f"any{kind.value}", password="whatever")
            assert resp.command_status == Status.ESME_ROK
            assert resp.system_id == "roxsim"
            assert resp.sc_interface_version == 0x34
            # a second bind on the same connection is refused
            client.send(Bind(command_id=kind, system_id="again"))
            again = await client.expect(BindResp)
            assert again.command_status == Status.ESME_RALYBND
            seq = client.send(EnquireLink())
            link = await client.expect(EnquireLinkResp)
            assert link.sequence_number == seq
            await client.close()
        await wait_until(lambda: sim.stats.binds == 3)

    run(with_sim(body))


def test_bind_with_credentials() -> None:
    async def body(sim: SmscSimulator) -> None:
        for system_id, password, status in (
            ("rox", "wrong", Status.ESME_RINVPASWD),
            ("nobody", "secret", Status.ESME_RINVSYSID),
        ):
            client = await RawClient.connect(sim.port)
            client.send(Bind(system_id=system_id, password=password))
            resp = await client.expect(BindResp)
            assert resp.command_status == status
            assert await client.closed(), "a refused bind closes the connection"
        client = await RawClient.connect(sim.port)
        resp = await client.bind(system_id="rox", password="secret")
        assert resp.command_status == Status.ESME_ROK
        assert sim.stats.bind_failures == 2
        await client.close()

    run(with_sim(body, credentials={"rox": "secret"}))


def test_requests_before_bind_are_refused_and_unbind_closes() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        seq = await client.submit("61400000001")
        resp = await client.submit_resp(seq)
        assert resp.command_status == Status.ESME_RINVBNDSTS
        client.send(EnquireLink())  # allowed before bind
        await client.expect(EnquireLinkResp)
        await client.bind(CommandId.BIND_RECEIVER)
        seq = await client.submit("61400000001")  # a receiver cannot submit
        assert (await client.submit_resp(seq)).command_status == Status.ESME_RINVBNDSTS
        seq = client.send(Unbind())
        assert (await client.expect(UnbindResp)).sequence_number == seq
        assert await client.closed()

    run(with_sim(body))


# ---------------------------------------------------------------------------
# submit_sm and receipts
# ---------------------------------------------------------------------------


def test_submit_then_delivrd_receipt_with_same_id() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        started = time.monotonic()
        seq = await client.submit("61400000001", "Hello from roxgate, a long text")
        resp = await client.submit_resp(seq)
        assert resp.command_status == Status.ESME_ROK
        assert resp.message_id and all(c in "0123456789abcdef" for c in resp.message_id)
        deliver = await client.expect(DeliverSm)
        elapsed = time.monotonic() - started
        assert 0.15 <= elapsed < 2.0, elapsed
        assert deliver.esm_class == 0x04
        assert deliver.source_addr == "61400000001"
        assert deliver.destination_addr == "RoxGate"
        assert get_cstr_tlv(deliver.tlvs, Tlv.RECEIPTED_MESSAGE_ID) == resp.message_id
        assert get_int_tlv(deliver.tlvs, Tlv.MESSAGE_STATE) == MessageState.DELIVERED
        text = deliver.short_message.decode("ascii")
        assert text.startswith(f"id:{resp.message_id} sub:001 dlvrd:001 submit date:")
        assert " stat:DELIVRD err:000 text:Hello from roxgate, " in text
        assert text.endswith("text:Hello from roxgate, ")  # first 20 characters
        receipt = parse_receipt(deliver)
        assert receipt is not None
        assert receipt.message_id == resp.message_id
        assert receipt.state == "DELIVRD"
        assert receipt.error == "000"
        assert receipt.submit_date is not None and receipt.done_date is not None
        client.ack(deliver)
        await wait_until(lambda: sim.stats.receipts_acked == 1)
        assert sim.outstanding == 0
        (record,) = sim.submits
        assert record.system_id == "rox"
        assert record.message_id == resp.message_id
        assert record.pdu.destination_addr == "61400000001"
        assert abs(record.received_at - time.time()) < 5
        assert sim.stats.submits == sim.stats.submits_accepted == 1
        assert sim.stats.receipts_sent == 1
        await client.close()

    run(with_sim(body, receipt_delay=0.2))


def test_decimal_ids_and_no_receipt_unless_asked() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        ids = set()
        for _ in range(3):
            seq = await client.submit("61400000002", registered=0)
            resp = await client.submit_resp(seq)
            assert resp.message_id.isdigit()
            ids.add(resp.message_id)
        assert len(ids) == 3
        # registered_delivery 2 = failures only: no receipt for a delivered message
        seq = await client.submit("61400000002", registered=2)
        await client.submit_resp(seq)
        seq = await client.submit("61400009992", registered=2)
        await client.submit_resp(seq)
        deliver = await client.expect(DeliverSm)
        receipt = parse_receipt(deliver)
        assert receipt is not None and receipt.state == "UNDELIV"
        client.ack(deliver)
        assert await client.nothing_for(0.2)
        assert sim.stats.receipts_scheduled == 1
        await client.close()

    run(with_sim(body, message_id_style="decimal"))


def test_magic_numbers() -> None:
    assert set(MAGIC_NUMBERS) == {f"999{d}" for d in range(9)}

    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()

        # 9990: permanent refusal, never a receipt
        seq = await client.submit("61400009990")
        resp = await client.submit_resp(seq)
        assert resp.command_status == Status.ESME_RINVDSTADR
        assert resp.message_id == ""

        # 9991: throttled twice for that number, then accepted and delivered
        statuses = []
        for _ in range(3):
            seq = await client.submit("61400009991")
            statuses.append((await client.submit_resp(seq)).command_status)
        assert statuses == [Status.ESME_RTHROTTLED, Status.ESME_RTHROTTLED, Status.ESME_ROK]
        seq = await client.submit("61400009991")  # stays accepted afterwards
        assert (await client.submit_resp(seq)).command_status == Status.ESME_ROK
        seq = await client.submit("61499999991")  # another number: its own two
        assert (await client.submit_resp(seq)).command_status == Status.ESME_RTHROTTLED

        expected = {
            "61400009991": ("DELIVRD", "000", MessageState.DELIVERED),
            "61400009992": ("UNDELIV", "001", MessageState.UNDELIVERABLE),
            "61400009993": ("EXPIRED", "000", MessageState.EXPIRED),
            "61400009994": ("REJECTD", "002", MessageState.REJECTED),
            "61400009996": ("DELETED", "000", MessageState.DELETED),
            "61400009997": ("UNKNOWN", "000", MessageState.UNKNOWN),
            "61400001234": ("DELIVRD", "000", MessageState.DELIVERED),
        }
        ids = {}
        for number in [*list(expected)[1:], "61400009995"]:
            seq = await client.submit(number)
            resp = await client.submit_resp(seq)
            assert resp.command_status == Status.ESME_ROK
            ids[resp.message_id] = number
        deliveries = []
        while len(deliveries) < 8:  # the two 9991 receipts + six of the loop
            deliver = await client.expect(DeliverSm)
            client.ack(deliver)
            deliveries.append(deliver)
        assert await client.nothing_for(0.3), "9995 must never get a receipt"
        seen_9995 = [d for d in deliveries if d.source_addr == "61400009995"]
        assert seen_9995 == []
        for deliver in deliveries:
            receipt = parse_receipt(deliver)
            assert receipt is not None
            state, err, message_state = expected[deliver.source_addr]
            assert receipt.state == state, deliver.short_message
            assert receipt.error == err
            assert get_int_tlv(deliver.tlvs, Tlv.MESSAGE_STATE) == message_state
            if deliver.source_addr != "61400009991":
                assert ids[receipt.message_id] == deliver.source_addr
        undeliv = next(d for d in deliveries if d.source_addr == "61400009992")
        assert parse_receipt(undeliv).network_error_code == (3, 1)  # type: ignore[union-attr]
        await client.close()

    run(with_sim(body))


def test_9998_is_delivered_then_replies() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        seq = await client.submit("61400009998")
        message_id = (await client.submit_resp(seq)).message_id
        receipt = await client.expect(DeliverSm)
        client.ack(receipt)
        assert parse_receipt(receipt).message_id == message_id  # type: ignore[union-attr]
        answer = await client.expect(DeliverSm)
        client.ack(answer)
        assert parse_receipt(answer) is None and answer.esm_class == 0
        assert (answer.source_addr_ton, answer.source_addr) == (1, "61400009998")
        assert (answer.dest_addr_ton, answer.destination_addr) == (5, "RoxGate")
        assert decode_gsm7(answer.short_message) == AUTO_REPLY_TEXT
        await client.close()

    run(with_sim(body))


def test_receipt_kept_until_a_receiver_of_that_system_id_binds() -> None:
    async def body(sim: SmscSimulator) -> None:
        sender = await RawClient.connect(sim.port)
        await sender.bind(CommandId.BIND_TRANSMITTER, system_id="acme")
        seq = await sender.submit("61400000003")
        message_id = (await sender.submit_resp(seq)).message_id
        await wait_until(lambda: sim.pending == 1)
        assert await sender.nothing_for(0.1)  # a transmitter gets no deliver_sm

        other = await RawClient.connect(sim.port)
        await other.bind(CommandId.BIND_RECEIVER, system_id="someone-else")
        assert await other.nothing_for(0.2), "receipts go to the same system_id only"
        assert sim.pending == 1

        receiver = await RawClient.connect(sim.port)
        await receiver.bind(CommandId.BIND_RECEIVER, system_id="acme")
        deliver = await receiver.expect(DeliverSm)
        assert parse_receipt(deliver).message_id == message_id  # type: ignore[union-attr]
        receiver.ack(deliver)
        await wait_until(lambda: sim.stats.receipts_acked == 1)
        assert sim.pending == 0
        for client in (sender, other, receiver):
            await client.close()

    run(with_sim(body, receipt_delay=0.05))


def test_receipt_retried_after_error_status_timeout_and_disconnect() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        seq = await client.submit("61400000004")
        message_id = (await client.submit_resp(seq)).message_id

        first = await client.expect(DeliverSm)
        client.ack(first, Status.ESME_RX_T_APPN)  # "try again later"
        second = await client.expect(DeliverSm)
        assert second.sequence_number != first.sequence_number
        assert parse_receipt(second).message_id == message_id  # type: ignore[union-attr]
        # no answer at all: resent after response_timeout
        third = await client.expect(DeliverSm, within=2)
        assert parse_receipt(third).message_id == message_id  # type: ignore[union-attr]
        assert sim.stats.deliver_nacked == 1
        assert sim.stats.deliver_timeouts >= 1
        # gone without answering: kept, and delivered to the next bind
        await client.close()
        await wait_until(lambda: sim.pending == 1)
        again = await RawClient.connect(sim.port)
        await again.bind(CommandId.BIND_RECEIVER)
        fourth = await again.expect(DeliverSm)
        assert parse_receipt(fourth).message_id == message_id  # type: ignore[union-attr]
        again.ack(fourth)
        await wait_until(lambda: sim.stats.receipts_acked == 1)
        assert sim.outstanding == 0 and sim.pending == 0
        assert sim.stats.receipts_sent >= 4
        await again.close()

    run(with_sim(body, retry_delay=0.05, response_timeout=0.3))


def test_deliver_sm_is_windowed_not_one_at_a_time() -> None:
    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        client.writer.write(
            b"".join(
                encode(
                    SubmitSm(
                        sequence_number=client.next_seq(),
                        destination_addr=f"614{i:07d}7",
                        registered_delivery=1,
                        short_message=b"hi",
                    )
                )
                for i in range(20)
            )
        )
        for _ in range(20):
            await client.expect(SubmitSmResp)
        window = [await client.expect(DeliverSm) for _ in range(5)]
        assert await client.nothing_for(0.2), "no more than the window unanswered"
        for deliver in window:
            client.ack(deliver)
        rest = [await client.expect(DeliverSm) for _ in range(5)]
        assert len({d.sequence_number for d in window + rest}) == 10
        for deliver in rest:
            client.ack(deliver)
        for _ in range(10):
            client.ack(await client.expect(DeliverSm))
        await wait_until(lambda: sim.stats.receipts_acked == 20)
        await client.close()

    run(with_sim(body, deliver_window=5))


def test_pipelined_submits_with_receipts() -> None:
    count = 1000

    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        first = client.seq + 1
        client.writer.write(
            b"".join(
                encode(
                    SubmitSm(
                        sequence_number=client.next_seq(),
                        destination_addr=f"614{i:07d}7",
                        registered_delivery=1,
                        short_message=b"pipelined",
                    )
                )
                for i in range(count)
            )
        )
        ids: dict[int, str] = {}
        receipts: set[str] = set()
        while len(ids) < count or len(receipts) < count:
            pdu = await client.read()
            if isinstance(pdu, SubmitSmResp):
                assert pdu.command_status == Status.ESME_ROK
                ids[pdu.sequence_number] = pdu.message_id
            else:
                assert isinstance(pdu, DeliverSm)
                receipts.add(parse_receipt(pdu).message_id)  # type: ignore[union-attr]
                client.ack(pdu)
        assert sorted(ids) == list(range(first, first + count))
        assert len(set(ids.values())) == count
        assert receipts == set(ids.values())
        await wait_until(lambda: sim.stats.receipts_acked == count)
        await client.close()

    run(with_sim(body))


def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    count = 5000

    async def body(sim: SmscSimulator) -> float:
        client = await RawClient.connect(sim.port)
        await client.bind(CommandId.BIND_TRANSMITTER)
        data = b"".join(
            encode(
                SubmitSm(
                    sequence_number=i + 100,
                    source_addr="RoxGate",
                    source_addr_ton=5,
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr=f"614{i:07d}7",
                    short_message=b"x" * 100,
                )
            )
            for i in range(count)
        )
        buffer = bytearray()
        answered = 0
        started = time.perf_counter()
        client.writer.write(data)
        while answered < count:
            chunk = await asyncio.wait_for(client.reader.read(1 << 20), 10)
            assert chunk, "connection closed"
            buffer += chunk
            for frame in split_frames(buffer):
                cid, status = struct.unpack_from(">II", frame, 4)
                assert (cid, status) == (CommandId.SUBMIT_SM_RESP, 0)
                answered += 1
        elapsed = time.perf_counter() - started
        assert sim.stats.submits_accepted == count
        await client.close()
        return count / elapsed

    rate = run(with_sim(body))
    with capsys.disabled():
        print(f"\nsimulator: {rate:,.0f} submit_sm/s (pipelined, client in the same loop)")
    # ~10k/s is the target on a 2-core box; leave room for a loaded CI machine.
    assert rate > 5000, f"{rate:.0f} submit_sm/s"


def test_runs_on_uvloop() -> None:
    """roxgate serves on uvloop, whose transports are not asyncio.Transport."""
    uvloop = pytest.importorskip("uvloop")

    async def body(sim: SmscSimulator) -> None:
        client = await RawClient.connect(sim.port)
        await client.bind()
        seq = await client.submit("61400000010")
        message_id = (await client.submit_resp(seq)).message_id
        deliver = await client.expect(DeliverSm)
        assert parse_receipt(deliver).message_id == message_id  # type: ignore[union-attr]
        client.ack(deliver)
        mo = asyncio.create_task(sim.send_mo("+61400000010", "61411000000", "hi"))
        client.ack(await client.expect(DeliverSm))
        await asyncio.wait_for(mo, 2)
        await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(with_sim(body), 10))


# ---------------------------------------------------------------------------
# mobile-originated
# ---------------------------------------------------------------------------


def test_mo_delivery_gsm_and_ucs2() -> None:
    async def body(sim: SmscSimulator) -> None:
        # sent before anyone is bound: waits for the receiver
        early = asyncio.create_task(sim.send_mo("+61400000005", "61411000000", "STOP"))
        await asyncio.sleep(0.05)
        assert not early.done()
        client = await RawClient.connect(sim.port)
        await client.bind(CommandId.BIND_RECEIVER, system_id="mo")
        deliver = await client.expect(DeliverSm)
        assert deliver.esm_class == 0
        assert deliver.data_coding == 0
        assert (deliver.source_addr_ton, deliver.source_addr) == (1, "61400000005")
        assert deliver.destination_addr == "61411000000"
        assert deliver.short_message == encode_gsm7("STOP")
        assert not early.done(), "send_mo returns only once acknowledged"
        client.ack(deliver)
        await asyncio.wait_for(early, 2)

        text = "Привет 👋 {ok}"
        task = asyncio.create_task(sim.send_mo("+61400000006", "61411000000", text))
        deliver = await client.expect(DeliverSm)
        assert deliver.data_coding == 8
        assert deliver.short_message.decode("utf-16-be") == text
        client.ack(deliver, Status.ESME_RX_T_APPN)  # refused once: sent again
        again = await client.expect(DeliverSm)
        assert again.short_message == deliver.short_message
        assert not task.done()
        client.ack(again)
        await asyncio.wait_for(task, 2)
        assert sim.stats.mo_acked == 2 and sim.stats.mo_sent == 3

        long_text = "Ж" * 200  # 400 octets in UCS-2: message_payload
        task = asyncio.create_task(sim.send_mo("+61400000007", "61411000000", long_text))
        deliver = await client.expect(DeliverSm)
        assert deliver.short_message == b""
        assert deliver.tlvs[Tlv.MESSAGE_PAYLOAD].decode("utf-16-be") == long_text
        client.ack(deliver)
        await asyncio.wait_for(task, 2)
        await client.close()

    run(with_sim(body, retry_delay=0.05))


# ---------------------------------------------------------------------------
# robustness
# ---------------------------------------------------------------------------


def test_garbage_gets_nack_or_disconnect_and_server_keeps_serving() -> None:
    async def body(sim: SmscSimulator) -> None:
        # Text instead of SMPP: "GET " is a command_length of 1.19e9: nack, then close.
        client = await RawClient.connect(sim.port)
        client.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        nack = await client.expect(GenericNack)
        assert nack.command_status == Status.ESME_RINVCMDLEN
        assert await client.closed()

        # command_length above the limit, with a readable header
        client = await RawClient.connect(sim.port)
        client.writer.write(struct.pack(">IIII", 1_000_000, CommandId.SUBMIT_SM, 0, 7))
        nack = await client.expect(GenericNack)
        assert (nack.command_status, nack.sequence_number) == (Status.ESME_RINVCMDLEN, 7)
        assert await client.closed()

        # command_length below the header size
        client = await RawClient.connect(sim.port)
        client.writer.write(struct.pack(">IIII", 8, CommandId.ENQUIRE_LINK, 0, 1))
        assert (await client.expect(GenericNack)).command_status == Status.ESME_RINVCMDLEN
        assert await client.closed()

        # Decodable frames with bad content keep the session: unknown command id,
        # truncated body, malformed submit_sm; each answered, then it still works.
        client = await RawClient.connect(sim.port)
        await client.bind()
        client.writer.write(struct.pack(">IIII", 16, 0x00000077, 0, 50))
        nack = await client.expect(GenericNack)
        assert (nack.command_status, nack.sequence_number) == (Status.ESME_RINVCMDID, 50)
        client.writer.write(struct.pack(">IIII", 20, CommandId.SUBMIT_SM, 0, 51) + b"ab\0\0")
        nack = await client.expect(GenericNack)  # body cut short: a length error
        assert (nack.command_status, nack.sequence_number) == (Status.ESME_RINVCMDLEN, 51)
        bad_service_type = b"TOOLONG\0" + bytes(40)
        client.writer.write(
            struct.pack(">IIII", 16 + len(bad_service_type), CommandId.SUBMIT_SM, 0, 53)
            + bad_service_type
        )
        resp = await client.expect(SubmitSmResp)
        assert (resp.command_status, resp.sequence_number) == (Status.ESME_RINVSERTYP, 53)
        client.writer.write(struct.pack(">IIII", 17, CommandId.ENQUIRE_LINK, 0, 52) + b"!")
        nack_or_resp = await client.read()
        assert nack_or_resp.sequence_number == 52 and nack_or_resp.command_status != 0
        client.send(DeliverSm(destination_addr="x"))  # not something an ESME sends
        assert (await client.expect(GenericNack)).command_status == Status.ESME_RINVCMDID
        seq = await client.submit("61400000008", registered=0)
        assert (await client.submit_resp(seq)).command_status == Status.ESME_ROK
        await client.close()

        # Truncated PDU, then the client goes away.
        client = await RawClient.connect(sim.port)
        client.writer.write(struct.pack(">IIII", 100, CommandId.SUBMIT_SM, 0, 1)[:10])
        await client.close()

        # A connection that never binds is closed after bind_timeout.
        idle = await RawClient.connect(sim.port)
        assert await idle.closed(within=2)

        # A flood of random bytes in one go.
        client = await RawClient.connect(sim.port)
        client.writer.write(bytes(range(256)) * 64)
        assert await client.closed()

        assert sim.stats.protocol_errors >= 6
        fresh = await RawClient.connect(sim.port)
        await fresh.bind()
        seq = await fresh.submit("61400000009")
        assert (await fresh.submit_resp(seq)).command_status == Status.ESME_ROK
        assert parse_receipt(await fresh.expect(DeliverSm)) is not None
        await fresh.close()

    run(with_sim(body, bind_timeout=0.3))


def test_client_that_does_not_read_is_paused_not_buffered() -> None:
    """A client that writes without reading: once its output backs up the simulator
    stops reading, so its memory stays bounded; the server still serves others."""

    async def body(sim: SmscSimulator) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", sim.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = RawClient(reader, writer)
        await client.bind()
        (session,) = sim._sessions
        chunk = b"".join(encode(EnquireLink(sequence_number=i + 10)) for i in range(10_000))
        for _ in range(100):  # 160 KB of enquire_link each, as many responses
            client.writer.write(chunk)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.writer.drain(), 0.05)
            if session.write_paused:
                break
        assert session.write_paused, "the simulator kept reading although nobody read"
        assert session.transport is not None
        assert session.transport.get_write_buffer_size() < 1 << 20
        assert session.reader.buffered < 64 * 1024
        other = await RawClient.connect(sim.port)
        await other.bind(system_id="other")
        seq = other.send(EnquireLink())
        assert (await other.expect(EnquireLinkResp)).sequence_number == seq
        await other.close()
        client.writer.transport.abort()

    run(with_sim(body), timeout=15)


# ---------------------------------------------------------------------------
# the node-smpp peer (tests/peers)
# ---------------------------------------------------------------------------

needs_node = pytest.mark.skipif(not node_available(), reason="node is not installed")


async def peer_client(port: int, **bind: Any) -> RawClient:
    client = await RawClient.connect(port)
    resp = await client.bind(**bind)
    assert resp.command_status == Status.ESME_ROK, resp
    return client


@needs_node
def test_node_peer_normal_records_submit_and_sends_receipt() -> None:
    with NodeSmsc("normal", receipt_delay_ms=50) as smsc:

        async def body() -> None:
            client = await peer_client(smsc.port)
            seq = client.send(
                SubmitSm(
                    source_addr_ton=5,
                    source_addr="RoxGate",
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr="61400000001",
                    registered_delivery=1,
                    data_coding=8,
                    short_message="Héllo".encode("utf-16-be"),
                    tlvs={Tlv.USER_MESSAGE_REFERENCE: b"\x00\x2a"},
                )
            )
            resp = await client.submit_resp(seq)
            assert resp.command_status == Status.ESME_ROK and resp.message_id
            deliver = await client.expect(DeliverSm)
            receipt = parse_receipt(deliver)
            assert receipt is not None
            assert (receipt.message_id, receipt.state) == (resp.message_id, "DELIVRD")
            client.ack(deliver)
            (sent,) = await asyncio.to_thread(smsc.wait_event, "RECEIPT_RESP")
            assert sent == {"message_id": resp.message_id, "command_status": 0}
            await client.close()
            (record,) = smsc.wait_submits(1)
            assert record["sequence"] == seq
            assert record["system_id"] == "rox"
            assert (record["source_addr"], record["source_addr_ton"]) == ("RoxGate", 5)
            assert record["source_addr_npi"] == 0
            assert record["destination_addr"] == "61400000001"
            assert (record["dest_addr_ton"], record["dest_addr_npi"]) == (1, 1)
            assert (record["data_coding"], record["esm_class"]) == (8, 0)
            assert record["registered_delivery"] == 1
            assert bytes.fromhex(record["short_message"]) == "Héllo".encode("utf-16-be")
            assert record["tlvs"] == {"0x0204": "002a"}
            assert record["message_id"] == resp.message_id

        run(body())


@needs_node
def test_node_peer_permanent_and_throttle_modes() -> None:
    async def statuses(port: int, numbers: list[str]) -> list[int]:
        client = await peer_client(port, kind=CommandId.BIND_TRANSMITTER)
        out = []
        for number in numbers:
            seq = await client.submit(number, registered=0)
            out.append((await client.submit_resp(seq)).command_status)
        await client.close()
        return out

    with NodeSmsc("permanent") as smsc:
        assert run(statuses(smsc.port, ["61400000001"])) == [Status.ESME_RINVDSTADR]
    with NodeSmsc("throttle", throttle=2) as smsc:
        got = run(statuses(smsc.port, ["61400000001"] * 3 + ["61400000002"]))
        throttled = Status.ESME_RTHROTTLED
        assert got == [throttled, throttled, Status.ESME_ROK, throttled]
        assert [r["status"] for r in smsc.wait_submits(4)] == got


@needs_node
def test_node_peer_slow_and_drop_modes() -> None:
    with NodeSmsc("slow", slow_ms=300) as smsc:

        async def slow() -> float:
            client = await peer_client(smsc.port)
            started = time.monotonic()
            seq = await client.submit("61400000001", registered=0)
            await client.submit_resp(seq)
            await client.close()
            return time.monotonic() - started

        assert run(slow()) >= 0.25

    with NodeSmsc("drop", drop_after=1) as smsc:

        async def drop() -> None:
            client = await peer_client(smsc.port)
            seq = await client.submit("61400000001", registered=0)
            assert (await client.submit_resp(seq)).command_status == Status.ESME_ROK
            await client.submit("61400000002", registered=0)
            assert await client.closed(), "the second submit kills the connection"
            # dropped once only: a new connection works
            again = await peer_client(smsc.port)
            seq = await again.submit("61400000003", registered=0)
            assert (await again.submit_resp(seq)).command_status == Status.ESME_ROK
            await again.close()

        run(drop())
        assert len(smsc.wait_event("DROP")) == 1
        assert [r["destination_addr"] for r in smsc.wait_submits(3)][1] == "61400000002"


@needs_node
def test_node_peer_credentials_and_mo() -> None:
    with NodeSmsc("normal", system_id="rox", password="secret") as smsc:

        async def body() -> None:
            client = await RawClient.connect(smsc.port)
            client.send(Bind(system_id="rox", password="nope"))
            assert (await client.expect(BindResp)).command_status == Status.ESME_RINVPASWD
            await client.close()
            client = await peer_client(smsc.port, system_id="rox", password="secret")
            smsc.send_mo("+61400000009", "61411000000", "STOP")
            deliver = await client.expect(DeliverSm)
            assert (deliver.esm_class, deliver.data_coding) == (0, 0)
            assert deliver.source_addr == "61400000009"
            assert deliver.short_message == b"STOP"
            client.ack(deliver)
            (resp,) = await asyncio.to_thread(smsc.wait_event, "MO_RESP")
            assert resp == {"command_status": 0}
            await client.close()

        run(body())
