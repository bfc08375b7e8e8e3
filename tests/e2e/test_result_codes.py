"""One case per result code that intake decides: HTTP 200, the code, and the storage effect."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import func, select

from roxgate.store.schema import messages, requests
from tests.conftest import PASSWORD, Env, request_body


def stored(env: Env) -> tuple[int, int]:
    with env.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(requests)).scalar_one(),
            conn.execute(select(func.count()).select_from(messages)).scalar_one(),
        )


def with_changes(**changes: Any) -> bytes | dict[str, Any]:
    """A valid request with the named parts replaced (None deletes the key)."""
    body = request_body()
    for path, value in changes.items():
        target = body
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return body


_DELETE = object()


def _two_recipients_count_three() -> dict[str, Any]:
    body = request_body([{"DestTn": "+61407555001", "SMSText": "a"}] * 2)
    body["Messages"]["Count"] = 3
    return body


def _gap_in_keys() -> dict[str, Any]:
    body = request_body([{"DestTn": "+61407555001", "SMSText": "a"}] * 2)
    body["Messages"]["3"] = body["Messages"].pop("2")
    return body


def _recipient_not_object() -> dict[str, Any]:
    body = request_body([{"DestTn": "+61407555001", "SMSText": "a"}] * 2)
    body["Messages"]["2"] = "+61407555002"
    return body


def _count_501() -> dict[str, Any]:
    return request_body([{"DestTn": "+61407555001", "SMSText": "a"}] * 501)


REQUEST_LEVEL: list[tuple[str, str, Any]] = [
    ("2001", "no Sender", with_changes(Sender=_DELETE)),
    ("2001", "no Password", with_changes(Sender__Password=_DELETE)),
    ("2001", "empty Username", with_changes(Sender__Username="")),
    ("2002", "wrong password", request_body(password="wrong password!")),
    ("2002", "unknown account", request_body(account="CI09999999")),
    ("2002", "unknown user", request_body(username="nobody@example.com")),
    ("2002", "user of another account", request_body(account="CI00000002", username="x@y.z")),
    ("2004", "account suspended", request_body(account="CI00000002")),
    ("2005", "user disabled", request_body(username="disabled@example.com")),
    ("2007", "source IP not allowed", request_body(account="CI00000004")),
    ("2008", "API not enabled", request_body(account="CI00000003")),
    ("2011", "not JSON", b'{"Name": "ROX_API_Request",'),
    ("2011", "JSON array", b"[1, 2, 3]"),
    ("2011", "empty body", b""),
    ("2011", "invalid UTF-8", b'{"Name": "\xff\xfe"}'),
    ("2012", "wrong Name", with_changes(Name="ROX_API_Receipt")),
    ("2012", "no Name", with_changes(Name=_DELETE)),
    ("2013", "no Version", with_changes(Version=_DELETE)),
    ("2013", "Version 2.0", with_changes(Version=2.0)),
    ("2013", "Version true", with_changes(Version=True)),
    ("2014", "no Messages", with_changes(Messages=_DELETE)),
    ("2014", "Messages a list", with_changes(Messages=[1])),
    ("2015", "no Count", with_changes(Messages__Count=_DELETE)),
    ("2015", "Count not a number", with_changes(Messages__Count="many")),
    ("2015", "Count 1.5", with_changes(Messages__Count=1.5)),
    ("2015", "Count != recipients", _two_recipients_count_three()),
    ("2016", "Count 0", with_changes(Messages__Count=0)),
    ("2016", "Count 501", _count_501()),
    ("2017", "gap in keys", _gap_in_keys()),
    ("2017", "recipient not an object", _recipient_not_object()),
    ("2018", "ReceiptFlag 3", with_changes(Messages__ReceiptFlag=3)),
    ("2018", "ReceiptFlag text", with_changes(Messages__ReceiptFlag="yes")),
    (
        "2019",
        "ReceiptCallbackURL ftp",
        with_changes(Messages__ReceiptCallbackURL="ftp://x.example/"),
    ),
    ("2019", "ReceiptCallbackURL relative", with_changes(Messages__ReceiptCallbackURL="/receipt")),
    (
        "2019",
        "ReceiptCallbackURL loopback",
        with_changes(Messages__ReceiptCallbackURL="http://127.0.0.1:9/r"),
    ),
    (
        "2019",
        "ReceiptCallbackURL metadata service",
        with_changes(Messages__ReceiptCallbackURL="http://169.254.169.254/latest"),
    ),
    (
        "2019",
        "ReceiptCallbackURL decimal loopback",
        with_changes(Messages__ReceiptCallbackURL="http://2130706433/r"),
    ),
    (
        "2019",
        "ReceiptCallbackURL mapped IPv6",
        with_changes(Messages__ReceiptCallbackURL="http://[::ffff:10.0.0.1]/r"),
    ),
    ("2020", "ReplyType X", with_changes(Messages__ReplyType="X")),
    ("2020", "ReplyType number", with_changes(Messages__ReplyType=1)),
    ("2020", "ReplyType long s", with_changes(Messages__ReplyType="\u017f")),  # upper() is S
    ("2019", "ReceiptCallbackURL dot host", with_changes(Messages__ReceiptCallbackURL="http://./")),
    (
        "2021",
        "ReplyCallbackURL private",
        with_changes(Messages__ReplyCallbackURL="https://10.1.2.3/"),
    ),
    (
        "2021",
        "ReplyCallbackURL bad port",
        with_changes(Messages__ReplyCallbackURL="http://a.b:99999/"),
    ),
    ("2022", "TimeZoneOffset 900", with_changes(Messages__TimeZoneOffset=900)),
    ("2022", "TimeZoneOffset -841", with_changes(Messages__TimeZoneOffset=-841)),
    ("2022", "TimeZoneOffset text", with_changes(Messages__TimeZoneOffset="AEST")),
    ("2023", "SendLater garbage", with_changes(Messages__SendLater="tomorrow")),
    ("2023", "SendLater 31-Feb", with_changes(Messages__SendLater="31-Feb-2030 00:00:00")),
    ("2023", "SendLater number", with_changes(Messages__SendLater=1893456000)),
    ("2023", "SendLater bad month", with_changes(Messages__SendLater="01-Foo-2030 00:00:01")),
    ("2024", "SendLater 2 years ahead", with_changes(Messages__SendLater="01-Jan-2099 00:00:00")),
    ("2026", "Product too long", with_changes(Product="x" * 101)),
    ("2026", "Product a number", with_changes(Product=42)),
]


@pytest.mark.parametrize(
    ("code", "body"),
    [(c, b) for c, _, b in REQUEST_LEVEL],
    ids=[f"{c}-{n}" for c, n, _ in REQUEST_LEVEL],
)
def test_request_level_code(gw: Env, code: str, body: Any) -> None:
    before = stored(gw)
    data = gw.post(copy.deepcopy(body) if isinstance(body, dict) else body)
    assert data["Name"] == "ROX_API_Response"
    assert data["Result"] == code, data
    assert data["ResultText"] and data["ResultText"] != "Success"
    assert data["Messages"]["Count"] == 0
    assert not any(k.isdigit() for k in data["Messages"])
    assert stored(gw) == before, "a request-level error stored something"


def test_2025_body_too_large(gw: Env) -> None:
    before = stored(gw)
    big = b'{"Name": "ROX_API_Request", "Pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    data = gw.post(big)
    assert data["Result"] == "2025"
    assert stored(gw) == before


def test_2025_body_too_large_streamed_without_length(gw: Env) -> None:
    """Chunked upload with no Content-Length: the limit is enforced while reading."""
    chunk = b"x" * 65536

    def body() -> Any:
        yield b'{"Name": "ROX_API_Request", "Pad": "'
        for _ in range(80):  # 5 MiB
            yield chunk
        yield b'"}'

    response = gw.client.post("/smsapi/send", content=body())
    assert response.status_code == 200
    assert response.json()["Result"] == "2025"


def test_2006_lock_after_five_failures(engine_factory: Any) -> None:
    # A private server: locking must not disturb the shared user.
    from tests.conftest import Server, seed_accounts

    path, engine = engine_factory("lock")
    seed_accounts(engine)
    server = Server(path)
    server.start()
    try:
        import httpx

        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            results = [env.post(request_body(password=f"wrong-{i}"))["Result"] for i in range(5)]
            assert results == ["2002"] * 4 + ["2006"]
            # Now even the right password is refused until the lock ends.
            before = stored(env)
            data = env.post(request_body(password=PASSWORD))
            assert data["Result"] == "2006"
            assert "locked" in data["ResultText"].lower()
            assert stored(env) == before
    finally:
        server.stop()


def test_2027_idempotency_key_reused_with_other_body(gw: Env) -> None:
    key = {"Idempotency-Key": "codes-2027"}
    first = gw.post(request_body(), headers=key)
    assert first["Result"] == "0000"
    before = stored(gw)
    other = request_body([{"DestTn": "+61407555002", "SMSText": "Other"}])
    data = gw.post(other, headers=key)
    assert data["Result"] == "2027"
    assert stored(gw) == before


def test_2040_insufficient_credit(gw: Env) -> None:
    # Account CI00000005 has 5 credits: 3 recipients x 2 parts = 6 > 5.
    before = stored(gw)
    text = "a" * 200  # 2 GSM parts
    body = request_body(
        [{"DestTn": f"+6140755500{i}", "SMSText": text} for i in range(3)], account="CI00000005"
    )
    data = gw.post(body)
    assert data["Result"] == "2040"
    assert "6" in data["ResultText"]
    assert stored(gw) == before


RECIPIENT_LEVEL: list[tuple[str, str, dict[str, Any]]] = [
    ("2031", "no DestTn", {"SMSText": "Hi"}),
    ("2031", "empty DestTn", {"DestTn": " ", "SMSText": "Hi"}),
    ("2032", "letters", {"DestTn": "call me", "SMSText": "Hi"}),
    ("2032", "too short", {"DestTn": "+6140", "SMSText": "Hi"}),
    ("2032", "unknown country code", {"DestTn": "+999123456789", "SMSText": "Hi"}),
    ("2032", "an object", {"DestTn": {"n": 1}, "SMSText": "Hi"}),
    ("2033", "no text", {"DestTn": "+61407555001"}),
    ("2033", "empty text", {"DestTn": "+61407555001", "SMSText": ""}),
    ("2033", "text not a string", {"DestTn": "+61407555001", "SMSText": ["Hi"]}),
    ("2034", "eleven GSM parts", {"DestTn": "+61407555001", "SMSText": "a" * (153 * 10 + 1)}),
    ("2034", "eleven UCS-2 parts", {"DestTn": "+61407555001", "SMSText": "й" * (67 * 10 + 1)}),
    ("2035", "opted out", {"DestTn": "+61407555998", "SMSText": "Hi"}),
    ("2037", "blocked", {"DestTn": "0407 555 999", "SMSText": "Hi"}),
]


@pytest.mark.parametrize(
    ("code", "recipient"),
    [(c, r) for c, _, r in RECIPIENT_LEVEL],
    ids=[f"{c}-{n}" for c, n, _ in RECIPIENT_LEVEL],
)
def test_recipient_level_code(gw: Env, code: str, recipient: dict[str, Any]) -> None:
    good = {"DestTn": "+61407555001", "SMSText": "Hello"}
    before = stored(gw)
    data = gw.post(request_body([good, recipient]))
    assert data["Result"] == "0000"
    assert data["ResultText"] == "Queued 1 of 2"
    bad = data["Messages"]["2"]
    assert bad["Result"] == code, bad
    assert bad["SMSId"] is None
    assert bad["ResultText"] and bad["ResultText"] != "Queued"
    assert data["Messages"]["1"]["Result"] == "0000"
    assert stored(gw) == (before[0] + 1, before[1] + 1), "exactly the good recipient is stored"


def test_2036_country_not_allowed(gw: Env) -> None:
    # CI00000005 may send to AU and NZ only.
    body = request_body(
        [
            {"DestTn": "+64211234567", "SMSText": "NZ"},
            {"DestTn": "+16502530000", "SMSText": "US"},
        ],
        account="CI00000005",
    )
    data = gw.post(body)
    assert data["Result"] == "0000"
    assert data["Messages"]["1"]["Result"] == "0000"
    assert data["Messages"]["2"]["Result"] == "2036"
    assert "US" in data["Messages"]["2"]["ResultText"]


def test_an_invalid_desttn_is_echoed_no_longer_than_a_number(gw: Env) -> None:
    data = gw.post(request_body([{"DestTn": "9" * 100_000, "SMSText": "Hi"}]))
    assert data["Messages"]["1"]["Result"] == "2032"
    assert data["Messages"]["1"]["DestTn"] == "9" * 64
