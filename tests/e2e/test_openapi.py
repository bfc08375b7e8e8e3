"""``GET /openapi.json``: a valid OpenAPI 3.1 document whose schemas describe the gateway.

The schemas are checked three ways: against the OpenAPI 3.1 meta-schema; against
what the gateway really does (its answers validate, the requests the schema
accepts are accepted, the ones it refuses are refused with the right code); and
by schemathesis, which generates requests (valid and invalid) from the served
document and checks every answer against it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from roxgate.api.app import create_app
from roxgate.api.openapi import document, json_schema
from roxgate.config import Settings
from roxgate.report.bodies import MessageFacts, receipt_body, reply_body
from roxgate.rox.codes import Result, RoxError
from roxgate.rox.request import _int_like, parse_messages
from tests.conftest import PASSWORD, Env, Server, request_body, seed_accounts

BASE = "urn:roxgate:openapi"


@pytest.fixture(scope="module")
def doc(gw: Env) -> dict[str, Any]:
    response = gw.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A 2020-12 validator of ``#/components/schemas/<name>`` of the served document."""
    registry = Registry().with_resource(
        BASE, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{BASE}#/components/schemas/{name}"}, registry=registry
    )


def errors(doc: dict[str, Any], name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(doc, name).iter_errors(instance)
    ]


# --- the document ------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(gw: Env, doc: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(doc).validate()
    assert doc["openapi"].startswith("3.1.")
    assert doc["servers"] == [{"url": "/", "description": doc["servers"][0]["description"]}]
    assert set(doc["paths"]) == {"/smsapi/send", "/healthz"}
    assert set(doc["webhooks"]) == {"receipt", "reply"}
    send = doc["paths"]["/smsapi/send"]["post"]
    assert [p["$ref"] for p in send["parameters"]] == ["#/components/parameters/Idempotency-Key"]
    assert list(send["responses"]) == ["200"]  # always HTTP 200
    for hook in doc["webhooks"].values():
        names = {p["$ref"].rsplit("/", 1)[1] for p in hook["post"]["parameters"]}
        assert names == {"X-Rox-Timestamp", "X-Rox-Signature"}
    # Built once and served as is; the package's copy is the same document.
    again = gw.client.get("/openapi.json")
    assert again.content == gw.client.get("/openapi.json").content
    assert orjson.loads(again.content) == document()


def test_result_codes_are_the_spec_table(doc: dict[str, Any]) -> None:
    codes = doc["components"]["schemas"]["ResultCode"]
    listed = {c.value for c in Result} | {"2003"}  # 2003: reserved, never returned
    assert set(codes["enum"]) == listed
    assert len(codes["x-enum-descriptions"]) == len(codes["enum"]) == len(codes["x-enum-varnames"])
    named = dict(zip(codes["enum"], codes["x-enum-varnames"], strict=True))
    assert all(named[c.value] == c.name for c in Result)


def test_routes_of_each_role() -> None:
    def paths(role: Any) -> set[str]:
        return {r.path for r in create_app(Settings(), role).routes}  # type: ignore[attr-defined]

    assert {"/openapi.json", "/smsapi/send"} <= paths("all")
    assert {"/openapi.json", "/smsapi/send"} <= paths("api")
    assert not {"/openapi.json", "/smsapi/send"} & paths("worker")


def test_every_example_validates(doc: dict[str, Any]) -> None:
    def media(operation: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        yield operation["requestBody"]["content"]["application/json"], doc
        for answer in operation["responses"].values():
            if "content" in answer:
                yield answer["content"]["application/json"], doc

    operations = [doc["paths"]["/smsapi/send"]["post"]] + [
        hook["post"] for hook in doc["webhooks"].values()
    ]
    seen = 0
    for operation in operations:
        for content, _ in media(operation):
            name = content["schema"]["$ref"].rsplit("/", 1)[1]
            for example in content.get("examples", {}).values():
                assert errors(doc, name, example["value"]) == [], (name, example)
                seen += 1
    assert seen >= 7


# --- requests: the seed, and the schema against the parser ------------------------


def seed_request() -> dict[str, Any]:
    """The ROX description's request, all 500 recipients (its comments removed)."""
    names = {1: "MyFirstCustomers", 2: "MySecondCustomers", 500: "MyFiveHundredthCustomers"}
    messages: dict[str, Any] = {
        "ReceiptFlag": 1,
        "ReceiptCallbackURL": "http://www.your_domain.com/Receipt",
        "ReplyType": "H",
        "ReplyCallbackURL": "http://www.your_domain.com/Reply",
        "TimeZoneOffset": -600,
        "SendLater": "01-Jan-2030 00:00:01",
        "Count": 500,
        "GlobalText": "When the same message text is to be sent to all recipients",
    }
    for i in range(1, 501):
        who = names.get(i, f"MyCustomer{i}s")
        messages[str(i)] = {
            "DestTn": f"+61407555{i:03d}",
            "DestName": f"{who}Name",
            "DestEmail": f"{who}Email",
            "SMSText": "When you wish to taylor individual messages to each recipient.",
        }
    return {
        "Name": "ROX_API_Request",
        "Version": 1.1,
        "Product": "YourProductName",
        "Sender": {
            "AccountId": "CI00000001",
            "Username": "user@your_domain.com",
            "Password": "myPassword",
        },
        "Messages": messages,
    }


def test_seed_request_validates(doc: dict[str, Any]) -> None:
    assert errors(doc, "ROX_API_Request", seed_request()) == []
    # The package's standalone schema says the same.
    jsonschema.Draft202012Validator(json_schema("ROX_API_Request")).validate(seed_request())


def mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return body


DELETE = object()

# What the schema refuses, and the gateway too, with this code.
REFUSED = [
    ("Name", "ROX_API_Response", "2012"),
    ("Name", DELETE, "2012"),
    ("Version", 1.0, "2013"),
    ("Version", "1.10", "2013"),
    ("Version", DELETE, "2013"),
    ("Sender.Password", "", "2001"),
    ("Sender.Username", DELETE, "2001"),
    ("Product", "p" * 101, "2026"),
    ("Product", 7, "2026"),
    ("Messages", [], "2014"),
    ("Messages.Count", 0, "2016"),
    ("Messages.Count", 501, "2016"),
    ("Messages.Count", "one", "2015"),
    ("Messages.Count", 1.5, "2015"),
    ("Messages.Count", True, "2015"),
    ("Messages.Count", DELETE, "2015"),
    ("Messages.01", {"DestTn": "+61407555001", "SMSText": "x"}, "2015"),
    ("Messages.1", "not an object", "2017"),
    ("Messages.ReceiptFlag", 3, "2018"),
    ("Messages.ReceiptFlag", "-1", "2018"),
    ("Messages.ReceiptFlag", True, "2018"),
    ("Messages.ReceiptCallbackURL", "ftp://example.com/r", "2019"),
    ("Messages.ReceiptCallbackURL", "/relative", "2019"),
    ("Messages.ReceiptCallbackURL", "https://exa mple.com/", "2019"),
    ("Messages.ReceiptCallbackURL", "https://example.com:99999/", "2019"),
    ("Messages.ReplyType", "X", "2020"),
    ("Messages.ReplyType", " ", "2020"),
    ("Messages.ReplyType", 1, "2020"),
    ("Messages.ReplyCallbackURL", "mailto:me@example.com", "2021"),
    ("Messages.TimeZoneOffset", 721, "2022"),
    ("Messages.TimeZoneOffset", "-841", "2022"),
    ("Messages.TimeZoneOffset", 1.5, "2022"),
    ("Messages.SendLater", "tomorrow", "2023"),
    ("Messages.SendLater", "01-Foo-2026 10:00:00", "2023"),
    ("Messages.SendLater", 20300101, "2023"),
]

# What the schema accepts, and the gateway answers with 0000 (wire forms clients send).
ACCEPTED = [
    ("Version", "1.1"),
    ("Product", None),
    ("Product", DELETE),
    ("Product", "p" * 100),
    ("Unknown", {"any": "thing"}),
    ("Messages.Count", "1"),
    ("Messages.Count", " +001 "),
    ("Messages.Count", 1.0),
    ("Messages.Comment", "unknown non-numeric keys are ignored"),
    ("Messages.ReceiptFlag", "2"),
    ("Messages.ReceiptFlag", None),
    ("Messages.ReceiptCallbackURL", "https://user@example.com:8443/r?x=1#f"),
    ("Messages.ReceiptCallbackURL", ""),
    ("Messages.ReplyType", "h"),
    ("Messages.ReplyType", " B "),
    ("Messages.ReplyType", None),
    ("Messages.ReplyType", ""),
    ("Messages.TimeZoneOffset", "-600"),
    ("Messages.TimeZoneOffset", -840),
    ("Messages.TimeZoneOffset", None),
    ("Messages.SendLater", "24-dec-2026 09:00:00"),
    ("Messages.SendLater", "2026-12-24T09:00:00+10:00"),
    ("Messages.SendLater", "2026-12-24 09:00"),
    ("Messages.SendLater", "01-Jan-2020 00:00:00"),  # in the past: now
    ("Messages.SendLater", "  "),
    ("Messages.GlobalText", "for everyone"),
    ("Messages.1.DestTn", "0407 555 001"),
    ("Messages.1.DestName", None),
    ("Messages.1.DestEmail", 42),
]


@pytest.mark.parametrize(("path", "value", "code"), REFUSED)
def test_what_the_schema_refuses_the_gateway_refuses(
    gw: Env, doc: dict[str, Any], path: str, value: Any, code: str
) -> None:
    body = mutate(request_body(), path, value)
    assert errors(doc, "ROX_API_Request", body) != [], body
    answer = gw.post(body)
    assert answer["Result"] == code, answer
    assert errors(doc, "ROX_API_Response", answer) == []


@pytest.mark.parametrize(("path", "value"), ACCEPTED)
def test_what_the_schema_accepts_the_gateway_accepts(
    gw: Env, doc: dict[str, Any], path: str, value: Any
) -> None:
    body = mutate(request_body(), path, value)
    assert errors(doc, "ROX_API_Request", body) == [], body
    answer = gw.post(body)
    assert answer["Result"] == "0000", answer
    assert answer["Messages"]["1"]["Result"] == "0000", answer
    assert errors(doc, "ROX_API_Response", answer) == []


def test_recipient_level_problems_are_schema_errors_too(doc: dict[str, Any]) -> None:
    # The gateway answers 0000 and rejects the recipient; the schema says what is wrong.
    for recipient in ({"SMSText": "x"}, {"DestTn": "+61407555001"}, {"DestTn": " "}):
        assert errors(doc, "ROX_API_Request", request_body([recipient])) != [], recipient
    with_global = request_body([{"DestTn": "+61407555001"}], GlobalText="for all")
    assert errors(doc, "ROX_API_Request", with_global) == []


def gateway_code(messages: dict[str, Any]) -> str:
    """The code ``parse_messages`` gives one recipient's Messages (0000 when accepted)."""
    try:
        parse_messages(
            {"Messages": messages},
            region="AU",
            default_tz_offset=0,
            allowed_countries=None,
            max_parts=10,
            allow_nets=(),
            now=datetime.now(UTC),
        )
    except RoxError as err:
        return err.code.value
    return "0000"


int_like_text = st.one_of(
    st.text(alphabet=" \t+-0123456789", max_size=12),
    st.integers(min_value=-1000, max_value=1000).map(str),
    st.integers(min_value=-1000, max_value=1000).map(lambda n: f" {n:+05d} "),
)
int_like_value = st.one_of(
    int_like_text,
    st.integers(min_value=-2000, max_value=2000),
    st.floats(min_value=-2000, max_value=2000),
    st.booleans(),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(value=int_like_value)
def test_numeric_fields_match_the_parser(doc: dict[str, Any], value: Any) -> None:
    # Count: exactly the values the parser reads as 1…500.
    count = _int_like(value)
    count_ok = count is not None and 1 <= count <= 500
    assert (errors(doc, "ROX_API_Request_Messages", {"Count": value, "GlobalText": "x"}) == []) == (
        count_ok
    ), value
    one = {"Count": 1, "1": {"DestTn": "+61407555001", "SMSText": "x"}}
    for key, code in (("ReceiptFlag", "2018"), ("TimeZoneOffset", "2022")):
        messages = {**one, key: value}
        schema_ok = errors(doc, "ROX_API_Request_Messages", messages) == []
        assert schema_ok == (gateway_code(messages) != code), (key, value)


url_text = st.one_of(
    st.text(alphabet="hHtTpPsS:/[]@?#.%-_ 0123456789abcdefxyz\t\x00", max_size=30),
    st.from_regex(r"\A(https?|HTTP|ftp)://[a-z0-9.:@\[\]-]{0,20}(/[a-z ]{0,5})?\Z"),
)


@settings(max_examples=400, deadline=None)
@given(url=url_text)
def test_callback_urls_the_schema_accepts_are_accepted(doc: dict[str, Any], url: str) -> None:
    messages = {"Count": 1, "1": {"DestTn": "+61407555001", "SMSText": "x"}}
    messages["ReceiptCallbackURL"] = url
    if errors(doc, "ROX_API_Request_Messages", messages) == []:
        try:
            parse_messages(
                {"Messages": messages},
                region="AU",
                default_tz_offset=0,
                allowed_countries=None,
                max_parts=10,
                allow_nets=(),
                now=datetime.now(UTC),
            )
        except RoxError as err:  # only a literal internal address is refused by its text
            assert "internal address" in err.text, (url, err.text)
    else:
        assert gateway_code(messages) == "2019", url


# --- the gateway's answers -----------------------------------------------------------


def test_real_answers_validate(gw: Env, doc: dict[str, Any]) -> None:
    def check(answer: dict[str, Any]) -> dict[str, Any]:
        assert errors(doc, "ROX_API_Response", answer) == [], answer
        return answer

    mixed = check(
        gw.post(
            request_body(
                [
                    {"DestTn": "+61407555001", "SMSText": "queued"},
                    {"DestTn": "12", "SMSText": "not a number"},
                    {"DestTn": "+61407555999", "SMSText": "blocked"},
                    {"DestTn": "+61407555002"},
                    {"DestTn": {"not": "a string"}, "SMSText": "x"},
                ]
            )
        )
    )
    assert mixed["ResultText"] == "Queued 1 of 5"
    assert [mixed["Messages"][str(i)]["Result"] for i in range(1, 6)] == [
        "0000",
        "2032",
        "2037",
        "2033",
        "2032",
    ]
    assert mixed["Messages"]["5"]["DestTn"] is None

    for body in (
        b"not json",
        b"[1, 2]",
        orjson.dumps(request_body(account="CI99999999")),  # 2002 without a lock-out
        orjson.dumps(mutate(request_body(), "Messages.Count", 2)),
        orjson.dumps(mutate(request_body(), "Version", "9" * 5000)),  # ResultText ≤ 4000
        b"x" * (4 * 1024 * 1024 + 1),
    ):
        answer = check(gw.post(body))
        assert answer["Result"] != "0000" and answer["Messages"]["Count"] == 0

    key = {"Idempotency-Key": f"openapi-{datetime.now(UTC).timestamp()}"}
    first = check(gw.post(request_body(), headers=key))
    replay = check(gw.post(request_body(), headers=key))
    assert replay == first and first["Result"] == "0000"
    conflict = check(gw.post(request_body(Product="other"), headers=key))  # type: ignore[arg-type]
    assert conflict["Result"] == "2027"


def test_schema_catches_a_wrong_answer(doc: dict[str, Any]) -> None:
    good = {
        "Name": "ROX_API_Response",
        "Version": 1.1,
        "Result": "2002",
        "ResultText": "Authentication failed",
        "Messages": {"Count": 0, "RequestId": "01a211e4-6d1e-7c2f-a0b3-4c5d6e7f8091"},
    }
    assert errors(doc, "ROX_API_Response", good) == []
    recipient = {
        "SMSId": None,
        "DestTn": "+61407555001",
        "Result": "2032",
        "ResultText": "x",
        "Timestamp": "01-Jan-2030 00:00:01 (UTC)",
    }
    for path, value in (
        ("Result", 2002),  # codes are 4-character strings
        ("Result", "200"),
        ("ResultText", "x" * 4001),
        ("Messages.Count", 1),  # an error lists no recipients
        ("Messages.1", recipient),
        ("Messages.RequestId", None),
        ("Version", "1.1"),
        ("Extra", 1),
    ):
        assert errors(
            doc, "ROX_API_Response", mutate(orjson.loads(orjson.dumps(good)), path, value)
        )
    queued = {**recipient, "Result": "0000"}  # queued without an SMSId
    success = {**good, "Result": "0000", "ResultText": "Success"}
    success["Messages"] = {**good["Messages"], "Count": 1, "1": queued}
    assert errors(doc, "ROX_API_Response", success)


# --- callbacks -----------------------------------------------------------------------


def facts() -> MessageFacts:
    return MessageFacts(
        sms_id="01a21768-fdde-76de-98a6-816af1b48b79",
        request_id="01a21768-fd52-70da-87f9-3226e77b7dc2",
        account_id="CI00000001",
        username="user@your_domain.com",
        dest_tn="+61407559992",
        dest_name="Ann",
        dest_email=None,
        text="Hi Ann, see you at 10:00",
        product=None,
    )


def test_callback_bodies_validate(doc: dict[str, Any]) -> None:
    at = 1_795_689_086_000
    for result, text in (("0000", "Delivered"), ("2060", "Carrier reported UNDELIV"), ("2064", "")):
        body = orjson.loads(receipt_body(facts(), result, text, at))
        assert errors(doc, "ROX_API_Receipt", body) == [], body
    assert errors(doc, "ROX_API_Receipt", orjson.loads(receipt_body(facts(), "2032", "x", at)))
    reply = orjson.loads(reply_body(facts(), "+61407559992", "Thanks, see you then", at))
    assert errors(doc, "ROX_API_Reply", reply) == []
    assert reply["Name"] == "ROX_API_Reply"
    # The original ROX description's name for it is accepted as well.
    assert errors(doc, "ROX_API_Reply", {**reply, "Name": "ROX_API_Reply_Response"}) == []
    assert errors(doc, "ROX_API_Reply", {**reply, "Name": "ROX_API_Receipt"})
    # The standalone schemas of the package agree.
    jsonschema.Draft202012Validator(json_schema("ROX_API_Reply")).validate(reply)

    for name in ("ROX_API_Receipt_Response", "ROX_API_Reply_Response"):
        seed_answer = {"Name": name, "Version": 1.1, "Result": "0000", "ResultText": "OK"}
        assert errors(doc, name, seed_answer) == []
        assert errors(doc, name, {}) == []  # no Result: delivered

    # The signature headers as the gateway writes them.
    stamp = "1795689086"
    signed = stamp.encode() + b"." + receipt_body(facts(), "0000", "", 0)
    mac = hmac.new(b"secret", signed, hashlib.sha256)
    params = doc["components"]["parameters"]
    for name, value in (
        ("X-Rox-Timestamp", stamp),
        ("X-Rox-Signature", "sha256=" + mac.hexdigest()),
    ):
        jsonschema.validate(value, params[name]["schema"])


# --- schemathesis ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_gw(engine_factory: Any) -> Iterator[Env]:
    """A server of its own: generated requests never touch the shared one's users.

    Its simulator sends no receipt while the test runs, so no callback goes to the
    generated URLs.
    """
    path, engine = engine_factory("openapi_fuzz")
    seed_accounts(engine)
    server = Server(path, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "3600"})
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


# Request-level codes the request schema cannot rule out: a literal internal
# callback address (2019/2021), a date that does not exist or is too far ahead
# (2023/2024), a reused Idempotency-Key (2027).
BEYOND_THE_SCHEMA = {"0000", "2019", "2021", "2023", "2024", "2027"}


def as_real_sender(body: dict[str, Any]) -> int:
    """Give a generated body the seeded user's credentials and recipients "1"…"N"
    with the right Count (what JSON Schema cannot say); returns N."""
    body["Sender"] = {
        "AccountId": "CI00000001",
        "Username": "user@example.com",
        "Password": PASSWORD,
    }
    messages = body["Messages"]
    recipients = [messages.pop(k) for k in list(messages) if k.isascii() and k.isdigit()]
    if not recipients:
        recipients = [{"DestTn": "+61407555001", "SMSText": "added by the test"}]
    for i, recipient in enumerate(recipients, start=1):
        messages[str(i)] = recipient
    if "Count" in messages:  # (a negative case may lack it: keep that)
        count = messages["Count"]
        messages["Count"] = str(len(recipients)) if isinstance(count, str) else len(recipients)
    return len(recipients)


def test_schemathesis_send(fuzz_gw: Env) -> None:
    schema = schemathesis.openapi.from_url(fuzz_gw.server.url + "/openapi.json", timeout=10)
    operation = schema["/smsapi/send"]["POST"]
    response_schema = validator(fuzz_gw.client.get("/openapi.json").json(), "ROX_API_Response")
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    seen: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, real=st.booleans())
    def run(case: schemathesis.Case, real: bool) -> None:
        body_mode = case.meta.components.get("body") if case.meta else None
        positive = body_mode is not None and body_mode.mode is GenerationMode.POSITIVE
        recipients = None
        if real and isinstance(case.body, dict) and isinstance(case.body.get("Messages"), dict):
            recipients = as_real_sender(case.body)
        response = case.call(timeout=30)
        case.validate_response(response, checks=checks)
        assert response.status_code == 200
        assert response.headers["content-type"] == ["application/json"]
        answer = response.json()
        response_schema.validate(answer)
        assert isinstance(answer["Result"], str) and len(answer["Result"]) == 4
        assert answer["Result"] not in ("2099", "2100"), answer
        seen[f"{'positive' if positive else 'negative'} {'real' if recipients else 'random'}"] += 1
        seen[answer["Result"]] += 1
        if positive and recipients is not None:
            # A valid request, by the schema, with good credentials: accepted.
            assert answer["Result"] in BEYOND_THE_SCHEMA, (case.body, answer)
            if answer["Result"] == "0000":
                assert answer["Messages"]["Count"] == recipients

    run()
    print(f"\nschemathesis {schemathesis.SCHEMATHESIS_VERSION}: {dict(seen)}")
    assert seen["positive real"] and seen["negative real"] and seen["0000"]
    assert not fuzz_gw.server.proc or fuzz_gw.server.proc.poll() is None
    assert "Traceback" not in fuzz_gw.server.logs()
