"""Tests for roxgate.carriers.smpp.receipt (delivery receipts, message id variants)."""

from __future__ import annotations

import struct
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roxgate.carriers.smpp.pdu import (
    DataCoding,
    DataSm,
    DeliverSm,
    Tlv,
    decode,
    encode,
)
from roxgate.carriers.smpp.receipt import (
    FINAL_STATES,
    RECEIPT_STATES,
    Receipt,
    message_id_variants,
    normalize_state,
    parse_any_receipt_text,
    parse_receipt,
    parse_receipt_text,
)

STANDARD = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2401311159 done date:2402010002 "
    "stat:DELIVRD err:000 text:Your code is 1234"
)


def receipt_pdu(text: str = "", esm_class: int = 0x04, **tlvs: bytes) -> DeliverSm:
    return DeliverSm(
        esm_class=esm_class,
        short_message=text.encode("latin-1"),
        tlvs={Tlv[name.upper()]: value for name, value in tlvs.items()},
    )


def test_standard_text_receipt() -> None:
    receipt = parse_receipt(receipt_pdu(STANDARD))
    assert receipt == Receipt(
        message_id="0123456789",
        state="DELIVRD",
        error="000",
        submit_date=datetime(2024, 1, 31, 11, 59),
        done_date=datetime(2024, 2, 1, 0, 2),
        raw_text=STANDARD,
    )
    assert receipt.is_final


def test_receipt_from_the_wire() -> None:
    # A deliver_sm receipt written octet by octet: esm_class 0x04, text in short_message.
    text = (
        b"id:7f3a sub:001 dlvrd:000 submit date:2401010000 done date:2401010100 stat:EXPIRED err:00"
    )
    body = (
        b"\x00"  # service_type
        + b"\x01\x01"
        + b"4915112345678\x00"  # source_addr: the handset
        + b"\x05\x00"
        + b"Rox\x00"  # destination_addr: our sender id
        + b"\x04\x00\x00"  # esm_class receipt, protocol_id, priority
        + b"\x00\x00"  # schedule, validity
        + b"\x00\x00\x00\x00"  # registered_delivery, replace, data_coding, default id
        + bytes([len(text)])
        + text
    )
    data = struct.pack(">IIII", 16 + len(body), 0x00000005, 0, 99) + body
    pdu = decode(data)
    assert isinstance(pdu, DeliverSm)
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert (receipt.message_id, receipt.state, receipt.error) == ("7f3a", "EXPIRED", "00")
    assert receipt.done_date == datetime(2024, 1, 1, 1, 0)


def test_tlv_only_receipt() -> None:
    pdu = receipt_pdu(receipted_message_id=b"ABC123\x00", message_state=b"\x02")
    assert parse_receipt(pdu) == Receipt("ABC123", "DELIVRD", None, None, None, "")


def test_tlv_id_without_nul_terminator() -> None:
    pdu = receipt_pdu(receipted_message_id=b"ABC123", message_state=b"\x05")
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert (receipt.message_id, receipt.state) == ("ABC123", "UNDELIV")


def test_tlvs_win_over_text() -> None:
    pdu = receipt_pdu(
        STANDARD.replace("stat:DELIVRD", "stat:ENROUTE"),
        receipted_message_id=b"0x-from-tlv\x00",
        message_state=b"\x08",
    )
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert receipt.message_id == "0x-from-tlv"
    assert receipt.state == "REJECTD"
    # What the TLVs do not carry still comes from the text.
    assert receipt.error == "000"
    assert receipt.submit_date == datetime(2024, 1, 31, 11, 59)


@pytest.mark.parametrize(("number", "state"), [(i + 1, s) for i, s in enumerate(RECEIPT_STATES)])
def test_message_state_tlv_values(number: int, state: str) -> None:
    pdu = receipt_pdu(receipted_message_id=b"1\x00", message_state=bytes([number]))
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert receipt.state == state


def test_state_numbers_follow_smpp() -> None:
    assert RECEIPT_STATES == (
        "ENROUTE",  # 1
        "DELIVRD",  # 2
        "EXPIRED",  # 3
        "DELETED",  # 4
        "UNDELIV",  # 5
        "ACCEPTD",  # 6
        "UNKNOWN",  # 7
        "REJECTD",  # 8
    )
    final = {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD"}
    assert final == FINAL_STATES


@pytest.mark.parametrize(
    "bad_state",
    [b"", b"\x09", b"\x00", b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"],
    ids=["empty", "9", "0", "too long"],
)
def test_unusable_message_state_tlv_falls_back_to_text(bad_state: bytes) -> None:
    receipt = parse_receipt(receipt_pdu(STANDARD, message_state=bad_state))
    assert receipt is not None
    assert receipt.state == "DELIVRD"
    receipt = parse_receipt(receipt_pdu(receipted_message_id=b"9\x00", message_state=bad_state))
    assert receipt is not None
    assert receipt.state == "UNKNOWN"


# (text, id, state, err, submit_date)
VARIANTS = [
    (
        "upper-case keys",
        "ID:123 SUB:001 DLVRD:001 SUBMIT DATE:2401011200 DONE DATE:2401011201 "
        "STAT:DELIVRD ERR:000 TEXT:Hello",
        "123",
        "DELIVRD",
        "000",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "lower-case everything",
        "id:123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        "stat:delivrd err:000 text:hello",
        "123",
        "DELIVRD",
        "000",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "title case keys",
        "Id:123 Sub:001 Dlvrd:001 Submit Date:2401011200 Done Date:2401011201 "
        "Stat:UNDELIV Err:001 Text:x",
        "123",
        "UNDELIV",
        "001",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "missing sub and dlvrd",
        "id:123 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000",
        "123",
        "DELIVRD",
        "000",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "stat spelt out",
        "id:123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVERED err:0",
        "123",
        "DELIVRD",
        "0",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "stat UNDELIVERABLE",
        "id:123 stat:UNDELIVERABLE err:034",
        "123",
        "UNDELIV",
        "034",
        None,
    ),
    (
        "extra text after, quoting receipt keys",
        "id:123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        "stat:DELIVRD err:000 text:id:999 stat:UNDELIV err:111 and more",
        "123",
        "DELIVRD",
        "000",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "extra and missing spaces",
        "id: 123   sub:001 dlvrd:001 submit date: 2401011200 done date:2401011201stat : "
        "DELIVRD  err :000",
        "123",
        "DELIVRD",
        "000",
        datetime(2024, 1, 1, 12, 0),
    ),
    (
        "underscored keys, dates with seconds",
        "id:123 submit_date:240101120030 done_date:240101120130 stat:EXPIRED err:000",
        "123",
        "EXPIRED",
        "000",
        datetime(2024, 1, 1, 12, 0, 30),
    ),
    (
        "comma separated, status/error spelt out",
        "id:123,status:REJECTED,error:0x0B",
        "123",
        "REJECTD",
        "0x0B",
        None,
    ),
    (
        "vendor fields in between",
        "id:123 smsc:ACME-1 sub:001 dlvrd:001 stat:ACCEPTED mccmnc:26201 err:000",
        "123",
        "ACCEPTD",
        "000",
        None,
    ),
    (
        "text quoting keys the receipt lacks",
        "id:123 stat:DELIVRD text:err:5 submit date:2401011200",
        "123",
        "DELIVRD",
        None,
        None,
    ),
    ("no stat", "id:123 err:000", "123", "UNKNOWN", "000", None),
    ("no err", "id:123 stat:DELETED", "123", "DELETED", None, None),
    ("hex id", "id:1A2B3C stat:DELIVRD", "1A2B3C", "DELIVRD", None, None),
    (
        "invalid date",
        "id:123 submit date:2413011200 stat:DELIVRD",
        "123",
        "DELIVRD",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "message_id", "state", "error", "submit_date"),
    [v[1:] for v in VARIANTS],
    ids=[v[0] for v in VARIANTS],
)
def test_text_variants(
    text: str, message_id: str, state: str, error: str | None, submit_date: datetime | None
) -> None:
    receipt = parse_receipt(receipt_pdu(text))
    assert receipt is not None
    assert receipt.message_id == message_id
    assert receipt.state == state
    assert receipt.error == error
    assert receipt.submit_date == submit_date
    assert receipt.raw_text == text


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("DELIVRD", "DELIVRD"),
        ("delivered", "DELIVRD"),
        ("Deliv", "DELIVRD"),
        ("EXPIRED", "EXPIRED"),
        ("EXPIRD", "EXPIRED"),
        ("DELETED", "DELETED"),
        ("UNDELIV", "UNDELIV"),
        ("UNDELIVERABLE", "UNDELIV"),
        ("Undelivered", "UNDELIV"),
        ("FAILED", "UNDELIV"),
        ("ACCEPTD", "ACCEPTD"),
        ("ACCEPTED", "ACCEPTD"),
        ("UNKNOWN", "UNKNOWN"),
        ("REJECTD", "REJECTD"),
        ("REJECTED", "REJECTD"),
        ("ENROUTE", "ENROUTE"),
        ("EN_ROUTE", "ENROUTE"),
        ("2", "DELIVRD"),
        ("5", "UNDELIV"),
        ("42", "UNKNOWN"),
        ("", "UNKNOWN"),
        ("BOGUS", "UNKNOWN"),
    ],
)
def test_normalize_state(value: str, state: str) -> None:
    assert normalize_state(value) == state


def test_parse_receipt_text_fields() -> None:
    assert parse_receipt_text(STANDARD) == {
        "id": "0123456789",
        "sub": "001",
        "dlvrd": "001",
        "submit date": "2401311159",
        "done date": "2402010002",
        "stat": "DELIVRD",
        "err": "000",
        "text": "Your code is 1234",
    }
    assert parse_receipt_text("") == {}
    assert parse_receipt_text("hello there") == {}


def test_text_in_message_payload() -> None:
    pdu = receipt_pdu(message_payload=STANDARD.encode())
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert (receipt.message_id, receipt.state) == ("0123456789", "DELIVRD")


def test_ucs2_receipt_text() -> None:
    pdu = DeliverSm(
        esm_class=0x04,
        data_coding=DataCoding.UCS2,
        short_message="id:55 stat:DELIVRD err:000 text:Привет".encode("utf-16-be"),
    )
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert (receipt.message_id, receipt.state) == ("55", "DELIVRD")
    assert receipt.raw_text.endswith("Привет")


def test_data_sm_receipt() -> None:
    pdu = DataSm(
        esm_class=0x04,
        tlvs={Tlv.RECEIPTED_MESSAGE_ID: b"m-1\x00", Tlv.MESSAGE_STATE: b"\x03"},
    )
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert (receipt.message_id, receipt.state) == ("m-1", "EXPIRED")


def test_intermediate_notification_is_a_non_final_receipt() -> None:
    receipt = parse_receipt(receipt_pdu("id:77 stat:ENROUTE", esm_class=0x20))
    assert receipt is not None
    assert receipt.state == "ENROUTE"
    assert not receipt.is_final


def test_network_error_code_tlv() -> None:
    pdu = receipt_pdu("id:1 stat:UNDELIV err:001", network_error_code=b"\x03\x00\x22")
    receipt = parse_receipt(pdu)
    assert receipt is not None
    assert receipt.network_error_code == (3, 0x22)
    receipt = parse_receipt(receipt_pdu("id:1 stat:UNDELIV", network_error_code=b"\x03"))
    assert receipt is not None
    assert receipt.network_error_code is None


@pytest.mark.parametrize(
    "pdu",
    [
        receipt_pdu(STANDARD, esm_class=0x00),  # ordinary MO that looks like a receipt
        receipt_pdu(STANDARD, esm_class=0x40),  # MO with UDH
        receipt_pdu(STANDARD, esm_class=0x08),  # SME delivery acknowledgement
        receipt_pdu(STANDARD, esm_class=0x10),  # SME manual/user acknowledgement
        receipt_pdu("", esm_class=0x00, receipted_message_id=b"1\x00", message_state=b"\x02"),
        receipt_pdu("stat:DELIVRD err:000"),  # a receipt without any message id
        receipt_pdu("id: stat:DELIVRD"),
        receipt_pdu("", receipted_message_id=b"\x00"),
    ],
    ids=["mo", "mo-udh", "sme-ack", "user-ack", "tlvs-but-mo", "no-id", "empty-id", "empty-tlv"],
)
def test_not_a_receipt(pdu: DeliverSm) -> None:
    assert parse_receipt(pdu) is None


def test_receipt_survives_the_codec() -> None:
    pdu = receipt_pdu(STANDARD, receipted_message_id=b"0123456789\x00", message_state=b"\x02")
    decoded = decode(encode(pdu))
    assert isinstance(decoded, DeliverSm)
    assert parse_receipt(decoded) == parse_receipt(pdu)


@settings(max_examples=200)
@given(
    st.text(max_size=120),
    st.binary(max_size=20),
    st.binary(max_size=3),
    st.sampled_from([0x04, 0x20, 0x24, 0x44]),
    st.sampled_from([0, 3, 8]),
)
def test_parse_receipt_never_raises(
    text: str, message_id: bytes, state: bytes, esm_class: int, data_coding: int
) -> None:
    tlvs = {Tlv.RECEIPTED_MESSAGE_ID: message_id, Tlv.MESSAGE_STATE: state}
    pdu = DeliverSm(
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=text.encode("utf-8")[:254],
        tlvs=tlvs,
    )
    receipt = parse_receipt(pdu)
    if receipt is not None:
        assert receipt.state in RECEIPT_STATES
        assert receipt.message_id


# ---------------------------------------------------------------------------
# Message id variants
# ---------------------------------------------------------------------------


def test_hex_submit_id_decimal_receipt_id() -> None:
    submit_id = "1A2B3C"  # from submit_sm_resp
    receipt = parse_receipt(receipt_pdu("id:1715004 stat:DELIVRD"))  # 0x1A2B3C in decimal
    assert receipt is not None
    assert submit_id in message_id_variants(receipt.message_id)
    assert receipt.message_id in message_id_variants(submit_id)


def test_decimal_submit_id_hex_receipt_id() -> None:
    submit_id = "1715004"
    assert submit_id in message_id_variants("1a2b3c")
    assert submit_id in message_id_variants("001A2B3C")
    assert "1a2b3c" in message_id_variants(submit_id)
    assert "1A2B3C" in message_id_variants(submit_id)


def test_zero_padding_and_case() -> None:
    assert "000004D2" in message_id_variants("1234")  # 32-bit hex as 8 digits
    assert "00000000000004d2" in message_id_variants("1234")  # 64-bit hex as 16 digits
    assert "1234" in message_id_variants("000004D2")
    assert "1234" in message_id_variants("0001234")
    assert "0000001234" in message_id_variants("1234")  # decimal as 10 digits
    assert "ABCDEF" in message_id_variants("abcdef")
    assert "abcdef" in message_id_variants("ABCDEF")
    assert "42" in message_id_variants(" 42 ")


def test_variants_of_non_numeric_ids() -> None:
    assert message_id_variants("Msg-42/x") == {"Msg-42/x", "msg-42/x", "MSG-42/X"}
    assert message_id_variants("") == {""}
    assert "0" in message_id_variants("0000")


@given(st.integers(0, 2**64 - 1))
def test_variants_link_hex_and_decimal(value: int) -> None:
    decimal = str(value)
    assert f"{value:x}" in message_id_variants(decimal)
    assert f"{value:X}" in message_id_variants(decimal)
    assert decimal in message_id_variants(f"{value:x}")
    assert decimal in message_id_variants(f"{value:016X}")


@given(st.text(max_size=70))
def test_variants_contain_the_id(message_id: str) -> None:
    assert message_id in message_id_variants(message_id)


_VALUE = st.text(min_size=1, max_size=12).filter(lambda v: not any(c in v for c in " ,;:"))


@settings(max_examples=300)
@given(
    st.lists(st.one_of(_VALUE, st.sampled_from(["err:5", "id:x", "a b", " ", ",", "é", "\n"])),
             min_size=7, max_size=7),
    st.text(max_size=30),
)  # fmt: skip
def test_the_standard_layout_shortcut_parses_as_the_general_parser(
    values: list[str], message: str
) -> None:
    """Texts in the standard layout (and near misses: values with a key, a space,
    a separator inside) give the same fields whichever parser reads them."""
    i, sub, dlvrd, submitted, done, stat, err = values
    text = (
        f"id:{i} sub:{sub} dlvrd:{dlvrd} submit date:{submitted} done date:{done} "
        f"stat:{stat} err:{err} text:{message}"
    )
    assert parse_receipt_text(text) == parse_any_receipt_text(text)
