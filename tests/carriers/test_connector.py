"""The connector's receipt handling against a real database through the real writer."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from roxgate.carriers.connector import SmppCarrier
from roxgate.carriers.smpp.pdu import ESM_CLASS_DELIVERY_RECEIPT, DeliverSm, Status
from roxgate.carriers.smpp.url import parse_carrier_url
from roxgate.store.schema import unmatched_receipts
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
