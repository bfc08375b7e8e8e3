"""Tests for roxgate.carriers.smpp.pdu (SMPP 3.4 codec, framing, GSM 7-bit, UDH, times)."""

from __future__ import annotations

import struct
import typing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roxgate.carriers.smpp import pdu as pdu_module
from roxgate.carriers.smpp.pdu import (
    DEFAULT_MAX_COMMAND_LENGTH,
    AlertNotification,
    Bind,
    BindResp,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    PduError,
    PduReader,
    QuerySm,
    QuerySmResp,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    Unbind,
    UnbindResp,
    classify_submit_error,
    decode,
    encode,
    format_absolute_time,
    format_relative_validity,
    get_cstr_tlv,
    get_int_tlv,
    get_network_error_code,
    gsm7_fill_bits,
    pack_gsm7,
    parse_absolute_time,
    parse_relative_time,
    parse_smpp_time,
    set_cstr_tlv,
    set_int_tlv,
    split_frames,
    udh_concat,
    unpack_gsm7,
)
from roxgate.sms.text import encode_gsm7


def h(text: str) -> bytes:
    """Bytes from hex with spaces (vectors are written field by field)."""
    return bytes.fromhex(text)


# ---------------------------------------------------------------------------
# Enumerations: values from the SMPP 3.4 tables
# ---------------------------------------------------------------------------

SPEC_COMMAND_IDS = {
    "GENERIC_NACK": 0x80000000,
    "BIND_RECEIVER": 0x00000001,
    "BIND_RECEIVER_RESP": 0x80000001,
    "BIND_TRANSMITTER": 0x00000002,
    "BIND_TRANSMITTER_RESP": 0x80000002,
    "QUERY_SM": 0x00000003,
    "QUERY_SM_RESP": 0x80000003,
    "SUBMIT_SM": 0x00000004,
    "SUBMIT_SM_RESP": 0x80000004,
    "DELIVER_SM": 0x00000005,
    "DELIVER_SM_RESP": 0x80000005,
    "UNBIND": 0x00000006,
    "UNBIND_RESP": 0x80000006,
    "BIND_TRANSCEIVER": 0x00000009,
    "BIND_TRANSCEIVER_RESP": 0x80000009,
    "OUTBIND": 0x0000000B,
    "ENQUIRE_LINK": 0x00000015,
    "ENQUIRE_LINK_RESP": 0x80000015,
    "ALERT_NOTIFICATION": 0x00000102,
    "DATA_SM": 0x00000103,
    "DATA_SM_RESP": 0x80000103,
}

SPEC_STATUSES = {
    "ESME_ROK": 0x00,
    "ESME_RINVMSGLEN": 0x01,
    "ESME_RINVCMDLEN": 0x02,
    "ESME_RINVCMDID": 0x03,
    "ESME_RINVBNDSTS": 0x04,
    "ESME_RALYBND": 0x05,
    "ESME_RSYSERR": 0x08,
    "ESME_RINVSRCADR": 0x0A,
    "ESME_RINVDSTADR": 0x0B,
    "ESME_RINVMSGID": 0x0C,
    "ESME_RBINDFAIL": 0x0D,
    "ESME_RINVPASWD": 0x0E,
    "ESME_RINVSYSID": 0x0F,
    "ESME_RMSGQFUL": 0x14,
    "ESME_RSUBMITFAIL": 0x45,
    "ESME_RINVSRCTON": 0x48,
    "ESME_RINVSRCNPI": 0x49,
    "ESME_RINVDSTTON": 0x50,
    "ESME_RINVDSTNPI": 0x51,
    "ESME_RINVSYSTYP": 0x53,
    "ESME_RINVREPFLAG": 0x54,
    "ESME_RINVNUMMSGS": 0x55,
    "ESME_RTHROTTLED": 0x58,
    "ESME_RINVSCHED": 0x61,
    "ESME_RINVEXPIRY": 0x62,
    "ESME_RX_T_APPN": 0x64,
    "ESME_RX_P_APPN": 0x65,
    "ESME_RX_R_APPN": 0x66,
    "ESME_RINVOPTPARSTREAM": 0xC0,
    "ESME_ROPTPARNOTALLWD": 0xC1,
    "ESME_RINVPARLEN": 0xC2,
    "ESME_RMISSINGOPTPARAM": 0xC3,
    "ESME_RINVOPTPARAMVAL": 0xC4,
    "ESME_RDELIVERYFAILURE": 0xFE,
    "ESME_RUNKNOWNERR": 0xFF,
}

SPEC_TLVS = {
    "RECEIPTED_MESSAGE_ID": 0x001E,
    "MESSAGE_STATE": 0x0427,
    "NETWORK_ERROR_CODE": 0x0423,
    "SAR_MSG_REF_NUM": 0x020C,
    "SAR_TOTAL_SEGMENTS": 0x020E,
    "SAR_SEGMENT_SEQNUM": 0x020F,
    "MESSAGE_PAYLOAD": 0x0424,
    "USER_MESSAGE_REFERENCE": 0x0204,
    "SOURCE_PORT": 0x020A,
    "DESTINATION_PORT": 0x020B,
    "SC_INTERFACE_VERSION": 0x0210,
    "MORE_MESSAGES_TO_SEND": 0x0426,
}


@pytest.mark.parametrize(
    ("enum", "table"),
    [(CommandId, SPEC_COMMAND_IDS), (Status, SPEC_STATUSES), (Tlv, SPEC_TLVS)],
    ids=["command_id", "status", "tlv"],
)
def test_enum_values_match_spec(enum: type, table: dict[str, int]) -> None:
    assert {name: int(enum[name]) for name in table} == table


# ---------------------------------------------------------------------------
# Byte-exact vectors, written by hand from SMPP 3.4 §2.2 / §4
# ---------------------------------------------------------------------------

SUBMIT_SM_VECTOR = h(
    "00000039 00000004 00000000 0000002a"  # header: length 57, submit_sm, status 0, seq 42
    "00"  # service_type ""
    "05 00 526f7800"  # source ton 5 (alphanumeric), npi 0, "Rox"
    "01 01 3439313531313233343536373800"  # dest ton 1, npi 1, "4915112345678"
    "00 00 00"  # esm_class, protocol_id, priority_flag
    "00 00"  # schedule_delivery_time "", validity_period ""
    "01 00 00 00"  # registered_delivery 1, replace_if_present 0, data_coding 0, default id 0
    "02 6869"  # sm_length 2, "hi"
    "0204 0002 0001"  # TLV user_message_reference = 1
)

VECTORS: list[tuple[str, bytes, Pdu]] = [
    (
        "enquire_link",
        h("00000010 00000015 00000000 00000001"),
        EnquireLink(sequence_number=1),
    ),
    (
        "enquire_link_resp",
        h("00000010 80000015 00000000 7fffffff"),
        EnquireLinkResp(sequence_number=0x7FFFFFFF),
    ),
    ("unbind", h("00000010 00000006 00000000 00000003"), Unbind(sequence_number=3)),
    ("unbind_resp", h("00000010 80000006 00000000 00000003"), UnbindResp(sequence_number=3)),
    (
        "generic_nack",
        h("00000010 80000000 00000003 0000000a"),
        GenericNack(sequence_number=10, command_status=Status.ESME_RINVCMDID),
    ),
    (
        "bind_transceiver",
        h(
            "0000001d 00000009 00000000 00000001"
            "7465737400"  # system_id "test"
            "707700"  # password "pw"
            "00"  # system_type ""
            "34 00 00"  # interface_version 0x34, addr_ton, addr_npi
            "00"  # address_range ""
        ),
        Bind(
            command_id=CommandId.BIND_TRANSCEIVER,
            system_id="test",
            password="pw",
            sequence_number=1,
        ),
    ),
    (
        "bind_transmitter",
        h("00000024 00000002 00000000 00000002726f7800 73656372657400 534d505000 34 01 01 00"),
        Bind(
            command_id=CommandId.BIND_TRANSMITTER,
            system_id="rox",
            password="secret",
            system_type="SMPP",
            addr_ton=1,
            addr_npi=1,
            sequence_number=2,
        ),
    ),
    (
        "bind_transceiver_resp with sc_interface_version",
        h("0000001a 80000009 00000000 00000001 534d534300 0210 0001 34"),
        BindResp(
            command_id=CommandId.BIND_TRANSCEIVER_RESP,
            system_id="SMSC",
            tlvs={Tlv.SC_INTERFACE_VERSION: b"\x34"},
            sequence_number=1,
        ),
    ),
    (
        "bind_receiver_resp failed (no body)",
        h("00000010 80000001 0000000e 00000001"),
        BindResp(
            command_id=CommandId.BIND_RECEIVER_RESP,
            command_status=Status.ESME_RINVPASWD,
            sequence_number=1,
        ),
    ),
    (
        "submit_sm_resp",
        h("00000014 80000004 00000000 00000005 61626300"),
        SubmitSmResp(message_id="abc", sequence_number=5),
    ),
    (
        "submit_sm_resp throttled (no body)",
        h("00000010 80000004 00000058 00000007"),
        SubmitSmResp(command_status=Status.ESME_RTHROTTLED, sequence_number=7),
    ),
    (
        "submit_sm",
        SUBMIT_SM_VECTOR,
        SubmitSm(
            sequence_number=42,
            source_addr_ton=5,
            source_addr="Rox",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="4915112345678",
            registered_delivery=1,
            short_message=b"hi",
            tlvs={Tlv.USER_MESSAGE_REFERENCE: b"\x00\x01"},
        ),
    ),
    (
        "deliver_sm_resp",
        h("00000011 80000005 00000000 00000009 00"),
        DeliverSmResp(sequence_number=9),
    ),
    (
        "query_sm_resp",
        h("00000026 80000003 00000000 00000004 343200 3234303130313132303030303030302b00 02 00"),
        QuerySmResp(
            sequence_number=4,
            message_id="42",
            final_date="240101120000000+",
            message_state=2,
        ),
    ),
    (
        "outbind",
        h("0000001d 0000000b 00000000 00000001 736d736300 7077643132333400"),
        Outbind(system_id="smsc", password="pwd1234", sequence_number=1),
    ),
]


@pytest.mark.parametrize(("vector", "pdu"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vectors(vector: bytes, pdu: Pdu) -> None:
    assert struct.unpack(">I", vector[:4])[0] == len(vector)  # the vector itself is sound
    assert encode(pdu) == vector
    assert decode(vector) == pdu


def test_decode_gives_typed_status_and_ids() -> None:
    decoded = decode(h("00000010 80000000 00000058 00000001"))
    assert decoded.command_status is Status.ESME_RTHROTTLED
    # A status outside SMPP 3.4 (vendor range) stays a plain int.
    decoded = decode(h("00000010 80000000 00000401 00000001"))
    assert decoded.command_status == 0x401
    assert not isinstance(decoded.command_status, Status)
    bind = decode(with_length(h("00000000 00000001 00000000 00000001 00 00 00 34 00 00 00")))
    assert isinstance(bind, Bind)
    assert bind.command_id is CommandId.BIND_RECEIVER


def test_bind_resp_sc_interface_version_property() -> None:
    assert BindResp(tlvs={Tlv.SC_INTERFACE_VERSION: b"\x34"}).sc_interface_version == 0x34
    assert BindResp().sc_interface_version is None


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

SAMPLES: list[Pdu] = [
    Bind(command_id=CommandId.BIND_RECEIVER, system_id="r", password="p", sequence_number=1),
    Bind(command_id=CommandId.BIND_TRANSMITTER, system_id="t", address_range="^49", addr_ton=1),
    Bind(command_id=CommandId.BIND_TRANSCEIVER, system_id="x" * 15, password="y" * 8),
    BindResp(command_id=CommandId.BIND_RECEIVER_RESP, system_id="SMSC"),
    BindResp(command_id=CommandId.BIND_TRANSMITTER_RESP, system_id="SMSC"),
    BindResp(command_id=CommandId.BIND_TRANSCEIVER_RESP, tlvs={0x0210: b"\x34"}),
    Outbind(system_id="smsc", password="pw"),
    Unbind(sequence_number=9),
    UnbindResp(sequence_number=9),
    GenericNack(command_status=Status.ESME_RINVCMDLEN, sequence_number=0xFFFFFFFF),
    SubmitSm(
        service_type="CMT",
        source_addr="Rox",
        destination_addr="4915112345678",
        esm_class=0x40,
        data_coding=8,
        validity_period="000001000000000R",
        schedule_delivery_time="240101120000004+",
        short_message=udh_concat(1, 2, 1) + "héllo".encode("utf-16-be"),
        tlvs={Tlv.SAR_MSG_REF_NUM: b"\x00\x01", 0x1400: b"vendor"},
    ),
    SubmitSmResp(message_id="0123456789abcdef", sequence_number=77),
    SubmitSmResp(command_status=Status.ESME_RSUBMITFAIL, message_id="kept"),
    DeliverSm(esm_class=0x04, short_message=b"id:1 stat:DELIVRD", tlvs={0x001E: b"1\x00"}),
    DeliverSmResp(sequence_number=5),
    DeliverSmResp(sequence_number=5, command_status=Status.ESME_RX_T_APPN),
    DataSm(source_addr="a" * 64, destination_addr="b" * 64, tlvs={0x0424: b"\x00" * 300}),
    DataSmResp(message_id="m1", tlvs={0x0425: b"\x01"}),
    QuerySm(message_id="m1", source_addr_ton=1, source_addr="49"),
    QuerySmResp(message_id="m1", final_date="", message_state=3, error_code=7),
    EnquireLink(sequence_number=1),
    EnquireLinkResp(sequence_number=1),
    AlertNotification(source_addr="49", esme_addr="rox", tlvs={0x0422: b"\x00"}),
]


def test_samples_cover_every_pdu_class() -> None:
    assert {type(p) for p in SAMPLES} == set(typing.get_args(Pdu))
    bind_kinds = {p.command_id for p in SAMPLES if isinstance(p, Bind | BindResp)}
    assert len(bind_kinds) == 6


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_sample_round_trip(pdu: Pdu) -> None:
    data = encode(pdu)
    assert len(data) == struct.unpack(">I", data[:4])[0]
    assert decode(data) == pdu
    assert encode(decode(data)) == data


# Strategies for valid PDUs of every type.
u32 = st.integers(0, 0xFFFFFFFF)
octet = st.integers(0, 255)
_latin1 = st.characters(min_codepoint=1, max_codepoint=255)


def cstr(max_chars: int) -> st.SearchStrategy[str]:
    return st.text(_latin1, max_size=max_chars)


smpp_time = st.one_of(st.just(""), st.text(_latin1, min_size=16, max_size=16))
tlvs_st = st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4)
header = {"sequence_number": u32, "command_status": u32}
sm_fields = {
    **header,
    "service_type": cstr(5),
    "source_addr_ton": octet,
    "source_addr_npi": octet,
    "source_addr": cstr(20),
    "dest_addr_ton": octet,
    "dest_addr_npi": octet,
    "destination_addr": cstr(20),
    "esm_class": octet,
    "protocol_id": octet,
    "priority_flag": octet,
    "schedule_delivery_time": smpp_time,
    "validity_period": smpp_time,
    "registered_delivery": octet,
    "replace_if_present_flag": octet,
    "data_coding": octet,
    "sm_default_msg_id": octet,
    "short_message": st.binary(max_size=254),
    "tlvs": tlvs_st,
}
bind_ids = st.sampled_from(
    [CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER]
)

PDU_STRATEGIES: dict[type, st.SearchStrategy[Pdu]] = {
    Bind: st.builds(
        Bind,
        **header,
        command_id=bind_ids,
        system_id=cstr(15),
        password=cstr(8),
        system_type=cstr(12),
        interface_version=octet,
        addr_ton=octet,
        addr_npi=octet,
        address_range=cstr(40),
    ),
    BindResp: st.builds(
        BindResp,
        **header,
        command_id=bind_ids.map(lambda c: CommandId(c | 0x80000000)),
        system_id=cstr(15),
        tlvs=tlvs_st,
    ),
    Outbind: st.builds(Outbind, **header, system_id=cstr(15), password=cstr(8)),
    Unbind: st.builds(Unbind, **header),
    UnbindResp: st.builds(UnbindResp, **header),
    GenericNack: st.builds(GenericNack, **header),
    SubmitSm: st.builds(SubmitSm, **sm_fields),
    SubmitSmResp: st.builds(SubmitSmResp, **header, message_id=cstr(64), tlvs=tlvs_st),
    DeliverSm: st.builds(DeliverSm, **sm_fields),
    DeliverSmResp: st.builds(DeliverSmResp, **header, message_id=cstr(64), tlvs=tlvs_st),
    DataSm: st.builds(
        DataSm,
        **header,
        service_type=cstr(5),
        source_addr_ton=octet,
        source_addr_npi=octet,
        source_addr=cstr(64),
        dest_addr_ton=octet,
        dest_addr_npi=octet,
        destination_addr=cstr(64),
        esm_class=octet,
        registered_delivery=octet,
        data_coding=octet,
        tlvs=tlvs_st,
    ),
    DataSmResp: st.builds(DataSmResp, **header, message_id=cstr(64), tlvs=tlvs_st),
    QuerySm: st.builds(
        QuerySm,
        **header,
        message_id=cstr(64),
        source_addr_ton=octet,
        source_addr_npi=octet,
        source_addr=cstr(20),
    ),
    QuerySmResp: st.builds(
        QuerySmResp,
        **header,
        message_id=cstr(64),
        final_date=smpp_time,
        message_state=octet,
        error_code=octet,
    ),
    EnquireLink: st.builds(EnquireLink, **header),
    EnquireLinkResp: st.builds(EnquireLinkResp, **header),
    AlertNotification: st.builds(
        AlertNotification,
        **header,
        source_addr_ton=octet,
        source_addr_npi=octet,
        source_addr=cstr(64),
        esme_addr_ton=octet,
        esme_addr_npi=octet,
        esme_addr=cstr(64),
        tlvs=tlvs_st,
    ),
}
any_pdu = st.one_of(*PDU_STRATEGIES.values())


def test_strategies_cover_every_pdu_class() -> None:
    assert set(PDU_STRATEGIES) == set(typing.get_args(Pdu))


@settings(max_examples=200)
@given(any_pdu)
def test_round_trip_random_pdus(pdu: Pdu) -> None:
    data = encode(pdu)
    assert struct.unpack(">I", data[:4])[0] == len(data)
    decoded = decode(data)
    assert decoded == pdu
    assert encode(decoded) == data


def test_unknown_tlvs_are_preserved_in_order() -> None:
    tlvs = {0x1400: b"vendor", Tlv.MESSAGE_STATE: b"\x02", 0xFFFF: b"", 0x0000: b"\x00\x01"}
    data = encode(DeliverSm(short_message=b"x", tlvs=tlvs))
    decoded = decode(data)
    assert isinstance(decoded, DeliverSm)
    assert list(decoded.tlvs.items()) == list(tlvs.items())
    assert data.endswith(h("1400 0006 76656e646f72 0427 0001 02 ffff 0000 0000 0002 0001"))


def test_repeated_tlv_keeps_last_value() -> None:
    base = encode(SubmitSmResp(message_id="a"))
    data = base + h("0427 0001 01 0427 0001 05")
    data = struct.pack(">I", len(data)) + data[4:]
    decoded = decode(data)
    assert isinstance(decoded, SubmitSmResp)
    assert decoded.tlvs == {Tlv.MESSAGE_STATE: b"\x05"}


def test_response_bodies_may_be_absent() -> None:
    # Status 0 without body: lenient (seen in the wild), defaults.
    assert decode(h("00000010 80000004 00000000 00000001")) == SubmitSmResp(sequence_number=1)
    assert decode(h("00000010 80000005 00000000 00000001")) == DeliverSmResp(sequence_number=1)
    assert decode(h("00000010 80000103 000000fe 00000001")) == DataSmResp(
        command_status=Status.ESME_RDELIVERYFAILURE, sequence_number=1
    )
    # A request body is never optional.
    with pytest.raises(PduError) as info:
        decode(h("00000010 00000004 00000000 00000001"))
    assert info.value.status == Status.ESME_RINVCMDLEN


# ---------------------------------------------------------------------------
# Decode errors
# ---------------------------------------------------------------------------


def with_length(data: bytes) -> bytes:
    """``data`` with its command_length set to its real length."""
    return struct.pack(">I", len(data)) + data[4:]


BIND_HEADER = h("00000000 00000009 00000000 0000000c")
SUBMIT_HEADER = h("00000000 00000004 00000000 0000000d")

DECODE_ERRORS = [
    ("empty", b"", Status.ESME_RINVCMDLEN, None, None),
    ("short header", h("00000010 00000015 0000"), Status.ESME_RINVCMDLEN, 0x15, None),
    (
        "length larger than data",
        h("00000011 00000015 00000000 00000001"),
        Status.ESME_RINVCMDLEN,
        0x15,
        1,
    ),
    (
        "length smaller than data",
        h("00000010 00000015 00000000 00000001 00"),
        Status.ESME_RINVCMDLEN,
        0x15,
        1,
    ),
    (
        "unknown command id",
        h("00000010 00000099 00000000 00000002"),
        Status.ESME_RINVCMDID,
        0x99,
        2,
    ),
    (
        "replace_sm has no codec",
        h("00000010 00000007 00000000 00000002"),
        Status.ESME_RINVCMDID,
        7,
        2,
    ),
    (
        "trailing bytes after enquire_link",
        h("00000014 00000015 00000000 00000003 00000000"),
        Status.ESME_RINVCMDLEN,
        0x15,
        3,
    ),
    (
        "C-string without NUL before the end",
        with_length(BIND_HEADER + b"test"),
        Status.ESME_RINVCMDLEN,
        9,
        12,
    ),
    (
        "system_id over 15 octets",
        with_length(BIND_HEADER + b"s" * 16 + h("00 00 00 34 00 00 00")),
        Status.ESME_RINVSYSID,
        9,
        12,
    ),
    (
        "password over 8 octets",
        with_length(BIND_HEADER + h("00") + b"p" * 9 + h("00 00 34 00 00 00")),
        Status.ESME_RINVPASWD,
        9,
        12,
    ),
    (
        "bind truncated before interface_version",
        with_length(BIND_HEADER + h("00 00 00")),
        Status.ESME_RINVCMDLEN,
        9,
        12,
    ),
    (
        "source_addr over 20 octets",
        with_length(SUBMIT_HEADER + h("00 00 00") + b"1" * 21 + h("00")),
        Status.ESME_RINVSRCADR,
        4,
        13,
    ),
    (
        "destination_addr over 20 octets",
        with_length(SUBMIT_HEADER + h("00 00 00 00 00 00") + b"1" * 25),
        Status.ESME_RINVDSTADR,
        4,
        13,
    ),
    (
        "validity_period over 16 octets",
        with_length(SUBMIT_HEADER + h("00 0000 00 0000 00 000000 00") + b"1" * 17 + h("00")),
        Status.ESME_RINVEXPIRY,
        4,
        13,
    ),
    (
        "sm_length past the end",
        with_length(SUBMIT_HEADER + h("00 0000 00 0000 00 000000 00 00 00000000 05 6869")),
        Status.ESME_RINVMSGLEN,
        4,
        13,
    ),
    (
        "TLV header truncated",
        with_length(SUBMIT_HEADER + h("00 0000 00 0000 00 000000 00 00 00000000 00 0424 00")),
        Status.ESME_RINVOPTPARSTREAM,
        4,
        13,
    ),
    (
        "TLV length past the end",
        with_length(
            SUBMIT_HEADER + h("00 0000 00 0000 00 000000 00 00 00000000 00 0424 0005 6869")
        ),
        Status.ESME_RINVOPTPARSTREAM,
        4,
        13,
    ),
    (
        "submit_sm_resp message_id over 64 octets",
        with_length(h("00000000 80000004 00000000 0000000e") + b"m" * 65 + h("00")),
        Status.ESME_RINVMSGID,
        0x80000004,
        14,
    ),
    (
        "TLV after a PDU that takes none",
        with_length(h("00000000 00000003 00000000 0000000f 3100 00 00 00 0427 0001 02")),
        Status.ESME_RINVCMDLEN,
        3,
        15,
    ),
]


@pytest.mark.parametrize(
    ("data", "status", "command_id", "seq"),
    [e[1:] for e in DECODE_ERRORS],
    ids=[e[0] for e in DECODE_ERRORS],
)
def test_decode_errors(
    data: bytes, status: Status, command_id: int | None, seq: int | None
) -> None:
    with pytest.raises(PduError) as info:
        decode(data)
    assert info.value.status == status
    assert info.value.command_id == command_id
    assert info.value.sequence_number == seq


def test_error_response_is_generic_nack_for_framing_errors() -> None:
    with pytest.raises(PduError) as info:
        decode(h("00000010 00000099 00000000 00000002"))
    assert info.value.response() == GenericNack(
        command_status=Status.ESME_RINVCMDID, sequence_number=2
    )
    with pytest.raises(PduError) as info:
        decode(h("00000011 00000015 00000000 00000008"))
    assert info.value.response() == GenericNack(
        command_status=Status.ESME_RINVCMDLEN, sequence_number=8
    )


def test_error_response_is_the_requests_resp_for_body_errors() -> None:
    with pytest.raises(PduError) as info:
        decode(with_length(BIND_HEADER + b"s" * 16 + h("00 00 00 34 00 00 00")))
    resp = info.value.response()
    assert resp == BindResp(
        command_id=CommandId.BIND_TRANSCEIVER_RESP,
        command_status=Status.ESME_RINVSYSID,
        sequence_number=12,
    )
    assert encode(resp) == h("00000010 80000009 0000000f 0000000c")  # error: no body

    with pytest.raises(PduError) as info:
        decode(with_length(SUBMIT_HEADER + h("00 00 00") + b"1" * 21 + h("00")))
    assert info.value.response() == SubmitSmResp(
        command_status=Status.ESME_RINVSRCADR, sequence_number=13
    )


def test_error_response_to_a_response_is_generic_nack() -> None:
    with pytest.raises(PduError) as info:
        decode(with_length(h("00000000 80000004 00000000 0000000e") + b"m" * 65 + h("00")))
    assert info.value.response() == GenericNack(
        command_status=Status.ESME_RINVMSGID, sequence_number=14
    )
    # And without any header at all.
    assert PduError("x", status=Status.ESME_RINVCMDLEN).response() == GenericNack(
        command_status=Status.ESME_RINVCMDLEN
    )


# ---------------------------------------------------------------------------
# Encode errors
# ---------------------------------------------------------------------------

ENCODE_ERRORS = [
    ("source_addr too long", SubmitSm(source_addr="1" * 21), Status.ESME_RINVSRCADR),
    ("destination not latin-1", SubmitSm(destination_addr="☎"), Status.ESME_RINVDSTADR),
    ("NUL inside a C-string", SubmitSm(service_type="a\0b"), Status.ESME_RINVSERTYP),
    ("esm_class not an octet", SubmitSm(esm_class=256), Status.ESME_RINVESMCLASS),
    ("negative ton", DeliverSm(dest_addr_ton=-1), Status.ESME_RINVDSTTON),
    ("short_message over 254", SubmitSm(short_message=b"x" * 255), Status.ESME_RINVMSGLEN),
    ("validity neither empty nor 16", SubmitSm(validity_period="1R"), Status.ESME_RINVEXPIRY),
    ("schedule too long", SubmitSm(schedule_delivery_time="1" * 17), Status.ESME_RINVSCHED),
    ("short_message as str", SubmitSm(short_message="hi"), Status.ESME_RINVMSGLEN),  # type: ignore[arg-type]
    ("system_id too long", Bind(system_id="s" * 16), Status.ESME_RINVSYSID),
    ("password too long", Bind(password="p" * 9), Status.ESME_RINVPASWD),
    ("message_id too long", SubmitSmResp(message_id="m" * 65), Status.ESME_RINVMSGID),
    ("TLV tag too large", SubmitSm(tlvs={0x10000: b""}), Status.ESME_RINVOPTPARSTREAM),
    ("TLV value too long", DataSm(tlvs={0x0424: b"x" * 0x10000}), Status.ESME_RINVPARLEN),
    ("bind with a non-bind id", Bind(command_id=CommandId.SUBMIT_SM), Status.ESME_RSYSERR),
    ("sequence number too large", EnquireLink(sequence_number=1 << 32), Status.ESME_RSYSERR),
    ("negative status", GenericNack(command_status=-1), Status.ESME_RSYSERR),
]


@pytest.mark.parametrize(
    ("pdu", "status"), [e[1:] for e in ENCODE_ERRORS], ids=[e[0] for e in ENCODE_ERRORS]
)
def test_encode_errors(pdu: Pdu, status: Status) -> None:
    with pytest.raises(PduError) as info:
        encode(pdu)
    assert info.value.status == status


def test_encode_rejects_non_pdus() -> None:
    with pytest.raises(TypeError):
        encode("enquire_link")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Fuzzing: decode never raises anything but PduError
# ---------------------------------------------------------------------------


def decode_outcome(data: bytes) -> Pdu | PduError:
    try:
        return decode(data)
    except PduError as exc:
        return exc


def check_stable(result: Pdu | PduError) -> None:
    """A decoded PDU re-encodes to something that decodes back to it, or encode
    refuses it with PduError (decode is more lenient than encode on a few fields)."""
    if isinstance(result, PduError):
        return
    try:
        data = encode(result)
    except PduError:
        return
    assert decode(data) == result


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_stable(decode_outcome(data))


command_ids = st.one_of(st.sampled_from(list(CommandId)), u32)


@settings(max_examples=300)
@given(command_ids, u32, u32, st.binary(max_size=200))
def test_fuzz_random_bodies_behind_valid_headers(
    command_id: int, status: int, seq: int, body: bytes
) -> None:
    data = struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body
    result = decode_outcome(data)
    if isinstance(result, PduError):
        assert result.command_id == command_id
        assert result.sequence_number == seq
    check_stable(result)


@st.composite
def mutated_pdu(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(any_pdu)))
    kind = draw(st.sampled_from(["truncate", "truncate+fix", "flip", "length", "tlv", "insert"]))
    if kind.startswith("truncate"):
        data = data[: draw(st.integers(0, len(data) - 1))]
        if kind == "truncate+fix" and len(data) >= 4:
            data[:4] = struct.pack(">I", len(data))
    elif kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    elif kind == "length":
        data[:4] = struct.pack(">I", draw(u32))
    elif kind == "tlv":
        data += struct.pack(">HH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)))
        data += draw(st.binary(max_size=20))
        data[:4] = struct.pack(">I", len(data))
    else:
        i = draw(st.integers(16, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=8))
        data[:4] = struct.pack(">I", len(data))
    return bytes(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_pdu())
def test_fuzz_mutated_pdus(data: bytes) -> None:
    check_stable(decode_outcome(data))


def test_fuzz_every_truncation_of_a_submit_sm() -> None:
    for end in range(len(SUBMIT_SM_VECTOR)):
        result = decode_outcome(with_length(SUBMIT_SM_VECTOR[:end]) if end >= 4 else b"")
        if end == len(SUBMIT_SM_VECTOR) - 6:  # cut exactly before the one TLV: valid
            assert isinstance(result, SubmitSm)
            assert result.tlvs == {}
        else:
            assert isinstance(result, PduError), end


# The submit_sm / deliver_sm fast paths must agree with the table-driven reference.

sm_body_parts = st.lists(
    st.one_of(
        st.binary(max_size=25),
        st.sampled_from([b"\x00", b"\x00" * 3, b"1" * 16 + b"\x00", h("0427 0001 02")]),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(st.sampled_from([SubmitSm, DeliverSm]), sm_body_parts)
def test_fast_decode_agrees_with_reference(cls: type, parts: list[bytes]) -> None:
    body = b"".join(parts)
    cid = cls.command_id  # type: ignore[attr-defined]
    data = struct.pack(">IIII", 16 + len(body), cid, 0, 1) + body
    layout = pdu_module._BY_CLASS[cls]
    try:
        reference: Pdu | tuple[int, int | None] = pdu_module._decode_body(
            layout, data, len(data), cid, 0, 1
        )
    except PduError as exc:
        reference = (exc.status, exc.command_id)
    try:
        fast = pdu_module._decode_short_message(cls, data, len(data), cid, 0, 1)
    except PduError as exc:
        assert reference == (exc.status, exc.command_id)
    else:
        if fast is None:
            assert isinstance(reference, tuple)  # only irregular input is left to the reference
        else:
            assert fast == reference


@settings(max_examples=200)
@given(
    st.builds(
        SubmitSm,
        **{
            **sm_fields,
            "source_addr": st.text(max_size=22),
            "service_type": st.text(max_size=7),
            "esm_class": st.integers(-2, 258),
            "validity_period": st.one_of(smpp_time, st.text(max_size=17)),
            "short_message": st.binary(max_size=256),
        },
    )
)
def test_fast_encode_agrees_with_reference(pdu: SubmitSm) -> None:
    layout = pdu_module._BY_CLASS[SubmitSm]
    try:
        reference: bytes | int = bytes(
            pdu_module._encode_body(pdu, layout, pdu.command_id, pdu.sequence_number)
        )
    except PduError as exc:
        reference = exc.status
    try:
        fast = pdu_module._encode_short_message(pdu)
    except PduError as exc:
        assert reference == exc.status
    else:
        if fast is None:
            assert isinstance(reference, int)
        else:
            assert fast == reference


# ---------------------------------------------------------------------------
# Stream framing
# ---------------------------------------------------------------------------

FRAMES = [encode(p) for p in SAMPLES[:8]]


def test_split_frames_returns_complete_frames_and_keeps_the_rest() -> None:
    stream = b"".join(FRAMES)
    buffer = bytearray(stream + FRAMES[0][:7])
    assert split_frames(buffer) == FRAMES
    assert buffer == FRAMES[0][:7]
    buffer += FRAMES[0][7:]
    assert split_frames(buffer) == [FRAMES[0]]
    assert buffer == b""
    assert split_frames(buffer) == []
    assert split_frames(bytearray(b"\x00\x00\x00")) == []


@given(st.lists(any_pdu, max_size=6), st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_reader_yields_pdus_whatever_the_chunking(pdus: list[Pdu], sizes: list[int]) -> None:
    frames = [encode(p) for p in pdus]
    stream = b"".join(frames)
    reader = PduReader()
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        reader.feed(stream[pos : pos + size])
        pos += size
        i += 1
        got.extend(reader)
    assert got == frames
    assert [decode(f) for f in got] == pdus
    assert reader.buffered == 0


@pytest.mark.parametrize(
    "head",
    [h("00000000"), h("0000000f"), h("00010001"), h("ffffffff")],
    ids=["zero", "15", "max+1", "huge"],
)
def test_split_frames_rejects_bad_command_length(head: bytes) -> None:
    buffer = bytearray(head + h("00000015 00000000 00000005") + FRAMES[0])
    before = bytes(buffer)
    with pytest.raises(PduError) as info:
        split_frames(buffer)
    assert info.value.status == Status.ESME_RINVCMDLEN
    assert info.value.command_id == 0x15
    assert info.value.sequence_number == 5
    assert info.value.response() == GenericNack(
        command_status=Status.ESME_RINVCMDLEN, sequence_number=5
    )
    assert buffer == before


def test_split_frames_limit_is_configurable_and_inclusive() -> None:
    frame = encode(SubmitSmResp(message_id="x" * 15))  # 32 octets
    assert len(frame) == 32
    assert split_frames(bytearray(frame), max_length=32) == [frame]
    with pytest.raises(PduError):
        split_frames(bytearray(frame), max_length=31)
    assert DEFAULT_MAX_COMMAND_LENGTH == 65536
    big = struct.pack(">IIII", 65536, 0x80000004, 0, 1) + b"a" * (65536 - 17) + b"\0"
    assert split_frames(bytearray(big)) == [big]
    with pytest.raises(PduError):
        split_frames(bytearray(struct.pack(">I", 65537)))


def test_bad_header_after_good_frames_raises_on_the_next_call() -> None:
    buffer = bytearray(FRAMES[0] + FRAMES[1] + h("00000002 deadbeef"))
    assert split_frames(buffer) == [FRAMES[0], FRAMES[1]]
    with pytest.raises(PduError):
        split_frames(buffer)

    reader = PduReader()
    reader.feed(FRAMES[0] + FRAMES[1] + h("00000002 deadbeef"))
    got: list[bytes] = []
    with pytest.raises(PduError) as info:
        got.extend(reader)
    assert got == [FRAMES[0], FRAMES[1]]
    assert info.value.status == Status.ESME_RINVCMDLEN


def test_valid_frame_after_garbage_is_a_length_error() -> None:
    reader = PduReader()
    reader.feed(b"GET / HTTP/1.1\r\n" + FRAMES[0])  # "GET " = 0x47455420: over 64 KiB
    with pytest.raises(PduError) as info:
        list(reader)
    assert info.value.status == Status.ESME_RINVCMDLEN
    assert info.value.response().command_id == CommandId.GENERIC_NACK

    buffer = bytearray(h("00 00 00") + FRAMES[0])  # three stray zero octets: length < 16
    with pytest.raises(PduError) as info:
        split_frames(buffer)
    assert info.value.status == Status.ESME_RINVCMDLEN


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40), any_pdu, st.integers(16, 2000))
def test_fuzz_garbage_before_a_valid_frame(garbage: bytes, pdu: Pdu, max_length: int) -> None:
    stream = garbage + encode(pdu)
    buffer = bytearray(stream)
    head = int.from_bytes(stream[:4], "big")
    try:
        frames = split_frames(buffer, max_length)
        for frame in frames:
            decode_outcome(frame)
    except PduError as exc:
        assert exc.status == Status.ESME_RINVCMDLEN
        assert bytes(buffer) == stream
        return
    # No error: the garbage happened to read as a plausible length.
    assert 16 <= head <= max_length


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(16, 200))
def test_fuzz_split_frames(data: bytes, max_length: int) -> None:
    buffer = bytearray(data)
    frames: list[bytes] = []
    try:
        while batch := split_frames(buffer, max_length):
            frames.extend(batch)
    except PduError as exc:
        assert exc.status == Status.ESME_RINVCMDLEN
    for frame in frames:
        assert 16 <= len(frame) <= max_length
        assert int.from_bytes(frame[:4], "big") == len(frame)
        decode_outcome(frame)
    assert b"".join(frames) + bytes(buffer) == data


def test_reader_rejects_a_limit_below_the_header() -> None:
    with pytest.raises(ValueError):
        PduReader(max_length=15)


# ---------------------------------------------------------------------------
# TLV helpers
# ---------------------------------------------------------------------------


def test_int_tlv_helpers() -> None:
    tlvs: dict[int, bytes] = {}
    set_int_tlv(tlvs, Tlv.MESSAGE_STATE, 2)
    set_int_tlv(tlvs, Tlv.SAR_MSG_REF_NUM, 0x1234)
    set_int_tlv(tlvs, Tlv.QOS_TIME_TO_LIVE, 86400)
    set_int_tlv(tlvs, 0x1400, 7, size=4)
    assert tlvs == {
        Tlv.MESSAGE_STATE: b"\x02",
        Tlv.SAR_MSG_REF_NUM: b"\x12\x34",
        Tlv.QOS_TIME_TO_LIVE: h("00015180"),
        0x1400: h("00000007"),
    }
    assert get_int_tlv(tlvs, Tlv.SAR_MSG_REF_NUM) == 0x1234
    assert get_int_tlv(tlvs, Tlv.QOS_TIME_TO_LIVE) == 86400
    assert get_int_tlv(tlvs, Tlv.SOURCE_PORT) is None
    with pytest.raises(ValueError):
        set_int_tlv(tlvs, Tlv.MESSAGE_STATE, 256)
    with pytest.raises(ValueError):
        set_int_tlv(tlvs, 0x1401, 1)  # unknown tag, no size
    with pytest.raises(ValueError):
        set_int_tlv(tlvs, 0x1401, 1, size=3)
    with pytest.raises(PduError) as info:
        get_int_tlv({Tlv.MESSAGE_STATE: b""}, Tlv.MESSAGE_STATE)
    assert info.value.status == Status.ESME_RINVPARLEN


def test_cstr_tlv_helpers() -> None:
    tlvs: dict[int, bytes] = {}
    set_cstr_tlv(tlvs, Tlv.RECEIPTED_MESSAGE_ID, "abc123")
    assert tlvs == {Tlv.RECEIPTED_MESSAGE_ID: b"abc123\x00"}
    assert get_cstr_tlv(tlvs, Tlv.RECEIPTED_MESSAGE_ID) == "abc123"
    assert get_cstr_tlv({0x1E: b"no-nul"}, 0x1E) == "no-nul"
    assert get_cstr_tlv({0x1E: b"a\x00junk"}, 0x1E) == "a"
    assert get_cstr_tlv({}, 0x1E) is None
    with pytest.raises(ValueError):
        set_cstr_tlv(tlvs, 0x1E, "a\0b")


def test_network_error_code() -> None:
    assert get_network_error_code({Tlv.NETWORK_ERROR_CODE: h("03 0022")}) == (3, 0x22)
    assert get_network_error_code({}) is None
    with pytest.raises(PduError):
        get_network_error_code({Tlv.NETWORK_ERROR_CODE: h("03")})


# ---------------------------------------------------------------------------
# Submit error classification
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (Status.ESME_ROK, "ok"),
        (Status.ESME_RTHROTTLED, "throttled"),
        (Status.ESME_RMSGQFUL, "throttled"),
        (Status.ESME_RINVDSTADR, "permanent"),
        (Status.ESME_RINVSRCADR, "permanent"),
        (Status.ESME_RINVSRCTON, "permanent"),
        (Status.ESME_RINVSRCNPI, "permanent"),
        (Status.ESME_RINVDSTTON, "permanent"),
        (Status.ESME_RINVDSTNPI, "permanent"),
        (Status.ESME_RINVMSGLEN, "permanent"),
        (Status.ESME_RINVESMCLASS, "permanent"),
        (Status.ESME_RX_P_APPN, "permanent"),
        (Status.ESME_RINVOPTPARAMVAL, "permanent"),
        (Status.ESME_RSYSERR, "transient"),
        (Status.ESME_RSUBMITFAIL, "transient"),
        (Status.ESME_RX_T_APPN, "transient"),
        (Status.ESME_RINVBNDSTS, "transient"),
        (Status.ESME_RUNKNOWNERR, "transient"),
        (0x400, "transient"),
        (0xFFFFFFFF, "transient"),
    ],
)
def test_classify_submit_error(status: int, kind: str) -> None:
    assert classify_submit_error(status) == kind


# ---------------------------------------------------------------------------
# GSM 03.38 7-bit packing
# ---------------------------------------------------------------------------


def test_pack_gsm7_known_vectors() -> None:
    assert pack_gsm7(b"hello") == h("e8 32 9b fd 06")
    assert pack_gsm7(encode_gsm7("hello")) == h("e8 32 9b fd 06")
    # Eight septets fill exactly seven octets (3GPP TS 23.038 example "12345678").
    assert pack_gsm7(b"12345678") == h("31 d9 8c 56 b3 dd 70")
    assert pack_gsm7(b"") == b""
    # One fill bit shifts the whole stream left by one: e8329bfd06 * 2, little-endian.
    assert pack_gsm7(b"hello", fill_bits=1) == h("d0 65 36 fb 0d")


def test_fill_bits_after_udh() -> None:
    assert gsm7_fill_bits(6) == 1  # 8-bit reference concat UDH: 48 bits -> 49 = 7 septets
    assert gsm7_fill_bits(7) == 0  # 16-bit reference: 56 bits = 8 septets
    assert gsm7_fill_bits(0) == 0
    udh = udh_concat(0x42, 2, 1)
    septets = encode_gsm7("Hello {world} €")
    packed = pack_gsm7(septets, fill_bits=gsm7_fill_bits(len(udh)))
    assert unpack_gsm7(packed, len(septets), fill_bits=1) == septets
    # Read as one septet stream, the user data is 7 septets of UDH + fill, then the text.
    user_data = udh + packed
    assert unpack_gsm7(user_data, 7 + len(septets))[7:] == septets


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_gsm7_round_trip(septets: bytes, fill_bits: int) -> None:
    packed = pack_gsm7(septets, fill_bits)
    assert len(packed) == -(-(fill_bits + 7 * len(septets)) // 8)
    assert unpack_gsm7(packed, len(septets), fill_bits) == septets


def test_gsm7_errors() -> None:
    with pytest.raises(ValueError):
        pack_gsm7(b"\x80")
    with pytest.raises(ValueError):
        pack_gsm7(b"a", fill_bits=7)
    with pytest.raises(ValueError):
        unpack_gsm7(h("e8 32 9b fd"), 5)  # 32 bits < 35
    with pytest.raises(ValueError):
        unpack_gsm7(b"", -1)
    assert unpack_gsm7(h("e8 32 9b fd 06 ff"), 5) == b"hello"  # extra octets ignored


# ---------------------------------------------------------------------------
# Concatenation UDH
# ---------------------------------------------------------------------------


def test_udh_concat_vectors() -> None:
    assert udh_concat(0x42, 3, 1) == h("05 00 03 42 03 01")
    assert udh_concat(0xFF, 255, 255) == h("05 00 03 ff ff ff")
    assert udh_concat(0x1234, 2, 2, ref16=True) == h("06 08 04 12 34 02 02")
    assert udh_concat(7, 1, 1, ref16=True) == h("06 08 04 00 07 01 01")


@pytest.mark.parametrize(
    ("ref", "total", "seq", "ref16"),
    [
        (256, 2, 1, False),
        (-1, 2, 1, False),
        (0x10000, 2, 1, True),
        (1, 0, 0, False),
        (1, 256, 1, False),
        (1, 2, 0, False),
        (1, 2, 3, False),
    ],
)
def test_udh_concat_rejects_out_of_range(ref: int, total: int, seq: int, ref16: bool) -> None:
    with pytest.raises(ValueError):
        udh_concat(ref, total, seq, ref16)


# ---------------------------------------------------------------------------
# SMPP times
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "000000000000000R"),
        (59, "000000000059000R"),
        (3600, "000000010000000R"),
        (86400, "000001000000000R"),
        (2 * 86400 + 3661, "000002010101000R"),
        (99 * 86400, "000099000000000R"),
        (100 * 86400, "000310000000000R"),  # 3 months of 30 days + 10 days
        (400 * 86400, "010105000000000R"),  # 1 year of 365 days + 1 month + 5 days
    ],
)
def test_format_relative_validity(seconds: int, text: str) -> None:
    assert format_relative_validity(seconds) == text
    assert parse_relative_time(text) == timedelta(seconds=seconds)


@given(st.integers(0, 99 * 365 * 86400))
def test_relative_time_round_trip(seconds: int) -> None:
    text = format_relative_validity(seconds)
    assert len(text) == 16
    assert parse_relative_time(text).total_seconds() == seconds
    assert parse_smpp_time(text) == timedelta(seconds=seconds)


def test_relative_time_errors() -> None:
    with pytest.raises(ValueError):
        format_relative_validity(-1)
    with pytest.raises(ValueError):
        format_relative_validity(100 * 365 * 86400)
    for bad in ("000001000000000", "00000100000000xR", "000001000000000+"):
        with pytest.raises(ValueError):
            parse_relative_time(bad)


def test_format_absolute_time() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert format_absolute_time(datetime(2024, 5, 17, 13, 45, 30, 600000, plus2)) == (
        "240517134530608+"
    )
    minus530 = timezone(-timedelta(hours=5, minutes=30))
    assert format_absolute_time(datetime(2031, 12, 31, 23, 59, 59, tzinfo=minus530)) == (
        "311231235959022-"
    )
    assert format_absolute_time(datetime(2024, 1, 1, tzinfo=UTC)) == "240101000000000+"
    # An offset that is not whole quarter hours is written in UTC.
    odd = timezone(timedelta(minutes=7))
    assert format_absolute_time(datetime(2024, 1, 1, 0, 7, tzinfo=odd)) == "240101000000000+"
    with pytest.raises(ValueError):
        format_absolute_time(datetime(2024, 1, 1))  # naive
    with pytest.raises(ValueError):
        format_absolute_time(datetime(1999, 1, 1, tzinfo=UTC))


def test_parse_absolute_time() -> None:
    moment = parse_absolute_time("240517134530608+")
    assert moment == datetime(2024, 5, 17, 11, 45, 30, 600000, UTC)
    assert moment.utcoffset() == timedelta(hours=2)
    assert parse_absolute_time("311231235959022-").utcoffset() == -timedelta(hours=5, minutes=30)
    assert parse_smpp_time("240101000000000+") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_smpp_time("") is None
    for bad in ("2405171345306", "240517134530608R+", "241317134530608+", "24051713453060x+"):
        with pytest.raises(ValueError):
            parse_smpp_time(bad)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(-48, 48),
)
def test_absolute_time_round_trip(naive: datetime, quarters: int) -> None:
    moment = naive.replace(
        microsecond=naive.microsecond // 100_000 * 100_000,
        tzinfo=timezone(timedelta(minutes=15 * quarters)),
    )
    text = format_absolute_time(moment)
    assert len(text) == 16
    parsed = parse_absolute_time(text)
    assert parsed == moment
    assert parsed.utcoffset() == moment.utcoffset()
