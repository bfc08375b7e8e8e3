"""The payload of a mobile-originated deliver_sm: its text, and its place in a long SMS.

A long reply reaches the ESME as several deliver_sm, each carrying a part and
the concatenation facts either in a user data header (esm_class UDHI, IEI 0
with an 8-bit reference or IEI 8 with a 16-bit one) or in the SAR TLVs. The
header is never part of the text; the parts' octets are joined before they
are decoded, so a character split across parts (a UCS-2 surrogate pair)
survives.
"""

from __future__ import annotations

from dataclasses import dataclass

from roxgate.carriers.smpp.pdu import ESM_CLASS_UDHI, DeliverSm, Tlv, get_int_tlv


@dataclass(frozen=True, slots=True)
class Concat:
    """Part ``seq`` of ``total`` of the long SMS ``ref`` (per originator)."""

    ref: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class InboundPayload:
    coding: int  # data_coding
    data: bytes  # the user data without any header
    concat: Concat | None  # None: the whole message


def _udh_concat(header: bytes) -> Concat | None:
    """The concatenation element of a UDH (without its length octet), if any."""
    i = 0
    while i + 2 <= len(header):
        iei, length = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + length]
        if len(value) < length:
            return None  # truncated header: treat the message as whole
        if iei == 0x00 and length == 3:
            return Concat(value[0], value[1], value[2])
        if iei == 0x08 and length == 4:
            return Concat((value[0] << 8) | value[1], value[2], value[3])
        i += 2 + length
    return None


def _usable(concat: Concat | None) -> Concat | None:
    # A single part, or nonsense numbers, is simply a whole message.
    if concat is None or concat.total < 2 or not 1 <= concat.seq <= concat.total:
        return None
    return concat


def inbound_payload(pdu: DeliverSm) -> InboundPayload:
    data = pdu.short_message or pdu.tlvs.get(Tlv.MESSAGE_PAYLOAD, b"")
    concat: Concat | None = None
    if pdu.esm_class & ESM_CLASS_UDHI and data:
        udhl = data[0]
        concat = _udh_concat(data[1 : 1 + udhl])
        data = data[1 + udhl :]
    else:
        ref = get_int_tlv(pdu.tlvs, Tlv.SAR_MSG_REF_NUM)
        total = get_int_tlv(pdu.tlvs, Tlv.SAR_TOTAL_SEGMENTS)
        seq = get_int_tlv(pdu.tlvs, Tlv.SAR_SEGMENT_SEQNUM)
        if ref is not None and total is not None and seq is not None:
            concat = Concat(ref, total, seq)
    return InboundPayload(pdu.data_coding, data, _usable(concat))
