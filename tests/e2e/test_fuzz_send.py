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
