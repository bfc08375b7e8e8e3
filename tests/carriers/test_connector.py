"""The connector's receipt handling against a real database through the real writer."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from roxgate.carriers.connector import SmppCarrier
from roxgate.carriers.smpp.pdu import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_UDHI,
    DeliverSm,
    Status,
    Tlv,
    udh_concat,
)
from roxgate.carriers.smpp.url import parse_carrier_url
from roxgate.report import replies
from roxgate.sms.text import encode_gsm7
from roxgate.store.schema import inbound, inbound_parts, unmatched_receipts
from roxgate.store.writer import GroupCommitWriter


def receipt(carrier_id: str, state: str = "DELIVRD") -> DeliverSm:
    text = f"id:{carrier_id} sub:001 dlvrd:001 submit date:2611250000 done date:2611250000 "
    return DeliverSm(
        source_addr="61407555001",
        destination_addr="Clinic",
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        short_message=(text + f"stat:{state} err:000 text:hi").encode("ascii"),
    )


def kept(engine: Any) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(unmatched_receipts.c.carrier_id, unmatched_receipts.c.state))
        return [tuple(r) for r in rows]


def test_unknown_receipt_is_redelivered_for_a_while_then_kept(engine_factory: Any) -> None:
    _, engine = engine_factory("connector")
    writer = GroupCommitWriter(engine)
    writer.start()
    config = parse_carrier_url("smpp://u:p@127.0.0.1:1")

    async def scenario() -> tuple[int, int, int]:
        carrier = SmppCarrier(config, writer.do, unmatched_hold_seconds=0.3)
        first = await carrier.on_deliver(receipt("ab12"))
        again = await carrier.on_deliver(receipt("ab12"))
        await asyncio.sleep(0.35)
        last = await carrier.on_deliver(receipt("ab12"))
        return first, again, last

    try:
        first, again, last = asyncio.run(scenario())
    finally:
        writer.stop()
    # It may have overtaken our record of the submit: the SMSC is asked to
    # deliver it again, and nothing is stored yet.
    assert first == again == Status.ESME_RX_T_APPN
    assert last == Status.ESME_ROK  # then kept for the operator and acknowledged
    assert kept(engine) == [("ab12", "DELIVRD")]


def mo_part(data: bytes, *, udh: bytes = b"", coding: int = 0, tlvs: Any = None) -> DeliverSm:
    return DeliverSm(
        source_addr_ton=1,
        source_addr="61407555001",
        destination_addr="Clinic",
        esm_class=ESM_CLASS_UDHI if udh else 0,
        data_coding=coding,
        short_message=udh + data,
        tlvs=tlvs or {},
    )


def stored_inbound(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return [r.text for r in conn.execute(select(inbound.c.text).order_by(inbound.c.id))]


def test_long_inbound_sms_is_joined_before_it_is_stored(engine_factory: Any) -> None:
    """Parts out of order, one delivered twice, a surrogate pair split across parts."""
    _, engine = engine_factory("connector-mo")
    writer = GroupCommitWriter(engine)
    writer.start()
    config = parse_carrier_url("smpp://u:p@127.0.0.1:1")
    text = "Running late 😀 sorry"
    data = text.encode("utf-16-be")
    cut = data.index("😀".encode("utf-16-be")) + 2  # between the two halves of the emoji
    first, second = data[:cut], data[cut:]
    gsm_long = "A long reply with {braces} " * 3

    async def scenario() -> list[int]:
        carrier = SmppCarrier(config, writer.do)
        answers = [
            await carrier.on_deliver(mo_part(second, udh=udh_concat(7, 2, 2), coding=8)),
            await carrier.on_deliver(mo_part(second, udh=udh_concat(7, 2, 2), coding=8)),
        ]
        waiting = stored_inbound(engine)
        answers.append(await carrier.on_deliver(mo_part(first, udh=udh_concat(7, 2, 1), coding=8)))
        # 16-bit references and SAR TLVs, GSM text with extension characters
        encoded = encode_gsm7(gsm_long)
        half = len(encoded) // 2
        answers.append(
            await carrier.on_deliver(mo_part(encoded[:half], udh=udh_concat(300, 2, 1, ref16=True)))
        )
        answers.append(
            await carrier.on_deliver(mo_part(encoded[half:], udh=udh_concat(300, 2, 2, ref16=True)))
        )
        sar = {Tlv.SAR_MSG_REF_NUM: b"\x00\x09", Tlv.SAR_TOTAL_SEGMENTS: b"\x02"}
        for seq, chunk in ((1, b"Hello "), (2, b"world")):
            tlvs = {**sar, Tlv.SAR_SEGMENT_SEQNUM: bytes((seq,))}
            answers.append(await carrier.on_deliver(mo_part(chunk, tlvs=tlvs)))
        assert waiting == []  # nothing forwarded while a part is missing
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        writer.stop()
    assert answers == [Status.ESME_ROK] * 7
    assert stored_inbound(engine) == [text, gsm_long, "Hello world"]
    with engine.connect() as conn:
        assert conn.execute(select(inbound_parts)).all() == []


def test_long_inbound_sms_missing_a_part_is_given_up_on(engine_factory: Any) -> None:
    _, engine = engine_factory("connector-mo-stale")
    with engine.begin() as conn:
        assert (
            replies.record_inbound_sms(conn, "+61407555001", "x", 0, b"part one", (5, 3, 1)) == []
        )
    with engine.begin() as conn:
        # An hour later the next SMS from anyone flushes what did come.
        results = replies.record_inbound_sms(conn, "+61407555002", "x", 0, b"hi", stale_parts_ms=-1)
    assert [r.action for r in results] == ["unmatched", "unmatched"]
    assert sorted(stored_inbound(engine)) == ["hi", "part one […]"]
