"""ROX result codes (SPEC.md §2). Listed codes never change meaning."""

from __future__ import annotations

from enum import StrEnum


class Result(StrEnum):
    OK = "0000"
    SENDER_MISSING = "2001"
    AUTH_FAILED = "2002"
    ACCOUNT_SUSPENDED = "2004"
    USER_DISABLED = "2005"
    USER_LOCKED = "2006"
    IP_NOT_ALLOWED = "2007"
    API_NOT_ENABLED = "2008"
    BAD_JSON = "2011"
    BAD_NAME = "2012"
    BAD_VERSION = "2013"
    MESSAGES_MISSING = "2014"
    BAD_COUNT = "2015"
    COUNT_OUT_OF_RANGE = "2016"
    BAD_RECIPIENT_KEYS = "2017"
    BAD_RECEIPT_FLAG = "2018"
    BAD_RECEIPT_URL = "2019"
    BAD_REPLY_TYPE = "2020"
    BAD_REPLY_URL = "2021"
    BAD_TZ_OFFSET = "2022"
    BAD_SEND_LATER = "2023"
    SEND_LATER_TOO_FAR = "2024"
    BODY_TOO_LARGE = "2025"
    BAD_PRODUCT = "2026"
    IDEMPOTENCY_CONFLICT = "2027"
    DEST_MISSING = "2031"
    DEST_INVALID = "2032"
    NO_TEXT = "2033"
    TEXT_TOO_LONG = "2034"
    OPTED_OUT = "2035"
    COUNTRY_NOT_ALLOWED = "2036"
    BLOCKED = "2037"
    NO_CREDIT = "2040"
    RATE_LIMITED = "2041"
    UNDELIVERABLE = "2060"
    EXPIRED = "2061"
    REJECTED = "2062"
    DELETED = "2063"
    UNKNOWN_STATE = "2064"
    SUBMIT_FAILED = "2065"
    CANCELLED = "2066"
    INTERNAL_ERROR = "2099"
    UNAVAILABLE = "2100"


class RoxError(Exception):
    """A request-level rejection: answered with this code and text, nothing stored."""

    def __init__(self, code: Result, text: str) -> None:
        super().__init__(f"{code.value} {text}")
        self.code = code
        self.text = text
