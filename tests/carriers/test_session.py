"""Tests for roxgate.carriers.smpp.session (the ESME session), .url (carrier URLs) and
build_submits. Sessions talk real TCP on 127.0.0.1 to tests/carriers/smsc_stub.py;
every test runs under a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from roxgate.carriers.smpp.pdu import (
    ESM_CLASS_UDHI,
    CommandId,
    DataCoding,
    DeliverSm,
    DeliverSmResp,
    Status,
    SubmitSm,
    Tlv,
    Unbind,
    UnbindResp,
    classify_submit_error,
    decode,
    encode,
    get_int_tlv,
)
from roxgate.carriers.smpp.session import (
    MAX_SEQUENCE,
    BindFailed,
    ConnectFailed,
    LinkLost,
    NotBound,
    OutcomeUnknown,
    ResponseTimeout,
    SessionClosed,
    SessionState,
    SmppSession,
    build_submits,
    choose_source,
    sessions_for,
    submits_for,
)
from roxgate.carriers.smpp.url import CarrierConfig, ConcatMode, parse_carrier_url
from roxgate.sms.text import GSM_BASIC_CHARS, GSM_EXTENSION_CHARS, encode_gsm7, measure
from tests.carriers.smsc_stub import SmscStub, deliver_receipt

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# Fast timings so failures and reconnects happen within the test budget.
FAST = {
    "response_timeout": "1",
    "reconnect_min": "0.05",
    "reconnect_max": "0.2",
    "enquire_link": "30",
}


def config(port: int, scheme: str = "smpp", **options: str) -> CarrierConfig:
    query = "&".join(f"{k}={v}" for k, v in {**FAST, **options}.items())
    return parse_carrier_url(f"{scheme}://esme:secret@127.0.0.1:{port}?{query}")


async def accept_all(pdu: DeliverSm) -> int:
    return Status.ESME_ROK


@contextlib.asynccontextmanager
async def bound_session(
    stub: SmscStub, handler: Any = accept_all, **options: Any
) -> AsyncIterator[SmppSession]:
    kwargs = {k: options.pop(k) for k in ("throttle_pause", "deliver_concurrency") if k in options}
    session = SmppSession(config(stub.port, **options), handler, **kwargs)
    await session.start()
    try:
        yield session
    finally:
        await session.close()


def state_of(session: SmppSession) -> SessionState:
    return session.state  # read afresh (no narrowing from an earlier assert)


def message(n: int = 0) -> SubmitSm:
    return build_submits(f"hello {n}", "+61400000000", "ROXGATE")[0]


# ---------------------------------------------------------------------------
# Binding, submitting, closing
# ---------------------------------------------------------------------------


def test_bind_submit_and_close() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            session = SmppSession(config(stub.port), accept_all)
            await session.start()
            assert session.state == SessionState.BOUND and session.bound.is_set()
            bind = stub.binds[0]
            assert bind.command_id == CommandId.BIND_TRANSCEIVER
            assert (bind.system_id, bind.password, bind.interface_version) == (
                "esme",
                "secret",
                0x34,
            )
            sock = session._link._writer.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

            resp = await session.submit(message())
            assert resp.command_status == Status.ESME_ROK
            assert resp.message_id == "00000001"
            assert stub.submits[0].destination_addr == "61400000000"
            assert resp.sequence_number == stub.submits[0].sequence_number
            assert session.stats.submits == 1
            assert session.stats.responses == {Status.ESME_ROK: 1}
            assert session.window_in_use == 0

            await session.close()
            assert state_of(session) == SessionState.CLOSED and not session.bound.is_set()
            assert stub.unbinds == 1
            with pytest.raises(SessionClosed):
                await session.submit(message())
            await session.close()  # idempotent

    run(body())


def test_close_lets_outstanding_submits_finish() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            session = SmppSession(config(stub.port), accept_all)
            await session.start()
            stub.submit_delay = 0.2
            pending = asyncio.ensure_future(session.submit(message()))
            await stub.wait_until(lambda: len(stub.submits) == 1)
            await session.close()
            assert (await pending).command_status == Status.ESME_ROK
            assert stub.unbinds == 1

    run(body())


def test_close_during_backoff_is_prompt() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            session = SmppSession(
                config(stub.port, reconnect_min="5", reconnect_max="5"), accept_all
            )
            await session.start()
            await stub.stop()  # the SMSC goes away: the session backs off for 5 s
            await stub.wait_until(lambda: session.state == SessionState.BACKOFF)
            waiting = asyncio.ensure_future(session.submit(message()))
            started = time.monotonic()
            await session.close()
            assert time.monotonic() - started < 1
            with pytest.raises(SessionClosed):
                await waiting

    run(body())


def test_bind_refused_raises_then_retries() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            stub.refuse_bind = Status.ESME_RINVPASWD
            session = SmppSession(config(stub.port), accept_all)
            with pytest.raises(BindFailed) as caught:
                await session.start()
            assert caught.value.status == Status.ESME_RINVPASWD
            assert "secret" not in str(caught.value)
            assert session.state in (SessionState.BACKOFF, SessionState.CONNECTING)
            # The session keeps trying: once the SMSC accepts, it is bound.
            stub.refuse_bind = None
            assert await session.wait_bound(3)
            assert session.stats.bind_failures >= 1
            assert (await session.submit(message())).command_status == Status.ESME_ROK
            await session.close()

    run(body())


def test_connect_refused_is_connect_failed() -> None:
    async def body() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # nothing listens once closed
        session = SmppSession(config(port), accept_all)
        with pytest.raises(ConnectFailed) as caught:
            await session.start()
        assert not isinstance(caught.value, BindFailed)
        assert isinstance(caught.value.__cause__, OSError)
        # Not bound: a submit gives up after response_timeout without writing.
        started = time.monotonic()
        with pytest.raises(NotBound):
            await session.submit(message())
        assert 0.8 < time.monotonic() - started < 3
        await session.close()
        assert session.state == SessionState.CLOSED

    run(body())


def test_sequence_numbers_wrap() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            session._sequence = MAX_SEQUENCE
            await session.submit(message(1))
            await session.submit(message(2))
            assert [p.sequence_number for p in stub.submits] == [MAX_SEQUENCE, 1]

    run(body())


def test_transmitter_receiver_pair() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            sessions = sessions_for(config(stub.port, bind="tx+rx"), accept_all)
            assert [s.mode for s in sessions] == ["tx", "rx"]
            for s in sessions:
                await s.start()
            kinds = sorted(b.command_id for b in stub.binds)
            assert kinds == [CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER]
            assert (await sessions[0].submit(message())).command_status == Status.ESME_ROK
            with pytest.raises(RuntimeError):
                await sessions[1].submit(message())
            for s in sessions:
                await s.close()

    run(body())


# ---------------------------------------------------------------------------
# Window and rate
# ---------------------------------------------------------------------------


def test_window_is_never_exceeded() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub, window="5") as session:
            stub.submit_delay = 0.02
            seen: list[int] = []

            async def one(n: int) -> int:
                resp = await session.submit(message(n))
                seen.append(session.window_in_use)
                return resp.command_status

            statuses = await asyncio.gather(*(one(n) for n in range(60)))
            assert statuses == [Status.ESME_ROK] * 60
            assert stub.max_outstanding == 5  # reached, never exceeded
            assert max(seen) <= 5
            assert session.window_in_use == 0

    run(body())


def test_tps_limit_is_smooth() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub, tps="50", window="100") as session:
            started = time.monotonic()
            await asyncio.gather(*(session.submit(message(n)) for n in range(40)))
            elapsed = time.monotonic() - started
            times = stub.submit_times
            # 40 submits at 50/s: 39 gaps of 20 ms, so at least ~0.78 s.
            assert 0.7 < elapsed < 3.0, elapsed
            # Smooth, not a burst per second: no 200 ms span holds more than ~10.
            densest = max(sum(1 for t in times if t0 <= t < t0 + 0.2) for t0 in times)
            assert densest <= 12, densest

    run(body())


def test_throttled_answers_pause_the_session() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub, throttle_pause=0.3) as session:
            stub.throttle = 2
            first = await session.submit(message(1))
            second = await session.submit(message(2))
            after_throttle = time.monotonic()
            third = await session.submit(message(3))
            waited = time.monotonic() - after_throttle
            assert [r.command_status for r in (first, second, third)] == [
                Status.ESME_RTHROTTLED,
                Status.ESME_RTHROTTLED,
                Status.ESME_ROK,
            ]
            assert classify_submit_error(first.command_status) == "throttled"
            assert session.stats.throttled == 2
            assert session.stats.responses[Status.ESME_RTHROTTLED] == 2
            assert 0.2 < waited < 2, waited

    run(body())


def test_response_timeout_frees_the_slot() -> None:
    async def body() -> None:
        async with (
            SmscStub() as stub,
            bound_session(stub, response_timeout="0.3", window="1") as session,
        ):
            stub.answer_submits = False
            with pytest.raises(ResponseTimeout):
                await session.submit(message(1))
            assert isinstance(ResponseTimeout(), OutcomeUnknown)
            assert session.stats.timeouts == 1 and session.window_in_use == 0
            stub.answer_submits = True
            assert (await session.submit(message(2))).command_status == Status.ESME_ROK
            assert session.state == SessionState.BOUND

    run(body())


# ---------------------------------------------------------------------------
# Link failures and reconnection
# ---------------------------------------------------------------------------


def test_drop_fails_outstanding_with_link_lost_then_reconnects() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            stub.answer_submits = False
            outstanding = [asyncio.ensure_future(session.submit(message(n))) for n in range(3)]
            await stub.wait_until(lambda: len(stub.submits) == 3)
            stub.drop()
            results = await asyncio.gather(*outstanding, return_exceptions=True)
            assert all(isinstance(r, LinkLost) for r in results), results
            assert session.stats.lost == 3
            stub.answer_submits = True
            resp = await session.submit(message(4))  # waits for the new bind
            assert resp.command_status == Status.ESME_ROK
            assert len(stub.binds) == 2
            assert session.stats.reconnects == 1 and session.stats.link_drops == 1

    run(body())


def test_drop_after_n_submits() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            stub.drop_after = 2
            assert (await session.submit(message(1))).command_status == Status.ESME_ROK
            with pytest.raises(LinkLost):
                await session.submit(message(2))
            stub.drop_after = None
            assert (await session.submit(message(3))).command_status == Status.ESME_ROK
            assert session.stats.reconnects == 1

    run(body())


def test_enquire_link_timeout_resets_the_link() -> None:
    async def body() -> None:
        async with (
            SmscStub() as stub,
            bound_session(stub, enquire_link="0.2", response_timeout="0.3") as session,
        ):
            stub.ignore_enquire = True
            await stub.wait_until(lambda: len(stub.binds) >= 2, within=4)
            assert stub.enquire_links >= 1
            assert session.stats.link_drops >= 1
            stub.ignore_enquire = False
            assert await session.wait_bound(2)
            assert (await session.submit(message())).command_status == Status.ESME_ROK

    run(body())


def test_answered_enquire_link_keeps_the_link() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub, enquire_link="0.1"):
            await stub.wait_until(lambda: stub.enquire_links >= 3, within=3)
            assert len(stub.binds) == 1

    run(body())


def test_broken_framing_resets_the_link() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            stub.send_raw(b"\x00\x00\x00\x05garbage!!")  # command_length 5
            await stub.wait_until(lambda: len(stub.binds) == 2, within=3)
            assert [n.command_status for n in stub.generic_nacks] == [Status.ESME_RINVCMDLEN]
            assert session.stats.garbage == 1
            assert await session.wait_bound(2)
            assert (await session.submit(message())).command_status == Status.ESME_ROK

    run(body())


def test_bad_pdus_are_answered_and_the_link_stays() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            # Unknown command id: generic_nack with its sequence number.
            stub.send_raw(struct.pack(">IIII", 16, 0x00000099, 0, 77))
            # A request we do not serve (submit_sm to an ESME): generic_nack too.
            stub.send_raw(encode(SubmitSm(sequence_number=78, destination_addr="1")))
            # A deliver_sm cut short: its length is wrong, so generic_nack.
            stub.send_raw(struct.pack(">IIII", 18, CommandId.DELIVER_SM, 0, 79) + b"\0\0")
            # A deliver_sm with a bad field: deliver_sm_resp with the field's status.
            body = b"\0\0\0" + b"1" * 30 + b"\0"
            header = struct.pack(">IIII", 16 + len(body), CommandId.DELIVER_SM, 0, 80)
            stub.send_raw(header + body)
            await stub.wait_until(lambda: len(stub.events) == 4)
            assert ("nack", 77, Status.ESME_RINVCMDID) in stub.events
            assert ("nack", 78, Status.ESME_RINVCMDID) in stub.events
            assert ("nack", 79, Status.ESME_RINVCMDLEN) in stub.events
            assert ("resp", 80, Status.ESME_RINVSRCADR) in stub.events
            assert session.stats.garbage == 3 and session.stats.delivers == 0
            assert len(stub.binds) == 1 and session.state == SessionState.BOUND
            assert (await session.submit(message())).command_status == Status.ESME_ROK

    run(body())


def test_peer_unbind_is_answered_then_rebinds() -> None:
    async def body() -> None:
        async with SmscStub() as stub, bound_session(stub) as session:
            answer = await stub.request(Unbind())
            assert isinstance(answer, UnbindResp)
            await stub.wait_until(lambda: len(stub.binds) == 2, within=3)
            assert await session.wait_bound(2)
            assert session.stats.link_drops == 1

    run(body())


# ---------------------------------------------------------------------------
# deliver_sm
# ---------------------------------------------------------------------------


def test_deliver_resp_follows_its_handler() -> None:
    async def body() -> None:
        async with SmscStub() as stub:
            received: list[DeliverSm] = []

            async def handler(pdu: DeliverSm) -> int:
                text = pdu.short_message.decode()
                stub.events.append(("handler-start", pdu.sequence_number))
                await asyncio.sleep(0.3 if "slow" in text else 0.02)
                if "boom" in text:
                    raise RuntimeError("database down")
                received.append(pdu)
                stub.events.append(("handler-done", pdu.sequence_number))
                return Status.ESME_ROK

            async with bound_session(stub, handler) as session:
                pdus = [
                    DeliverSm(source_addr="61411111111", short_message=b"slow"),
                    deliver_receipt("00000001"),
                    DeliverSm(source_addr="61411111111", short_message=b"boom"),
                ]
                answers = await asyncio.gather(*(stub.request(p) for p in pdus))
                assert all(isinstance(a, DeliverSmResp) for a in answers)
                assert [a.command_status for a in answers] == [
                    Status.ESME_ROK,
                    Status.ESME_ROK,
                    Status.ESME_RX_T_APPN,
                ]
                events = stub.events
                slow, receipt, boom = (p.sequence_number for p in pdus)
                for seq in (slow, receipt):
                    assert events.index(("handler-done", seq)) < events.index(
                        ("resp", seq, Status.ESME_ROK)
                    )
                # Concurrent: the slow handler did not hold the others' answers back.
                assert events.index(("resp", receipt, 0)) < events.index(("resp", slow, 0))
                assert events.index(("handler-start", boom)) < events.index(("resp", boom, 0x64))
                assert session.stats.delivers == 3 and session.stats.deliver_errors == 1
                # The session survived the handler's exception.
                assert (await session.submit(message())).command_status == Status.ESME_ROK
                assert len(stub.binds) == 1

    run(body())


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_tls_with_and_without_verification(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)

    async def body() -> None:
        async with SmscStub(tls=server) as stub:
            session = SmppSession(config(stub.port, "smpps", tls_verify="false"), accept_all)
            await session.start()
            assert (await session.submit(message())).command_status == Status.ESME_ROK
            await session.close()
            assert stub.unbinds == 1

            strict = SmppSession(config(stub.port, "smpps"), accept_all)
            with pytest.raises(ConnectFailed) as caught:
                await strict.start()
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
            await strict.close()

    run(body())


# ---------------------------------------------------------------------------
# Throughput (printed, only sanity-checked)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.001])
def test_throughput(delay: float, capsys: pytest.CaptureFixture[str]) -> None:
    count, workers = 4000, 100

    async def body() -> float:
        async with SmscStub() as stub, bound_session(stub, window="50") as session:
            stub.submit_delay = delay
            pdus = [message(n) for n in range(count)]

            async def worker(mine: list[SubmitSm]) -> None:
                for pdu in mine:
                    resp = await session.submit(pdu)
                    assert resp.command_status == Status.ESME_ROK

            started = time.perf_counter()
            await asyncio.gather(*(worker(pdus[i::workers]) for i in range(workers)))
            elapsed = time.perf_counter() - started
            assert len(stub.submits) == count and stub.max_outstanding <= 50
            return count / elapsed

    rate = run(body(), timeout=15)
    with capsys.disabled():
        print(f"\nsession: {rate:,.0f} submit_sm/s (window 50, stub delay {delay * 1000:g} ms)")
    assert rate > 300


# ---------------------------------------------------------------------------
# build_submits
# ---------------------------------------------------------------------------

_GSM_DECODE = {encode_gsm7(c): c for c in GSM_BASIC_CHARS | GSM_EXTENSION_CHARS}


def gsm_decode(septets: bytes) -> str:
    out, i = [], 0
    while i < len(septets):
        width = 2 if septets[i] == 0x1B else 1
        out.append(_GSM_DECODE[septets[i : i + width]])
        i += width
    return "".join(out)


def check_encodable(pdus: list[SubmitSm]) -> None:
    for pdu in pdus:
        assert decode(encode(pdu)) == pdu


def test_single_part_gsm_and_ucs2() -> None:
    [gsm] = build_submits("x" * 160, "+61400000000", "+61400000001")
    assert (gsm.data_coding, gsm.esm_class, len(gsm.short_message)) == (0, 0, 160)
    assert (gsm.dest_addr_ton, gsm.dest_addr_npi, gsm.destination_addr) == (1, 1, "61400000000")
    assert gsm.registered_delivery == 1
    [ucs2] = build_submits("😀 ok", "61400000000", None, registered_delivery=0)
    assert ucs2.data_coding == DataCoding.UCS2 and ucs2.esm_class == 0
    assert ucs2.short_message.decode("utf-16-be") == "😀 ok"
    assert (ucs2.source_addr, ucs2.source_addr_ton, ucs2.source_addr_npi) == ("", 0, 0)
    assert ucs2.registered_delivery == 0
    [forced] = build_submits("plain", "61400000000", "ROXGATE", coding=8)
    assert forced.data_coding == 8 and forced.short_message == "plain".encode("utf-16-be")
    check_encodable([gsm, ucs2, forced])


GSM_LONG = ("Price: 10€ [a] {b} ~c^ | \\ ok. " * 12).strip()


def test_udh8_gsm_extension_chars_reassemble() -> None:
    pdus = build_submits(GSM_LONG, "+61400000000", "ROXGATE", ref=0x1234)
    assert len(pdus) == measure(GSM_LONG).parts > 1
    bodies = []
    for number, pdu in enumerate(pdus, start=1):
        assert pdu.esm_class == ESM_CLASS_UDHI and pdu.data_coding == 0
        assert pdu.registered_delivery == 1  # every part asks for its receipt
        udh, body = pdu.short_message[:6], pdu.short_message[6:]
        assert udh == bytes((5, 0, 3, 0x34, len(pdus), number))
        assert len(body) <= 153 and body[-1] != 0x1B
        bodies.append(body)
    assert "".join(gsm_decode(b) for b in bodies) == GSM_LONG
    check_encodable(pdus)


def test_extension_char_never_straddles_parts() -> None:
    text = "a" * 152 + "€" + "b" * 10
    udh8 = build_submits(text, "61400000000", "ROXGATE", concat="udh8")
    assert [len(p.short_message) - 6 for p in udh8] == [152, 12]
    udh16 = build_submits(text, "61400000000", "ROXGATE", concat="udh16")
    assert [len(p.short_message) - 7 for p in udh16] == [152, 12]
    text = "a" * 151 + "€" + "b" * 10
    udh16 = build_submits(text, "61400000000", "ROXGATE", concat="udh16")
    assert [len(p.short_message) - 7 for p in udh16] == [151, 12]
    assert "".join(gsm_decode(p.short_message[7:]) for p in udh16) == text


def test_udh16_parts_are_smaller() -> None:
    text = "z" * (153 * 3)  # exactly 3 udh8 parts, 4 udh16 parts
    assert len(build_submits(text, "61400000000", "X", concat="udh8")) == 3
    pdus = build_submits(text, "61400000000", "X", concat="udh16", ref=0x1ABCD)
    assert len(pdus) == 4
    for number, pdu in enumerate(pdus, start=1):
        assert pdu.short_message[:7] == bytes((6, 8, 4, 0xAB, 0xCD, 4, number))
        assert len(pdu.short_message) <= 140 + 19  # 7 + 152 unpacked septets
    assert b"".join(p.short_message[7:] for p in pdus) == text.encode()
    check_encodable(pdus)


def test_ucs2_emoji_parts_keep_surrogate_pairs() -> None:
    text = "Hi 😀 " * 30  # 5 code units per repeat
    cases: list[tuple[ConcatMode, int]] = [("udh8", 67), ("udh16", 66)]
    for concat, room in cases:
        pdus = build_submits(text, "61400000000", "ROXGATE", concat=concat)
        header = 6 if concat == "udh8" else 7
        bodies = [p.short_message[header:] for p in pdus]
        for pdu, part in zip(pdus, bodies, strict=True):
            assert pdu.data_coding == DataCoding.UCS2 and pdu.esm_class == ESM_CLASS_UDHI
            assert len(part) <= 2 * room
            assert not 0xD8 <= part[-2] <= 0xDB  # no part ends in a high surrogate
        assert "".join(b.decode("utf-16-be") for b in bodies) == text
        if concat == "udh8":
            assert len(pdus) == measure(text).parts
        check_encodable(pdus)


def test_sar_and_payload() -> None:
    sar = build_submits(GSM_LONG, "61400000000", "ROXGATE", concat="sar", ref=70000)
    assert len(sar) == measure(GSM_LONG).parts
    for number, pdu in enumerate(sar, start=1):
        assert pdu.esm_class == 0 and len(pdu.short_message) <= 153
        assert get_int_tlv(pdu.tlvs, Tlv.SAR_MSG_REF_NUM) == 70000 % 65536
        assert len(pdu.tlvs[Tlv.SAR_MSG_REF_NUM]) == 2
        assert get_int_tlv(pdu.tlvs, Tlv.SAR_TOTAL_SEGMENTS) == len(sar)
        assert get_int_tlv(pdu.tlvs, Tlv.SAR_SEGMENT_SEQNUM) == number
    assert "".join(gsm_decode(p.short_message) for p in sar) == GSM_LONG
    [payload] = build_submits(GSM_LONG, "61400000000", "ROXGATE", concat="payload")
    assert payload.short_message == b"" and payload.esm_class == 0
    assert payload.tlvs[Tlv.MESSAGE_PAYLOAD] == encode_gsm7(GSM_LONG)
    check_encodable([*sar, payload])


def test_source_ton_npi() -> None:
    assert choose_source("+61400000000") == ("61400000000", 1, 1)
    assert choose_source("61400000000") == ("61400000000", 1, 1)
    assert choose_source("ROXGATE") == ("ROXGATE", 5, 0)
    assert choose_source("1234") == ("1234", 0, 1)
    assert choose_source("+1234") == ("1234", 1, 1)
    assert choose_source("") == ("", 0, 0)
    for bad in ("TWELVE CHARS", "Röxgate", "1" * 21):
        with pytest.raises(ValueError):
            choose_source(bad)
    [pdu] = build_submits("hi", "+61400000000", "1234", source_ton=3, source_npi=0)
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("1234", 3, 0)


def test_build_submits_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        build_submits("", "61400000000", "X")
    with pytest.raises(ValueError):
        build_submits("hi", "0400 000 000", "X")
    with pytest.raises(ValueError):
        build_submits("hi", "61400000000", "X", coding=3)
    with pytest.raises(ValueError):
        build_submits("x" * 153 * 256, "61400000000", "X")


def test_submits_for_uses_the_carrier_options() -> None:
    cfg = parse_carrier_url(
        "smpp://a:b@h?source=%2B61400000001&concat=udh16&registered_delivery=0"
        "&validity=3600&coding=8"
    )
    pdus = submits_for(cfg, "y" * 100, "61400000000", ref=5)
    assert len(pdus) == 2  # UCS-2: 100 units in parts of 66
    assert all(p.short_message[:3] == b"\x06\x08\x04" for p in pdus)
    assert {(p.source_addr, p.registered_delivery, p.data_coding) for p in pdus} == {
        ("61400000001", 0, 8)
    }
    assert pdus[0].validity_period == "000000010000000R"
    [own] = submits_for(cfg, "hi", "61400000000", ref=5, source="ROXGATE")
    assert own.source_addr == "ROXGATE"


# ---------------------------------------------------------------------------
# Carrier URLs
# ---------------------------------------------------------------------------


def test_url_defaults_and_masking() -> None:
    cfg = parse_carrier_url("smpp://sys%40id:p%40ss%3A1@smsc.example.com")
    assert (cfg.host, cfg.port, cfg.tls) == ("smsc.example.com", 2775, False)
    assert (cfg.system_id, cfg.password) == ("sys@id", "p@ss:1")
    assert (cfg.window, cfg.tps, cfg.bind, cfg.concat, cfg.coding) == (10, 0, "trx", "udh8", 0)
    assert (cfg.enquire_link, cfg.response_timeout) == (30, 10)
    assert (cfg.reconnect_min, cfg.reconnect_max) == (1, 60)
    assert (cfg.registered_delivery, cfg.validity, cfg.source) == (1, None, None)
    assert "p@ss" not in repr(cfg) and "password=***" in repr(cfg)
    assert "p@ss" not in cfg.url and cfg.url == "smpp://smsc.example.com:2775"


def test_url_all_options() -> None:
    cfg = parse_carrier_url(
        "smpps://esme:pw@[::1]:3550?source=+61400000000&window=50&tps=12.5"
        "&system_type=VMA&bind=tx+rx&enquire_link=15&response_timeout=4"
        "&reconnect_min=0.5&reconnect_max=30&concat=sar&coding=8"
        "&registered_delivery=0&validity=86400&tls_verify=false&source_ton=5&source_npi=0"
    )
    assert (cfg.host, cfg.port, cfg.tls, cfg.tls_verify) == ("::1", 3550, True, False)
    assert cfg.source == "+61400000000"  # '+' is not a space here
    assert cfg.bind == "tx+rx"
    assert (cfg.window, cfg.tps, cfg.system_type) == (50, 12.5, "VMA")
    assert (cfg.enquire_link, cfg.response_timeout) == (15, 4)
    assert (cfg.reconnect_min, cfg.reconnect_max) == (0.5, 30)
    assert (cfg.concat, cfg.coding, cfg.registered_delivery, cfg.validity) == ("sar", 8, 0, 86400)
    assert (cfg.source_ton, cfg.source_npi) == (5, 0)
    assert parse_carrier_url("smpps://a:b@h").tls_verify is True


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://a:b@h", "scheme"),
        ("smpp://h:2775", "SYSTEM_ID:PASSWORD"),
        ("smpp://a@h", "SYSTEM_ID:PASSWORD"),
        ("smpp://a:b@:2775", "host"),
        ("smpp://a:b@h:99999", "port"),
        ("smpp://a:b@h/path", "path"),
        ("smpp://a:b@h?window=0", "window"),
        ("smpp://a:b@h?window=1001", "window"),
        ("smpp://a:b@h?window=ten", "window"),
        ("smpp://a:b@h?tps=-1", "tps"),
        ("smpp://a:b@h?tps=inf", "tps"),
        ("smpp://a:b@h?bind=rx", "bind"),
        ("smpp://a:b@h?concat=udh", "concat"),
        ("smpp://a:b@h?coding=3", "coding"),
        ("smpp://a:b@h?enquire_link=0", "enquire_link"),
        ("smpp://a:b@h?response_timeout=x", "response_timeout"),
        ("smpp://a:b@h?reconnect_min=5&reconnect_max=1", "reconnect_max"),
        ("smpp://a:b@h?registered_delivery=256", "registered_delivery"),
        ("smpp://a:b@h?validity=0", "validity"),
        ("smpp://a:b@h?tls_verify=false", "tls_verify"),
        ("smpps://a:b@h?tls_verify=maybe", "tls_verify"),
        ("smpp://a:b@h?source_ton=300", "source_ton"),
        ("smpp://a:b@h?source=", "source"),
        ("smpp://a:b@h?source=FAR%20TOO%20LONG", "source"),
        ("smpp://a:b@h?windw=5", "windw"),
        ("smpp://a:b@h?window=5&window=6", "twice"),
        ("smpp://a:b@h?window", "no value"),
        ("smpp://a:b@h?system_type=THIRTEEN_CHAR", "system_type"),
        ("smpp://sixteen_chars_id:b@h", "system id"),
        ("smpp://a:toolongpw@h", "password"),
    ],
)
def test_url_errors(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as caught:
        parse_carrier_url(url)
    assert "toolongpw" not in str(caught.value)
