"""Hostile input to /smsapi/send: every answer is HTTP 200 with a ROX_API_Response."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Env, request_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = [
    ("Name",), ("Version",), ("Product",), ("Sender",), ("Sender", "AccountId"),
    ("Sender", "Password"), ("Messages",), ("Messages", "Count"), ("Messages", "ReceiptFlag"),
    ("Messages", "ReceiptCallbackURL"), ("Messages", "ReplyType"), ("Messages", "ReplyCallbackURL"),
    ("Messages", "TimeZoneOffset"), ("Messages", "SendLater"), ("Messages", "GlobalText"),
    ("Messages", "1"), ("Messages", "1", "DestTn"), ("Messages", "1", "SMSText"),
    ("Messages", "1", "DestName"), ("Messages", "1", "DestEmail"),
]  # fmt: skip


def check(env: Env, body: bytes) -> dict[str, Any]:
    response = env.client.post("/smsapi/send", content=body)
    assert response.status_code == 200
    data = response.json()
    assert data["Name"] == "ROX_API_Response"
    assert isinstance(data["Result"], str) and len(data["Result"]) == 4
    assert data["Result"] != "2099", data  # malformed input is never an internal error
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_value_in_any_field(gw: Env, field: tuple[str, ...], value: Any) -> None:
    body = request_body()
    target = body
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    data = check(gw, json.dumps(body).encode())  # stdlib: big integers too
    if data["Result"] == "0000":
        assert data["Messages"]["Count"] == 1


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300))
def test_random_bytes(gw: Env, raw: bytes) -> None:
    check(gw, raw)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=8))
def test_truncated_and_corrupted_bodies(gw: Env, cut: int, junk: bytes) -> None:
    good = orjson.dumps(request_body())
    check(gw, good[:cut] + junk + good[cut + len(junk) :])


def test_deep_nesting_duplicate_keys_and_control_characters(gw: Env) -> None:
    deep = b'{"Name": "ROX_API_Request", "Version": 1.1, "X": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert check(gw, deep)["Result"] in ("2001", "2011")
    dup = b'{"Name": "ROX_API_Request", "Name": "Other", "Version": 1.1}'
    assert check(gw, dup)["Result"] == "2012"  # the last duplicate wins, as in most parsers
    body = request_body([{"DestTn": "+61407555001", "SMSText": "line\x00one\x1b\x07"}])
    assert check(gw, orjson.dumps(body))["Result"] == "0000"
    lone_surrogate = b'{"Name": "ROX_API_Request", "Version": 1.1, "Product": "\\ud800"}'
    assert check(gw, lone_surrogate)["Result"] == "2011"


def test_invalid_utf8_huge_values_numbers_as_strings_and_boms(gw: Env) -> None:
    good = orjson.dumps(request_body())
    # Invalid UTF-8 inside a string, and an overlong encoding.
    assert check(gw, good.replace(b"Hello", b"Hel\xff\xfelo"))["Result"] == "2011"
    assert check(gw, good.replace(b"Hello", b"\xc0\xafHello"))["Result"] == "2011"
    # A BOM is tolerated; two BOMs, or a UTF-16 BOM, are not JSON.
    assert check(gw, b"\xef\xbb\xbf" + good)["Result"] == "0000"
    assert check(gw, b"\xef\xbb\xbf\xef\xbb\xbf" + good)["Result"] == "2011"
    assert check(gw, b"\xff\xfe" + good)["Result"] == "2011"
    # Numbers as strings where numbers belong (lenient where SPEC allows, else a code).
    as_strings = request_body(ReceiptFlag="1", TimeZoneOffset="-600")
    as_strings["Version"] = "1.1"
    assert check(gw, orjson.dumps(as_strings))["Result"] in ("0000", "2012", "2013", "2031")
    # Huge values: a 1 MB text, an enormous Count, a float out of every range.
    huge_text = request_body([{"DestTn": "+61407555001", "SMSText": "x" * 1_000_000}])
    assert check(gw, orjson.dumps(huge_text))["Result"] == "0000"  # per-recipient 2034
    data = check(gw, orjson.dumps(huge_text))
    assert data["Messages"]["1"]["Result"] == "2034"
    count = request_body()
    count["Messages"]["Count"] = 10**30
    assert check(gw, json.dumps(count).encode())["Result"] != "0000"
    big_float = orjson.dumps(request_body()).replace(b'"Version":1.1', b'"Version":1e999')
    assert check(gw, big_float)["Result"] != "0000"
    # Thousands of unknown keys are ignored, not a reason to fail.
    many = request_body()
    many.update({f"k{i}": i for i in range(20_000)})
    assert check(gw, orjson.dumps(many))["Result"] == "0000"
