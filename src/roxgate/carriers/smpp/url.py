"""Carrier URLs: one string that says where an SMSC is and how to talk to it.

Form::

    smpp://SYSTEM_ID:PASSWORD@HOST[:PORT][?OPTION=VALUE&...]
    smpps://...                      (the same over TLS)

``SYSTEM_ID`` and ``PASSWORD`` are percent-decoded (write ``@`` as ``%40``, ``:`` in
the system id as ``%3A``...). ``PORT`` defaults to 2775, the port SMPP is usually
served on (SMPP has no registered port). Option values are percent-decoded too, but a
``+`` stays a ``+`` (``source=+61400000000``, ``bind=tx+rx``): this is not an HTML form.

Options (all optional; an unknown or repeated option is an error, so a typo does not
silently fall back to a default):

===================  ======================================================  =======
option               meaning                                                 default
===================  ======================================================  =======
source               sender address when the message names none              none
window               submit_sm awaiting their response at once, 1..1000      10
tps                  submit_sm per second, smoothed; 0 = unlimited           0
system_type          bind ``system_type`` (some SMSCs route on it), ≤ 12     ""
bind                 ``trx`` (one transceiver) or ``tx+rx`` (a transmitter   trx
                     and a receiver)
enquire_link         seconds of silence before probing the link              30
response_timeout     seconds to wait for any response (bind, submit, probe)  10
reconnect_min        first reconnect delay, seconds                          1
reconnect_max        cap of the exponential reconnect delay, seconds         60
concat               long messages: ``udh8``, ``udh16``, ``sar`` or          udh8
                     ``payload``
coding               ``0``: GSM 03.38 (data_coding 0, unpacked) when the     0
                     text allows, else UCS-2; ``8``: always UCS-2
registered_delivery  ``registered_delivery`` of each submit_sm, 0..255       1
validity             validity period in seconds (relative time)              none
tls_verify           check the SMSC's certificate and name (``smpps`` only)  true
source_ton           force the source TON (else chosen per address)          auto
source_npi           force the source NPI (else chosen per address)          auto
===================  ======================================================  =======

Every problem raises ``ValueError`` naming the option. The password never appears in
messages or in ``repr(CarrierConfig)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from roxgate.carriers.smpp.pdu import format_relative_validity

__all__ = ["DEFAULT_PORT", "BindMode", "CarrierConfig", "ConcatMode", "parse_carrier_url"]

DEFAULT_PORT: Final = 2775

BindMode = Literal["trx", "tx+rx"]
ConcatMode = Literal["udh8", "udh16", "sar", "payload"]

_BIND_MODES: Final[tuple[BindMode, ...]] = ("trx", "tx+rx")
_CONCAT_MODES: Final[tuple[ConcatMode, ...]] = ("udh8", "udh16", "sar", "payload")
_CODINGS: Final = (0, 8)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# SMPP 3.4 C-octet string sizes, NUL excluded (bind PDU, §4.1.1).
_MAX_SYSTEM_ID: Final = 15
_MAX_PASSWORD: Final = 8
_MAX_SYSTEM_TYPE: Final = 12
_MAX_SOURCE: Final = 20


@dataclass(frozen=True, slots=True)
class CarrierConfig:
    """Everything needed to bind to one SMSC (see the module doc for the options)."""

    host: str
    port: int
    system_id: str
    password: str
    tls: bool = False
    tls_verify: bool = True
    source: str | None = None
    window: int = 10
    tps: float = 0.0
    system_type: str = ""
    bind: BindMode = "trx"
    enquire_link: float = 30.0
    response_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    concat: ConcatMode = "udh8"
    coding: int = 0
    registered_delivery: int = 1
    validity: int | None = None
    source_ton: int | None = None
    source_npi: int | None = None

    def __repr__(self) -> str:
        # Configs end up in logs and tracebacks: never show the secret.
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'password' else repr(getattr(self, f.name))}"
            for f in fields(self)
        )
        return f"CarrierConfig({shown})"

    @property
    def url(self) -> str:
        """Where this config points, without credentials or options (for logs)."""
        scheme = "smpps" if self.tls else "smpp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


T = TypeVar("T")


def parse_carrier_url(url: str) -> CarrierConfig:
    """Parse an ``smpp://`` or ``smpps://`` carrier URL. Raises ``ValueError``."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("smpp", "smpps"):
        raise ValueError(f"carrier URL scheme must be smpp or smpps, not {parts.scheme!r}")
    tls = scheme == "smpps"
    if parts.fragment:
        raise ValueError("carrier URL must not have a #fragment")
    if parts.path not in ("", "/"):
        raise ValueError(f"carrier URL must not have a path ({parts.path!r})")
    host = parts.hostname
    if not host:
        raise ValueError("carrier URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("carrier URL port must be a number in 1..65535") from None
    if port == 0:
        raise ValueError("carrier URL port must be a number in 1..65535")
    if parts.username is None or parts.password is None:
        raise ValueError("carrier URL needs SYSTEM_ID:PASSWORD@ before the host")
    system_id = unquote(parts.username)
    password = unquote(parts.password)
    _check_cstring("system id", system_id, _MAX_SYSTEM_ID, required=True)
    # The password is validated without echoing it.
    _check_cstring("password", password, _MAX_PASSWORD, secret=True)

    options = _split_query(parts.query)
    opt = _Options(options)
    source = opt.take("source", _source)
    system_type = opt.take("system_type", lambda v: _cstring("system_type", v, _MAX_SYSTEM_TYPE))
    window = opt.take("window", lambda v: _int("window", v, 1, 1000))
    tps = opt.take("tps", lambda v: _number("tps", v, 0.0, allow_zero=True))
    bind = opt.take("bind", lambda v: _choice("bind", v, _BIND_MODES))
    enquire_link = opt.take("enquire_link", lambda v: _number("enquire_link", v, 0.0))
    response_timeout = opt.take("response_timeout", lambda v: _number("response_timeout", v, 0.0))
    reconnect_min = opt.take("reconnect_min", lambda v: _number("reconnect_min", v, 0.0))
    reconnect_max = opt.take("reconnect_max", lambda v: _number("reconnect_max", v, 0.0))
    concat = opt.take("concat", lambda v: _choice("concat", v, _CONCAT_MODES))
    coding = opt.take("coding", _coding)
    registered = opt.take("registered_delivery", lambda v: _int("registered_delivery", v, 0, 255))
    validity = opt.take("validity", _validity)
    tls_verify = opt.take("tls_verify", lambda v: _bool("tls_verify", v))
    source_ton = opt.take("source_ton", lambda v: _int("source_ton", v, 0, 255))
    source_npi = opt.take("source_npi", lambda v: _int("source_npi", v, 0, 255))
    opt.finish()

    if tls_verify is not None and not tls:
        raise ValueError("tls_verify only applies to smpps:// URLs")
    rmin = 1.0 if reconnect_min is None else reconnect_min
    rmax = 60.0 if reconnect_max is None else reconnect_max
    if rmax < rmin:
        raise ValueError(f"reconnect_max ({rmax}) must not be below reconnect_min ({rmin})")
    return CarrierConfig(
        host=host,
        port=port or DEFAULT_PORT,
        system_id=system_id,
        password=password,
        tls=tls,
        tls_verify=True if tls_verify is None else tls_verify,
        source=source,
        window=10 if window is None else window,
        tps=0.0 if tps is None else tps,
        system_type=system_type or "",
        bind=bind or "trx",
        enquire_link=30.0 if enquire_link is None else enquire_link,
        response_timeout=10.0 if response_timeout is None else response_timeout,
        reconnect_min=rmin,
        reconnect_max=rmax,
        concat=concat or "udh8",
        coding=0 if coding is None else coding,
        registered_delivery=1 if registered is None else registered,
        validity=validity,
        source_ton=source_ton,
        source_npi=source_npi,
    )


# ---------------------------------------------------------------------------
# Query string and value parsers
# ---------------------------------------------------------------------------


def _split_query(query: str) -> dict[str, str]:
    """``name=value`` pairs, percent-decoded with ``+`` kept literal (parse_qsl would
    turn ``source=+614...`` into a space)."""
    options: dict[str, str] = {}
    for item in query.split("&"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = unquote(name).strip()
        if not sep:
            raise ValueError(f"carrier URL option {name!r} has no value (write {name}=...)")
        if name in options:
            raise ValueError(f"carrier URL option {name!r} is given twice")
        options[name] = unquote(value)
    return options


class _Options:
    """Takes known options one by one; :meth:`finish` rejects the rest."""

    def __init__(self, options: dict[str, str]) -> None:
        self._left = dict(options)

    def take(self, name: str, parse: Callable[[str], T]) -> T | None:
        value = self._left.pop(name, None)
        return None if value is None else parse(value)

    def finish(self) -> None:
        if self._left:
            names = ", ".join(sorted(self._left))
            raise ValueError(f"unknown carrier URL option(s): {names}")


def _int(name: str, value: str, low: int, high: int) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name} must be a whole number in {low}..{high}, not {value!r}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {number}")
    return number


def _number(name: str, value: str, low: float, *, allow_zero: bool = False) -> float:
    """A finite number of seconds (or per second) above ``low`` (or equal with
    ``allow_zero``)."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < low or (number == low and not allow_zero):
        bound = f">= {low:g}" if allow_zero else f"> {low:g}"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _choice(name: str, value: str, choices: tuple[T, ...]) -> T:
    for choice in choices:
        if value == choice:
            return choice
    listed = ", ".join(str(c) for c in choices)
    raise ValueError(f"{name} must be one of {listed}, not {value!r}")


def _coding(value: str) -> int:
    coding = _int("coding", value, 0, 255)
    if coding not in _CODINGS:
        raise ValueError(f"coding must be 0 (GSM when possible) or 8 (UCS-2), not {coding}")
    return coding


def _validity(value: str) -> int:
    seconds = _int("validity", value, 1, 10**10)
    try:
        format_relative_validity(seconds)
    except ValueError as exc:
        raise ValueError(f"validity {seconds} s cannot be sent: {exc}") from None
    return seconds


def _source(value: str) -> str:
    if not value:
        raise ValueError("source must not be empty (leave the option out instead)")
    digits = value.removeprefix("+")
    limit = _MAX_SOURCE if digits.isascii() and digits.isdigit() else 11
    if len(digits) > limit or not value.isascii() or not value.isprintable():
        raise ValueError(
            f"source {value!r} must be a number of up to 20 digits or up to 11 "
            "printable ASCII characters"
        )
    return value


def _cstring(name: str, value: str, limit: int) -> str:
    _check_cstring(name, value, limit)
    return value


def _check_cstring(
    name: str, value: str, limit: int, *, required: bool = False, secret: bool = False
) -> None:
    """SMPP C-octet strings are Latin-1 without NUL, at most ``limit`` octets."""
    shown = "" if secret else f" {value!r}"
    if required and not value:
        raise ValueError(f"{name} must not be empty")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{name}{shown} must be Latin-1 text") from None
    if b"\0" in raw:
        raise ValueError(f"{name}{shown} must not contain NUL")
    if len(raw) > limit:
        raise ValueError(f"{name}{shown} is longer than {limit} characters (SMPP limit)")
