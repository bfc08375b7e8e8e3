"""Phone number normalisation: the fast path must answer exactly as phonenumbers does.

The reference (``normalise_slow``) is phonenumbers itself, so most tests here are
differential: generate inputs around every region's example numbers, or at
random, and require the fast path to agree with the reference wherever it
answers at all. They call ``fast_path`` (no memo) so that a cached answer can
never hide a fast-path bug, and they also check that the fast path does answer
for the plain forms; a fast path that always fell back would be correct but
useless.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roxgate.sms.phone import (
    UNSURE,
    Normalised,
    _normalise_uncached,
    fast_path,
    normalise,
    normalise_slow,
)

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
NON_GEO_CODES = sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)


@pytest.fixture(autouse=True)
def _cold_memo() -> Iterator[None]:
    # Each test sees the memo empty, so an answer cached by another test (or
    # by the application) cannot stand in for the code under test.
    normalise.cache_clear()
    yield
    normalise.cache_clear()


# --- known vectors -----------------------------------------------------------

N = Normalised

KNOWN: list[tuple[str, str, Normalised | None]] = [
    # The E.164 form clients send, and a national form of the same number.
    ("+61407555001", "AU", N("+61407555001", "AU")),
    ("0407 555 001", "AU", N("+61407555001", "AU")),
    ("0407555001", "AU", N("+61407555001", "AU")),
    ("+61 407 555 001", "NZ", N("+61407555001", "AU")),
    ("+1 650 253 0000", "US", N("+16502530000", "US")),
    ("6502530000", "US", N("+16502530000", "US")),
    ("+1-650-253-0000", "GB", N("+16502530000", "US")),
    ("+44 7400 123456", "GB", N("+447400123456", "GB")),
    # Not numbers, too short, unknown country code, nothing at all.
    ("12345", "AU", None),
    ("+999123", "AU", None),
    ("", "AU", None),
    ("+", "AU", None),
    ("hello", "AU", None),
    # parse() drops a recognised extension; the E.164 form has none.
    ("+61407555001ext123", "AU", N("+61407555001", "AU")),
    # Shared country codes: the region is resolved from the number.
    ("+44 7781 123456", "GB", N("+447781123456", "GG")),  # Guernsey mobile
    ("+44 7911 123456", "GB", N("+447911123456", "GG")),  # 7911 1[17] is Guernsey too
    ("+44 1481 256789", "GB", N("+441481256789", "GG")),  # Guernsey fixed line
    ("+44 7624 123456", "GB", N("+447624123456", "IM")),  # Isle of Man, by leading digits
    ("+44 7797 712345", "GB", N("+447797712345", "JE")),  # Jersey
    ("+61 8 9162 1234", "AU", N("+61891621234", "CC")),  # Cocos (Keeling) Islands
    ("+61 8 9164 1234", "AU", N("+61891641234", "CX")),  # Christmas Island
    ("+1 204 234 5678", "US", N("+12042345678", "CA")),  # Winnipeg
    ("+1 268 464 1234", "US", N("+12684641234", "AG")),  # NANPA island, by leading digits
    ("+7 771 000 9998", "RU", N("+77710009998", "KZ")),
    ("+39 06 698 12345", "IT", N("+390669812345", "VA")),
    ("+262 269 61 1234", "FR", N("+262269611234", "YT")),
    ("+800 1234 5678", "US", N("+80012345678", "001")),  # non-geographic entity
    # Italian leading zero: kept in the national significant number.
    ("+39 06 1234 5678", "IT", N("+390612345678", "IT")),
    ("06 1234 5678", "IT", N("+390612345678", "IT")),
    # National prefixes and their transforms.
    ("8 912 345 67 89", "RU", N("+79123456789", "RU")),
    ("01512 3456789", "DE", N("+4915123456789", "DE")),
    ("4641234", "AG", N("+12684641234", "AG")),  # 7-digit local number gains 268
    ("256789", "GG", N("+441481256789", "GG")),  # local number gains 1481
    ("011 15 2345-6789", "AR", N("+5491123456789", "AR")),  # mobile: 15 becomes 9
    # "+cc 0..." still has the national prefix stripped.
    ("+61 0407 555 001", "AU", N("+61407555001", "AU")),
    # Dialled internationally from the default region; read as +61.
    ("0011 61 407 555 001", "AU", N("+61407555001", "AU")),
    ("61407555001", "AU", N("+61407555001", "AU")),
    # A lower-case region is not a region to parse() (national form refused),
    # but does not matter after a "+".
    ("0407555001", "au", None),
    ("+61407555001", "au", N("+61407555001", "AU")),
    ("+61407555001", "ZZ", N("+61407555001", "AU")),
    # Arabic-Indic digits and other formatting: reference path, same answer.
    (
        "+\u0666\u0661\u0664\u0660\u0667\u0665\u0665\u0665\u0660\u0660\u0661",
        "AU",
        N("+61407555001", "AU"),
    ),
    ("+61 (0) 407 555 001", "AU", N("+61407555001", "AU")),
    ("tel:+61-407-555-001", "AU", N("+61407555001", "AU")),
]


@pytest.mark.parametrize(("raw", "region", "expected"), KNOWN)
def test_known_vectors(raw: str, region: str, expected: Normalised | None) -> None:
    # The vectors are phonenumbers' own answers: check the reference too, so a
    # phonenumbers upgrade that changes one shows up as such.
    assert normalise_slow(raw, region) == expected
    assert normalise(raw, region) == expected
    assert _normalise_uncached(raw, region) == expected
    answer = fast_path(raw, region)
    assert answer is UNSURE or answer == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+61407555001", "AU"),
        ("+61 407 555 001", "US"),
        ("0407555001", "AU"),
        ("0407 555 001", "AU"),
        ("+16502530000", "US"),
        ("6502530000", "US"),
        ("+12042345678", "US"),
        ("+447781123456", "GB"),
        ("+390612345678", "IT"),
        ("4641234", "AG"),
        ("12345", "AU"),
    ],
)
def test_plain_forms_take_the_fast_path(raw: str, region: str) -> None:
    assert fast_path(raw, region) is not UNSURE


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+61407555001ext123", "AU"),  # extension
        ("+61 (0) 407 555 001", "AU"),  # other punctuation
        ("+61  407555001", "AU"),  # doubled separator
        ("0011 61 407 555 001", "AU"),  # international dialling prefix
        ("61407555001", "AU"),  # national form beginning with the country code
        ("0407555001", "au"),  # not a region code
        ("+0061407555001", "AU"),  # no country code after "+": parse retries
        ("+61407555001", "001"),
        ("+\u0666\u0661\u0664\u0660\u0667\u0665\u0665\u0665\u0660\u0660\u0661", "AU"),
        ("", "AU"),
    ],
)
def test_other_forms_fall_back(raw: str, region: str) -> None:
    assert fast_path(raw, region) is UNSURE


def test_memo_returns_the_same_answer() -> None:
    first = normalise("+61407555001", "AU")
    again = normalise("+61407555001", "AU")
    assert first is again == Normalised("+61407555001", "AU")
    assert normalise.cache_info().hits == 1
    assert normalise("+61407555001", "NZ") == first  # another key, same number


# --- differential: every region's example numbers and their neighbours --------


def _examples() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    found = []
    for region in REGIONS:
        for num_type in phonenumbers.PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, num_type)
            if number is not None:
                found.append((region, number))
    for code in NON_GEO_CODES:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.append(("001", number))
    return found


EXAMPLES = _examples()
SHARDS = 6
COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _mutations(rng: random.Random, digits: str, changes: int, drops: int, adds: int) -> list[str]:
    """``digits`` and near misses: one digit changed, dropped or added."""
    out = [digits]
    for _ in range(changes):
        i = rng.randrange(len(digits))
        out.append(digits[:i] + rng.choice("0123456789") + digits[i + 1 :])
    for _ in range(drops):
        i = rng.randrange(len(digits))
        out.append(digits[:i] + digits[i + 1 :])
    for _ in range(adds):
        i = rng.randrange(len(digits) + 1)
        out.append(digits[:i] + rng.choice("0123456789") + digits[i:])
    return out


def _grouped(rng: random.Random, text: str) -> str:
    """``text`` with a space or hyphen at a few places, as people write numbers."""
    start = 1 if text.startswith("+") else 0
    for _ in range(rng.randrange(1, 4)):
        if len(text) - start < 2:
            break
        i = rng.randrange(start + 1, len(text))
        text = text[:i] + rng.choice(" -") + text[i:]
    return text


def _random_digits(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randrange(low, high + 1)))


def _inputs(
    rng: random.Random, region: str, number: phonenumbers.PhoneNumber
) -> Iterator[tuple[str, str]]:
    code = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    home = region if region != "001" else rng.choice(REGIONS)
    ndd = phonenumbers.ndd_prefix_for_region(home, True) or ""

    def some_region() -> str:
        # The default region is irrelevant after "+" except for "001"; vary it,
        # including values parse() does not accept as regions.
        return rng.choice((home, home, rng.choice(REGIONS), "ZZ", "001", home.lower()))

    # International form: the number, digit-level near misses, then prefixes.
    for digits in _mutations(rng, code + nsn, changes=16, drops=6, adds=10):
        yield "+" + digits, some_region()
    for digits in _mutations(rng, nsn, changes=2, drops=1, adds=2):
        yield "+" + code + "0" + digits, some_region()  # national prefix kept
        yield "+" + str(rng.choice(COUNTRY_CODES)) + digits, some_region()  # wrong code
        yield "+" + code + code + digits, some_region()  # code twice
        yield "+" + code + ndd + digits, some_region()
    for _ in range(6):
        yield "+" + code + _random_digits(rng, 0, 15), some_region()
        yield "+" + _random_digits(rng, 1, 16), some_region()

    # National form, read in the number's region and in random ones.
    for digits in _mutations(rng, nsn, changes=8, drops=3, adds=3):
        yield digits, home
        yield ndd + digits, home
        yield rng.choice(("0", "1", "8", "00", "01", "011", "9", code)) + digits, home
        yield digits, rng.choice(REGIONS)
        yield ndd + digits, rng.choice(REGIONS)
    for _ in range(4):
        yield _random_digits(rng, 2, 14), home

    # Grouped by spaces and hyphens: must parse exactly like the bare digits.
    for _ in range(3):
        yield _grouped(rng, "+" + code + nsn), some_region()
        yield _grouped(rng, ndd + nsn), home
        yield _grouped(rng, "+" + code + _random_digits(rng, 3, 12)), some_region()


@pytest.mark.parametrize("shard", range(SHARDS))
def test_differential_examples_and_mutations(shard: int) -> None:
    rng = random.Random(1000 + shard)
    compared = fast = 0
    mismatches: list[tuple[str, str, object, object]] = []
    for region, number in EXAMPLES[shard::SHARDS]:
        for raw, default_region in _inputs(rng, region, number):
            expected = normalise_slow(raw, default_region)
            answer = fast_path(raw, default_region)
            compared += 1
            if answer is UNSURE:
                continue
            fast += 1
            if answer != expected:
                mismatches.append((raw, default_region, answer, expected))
    assert mismatches == [], mismatches[:20]
    # ~36,000 per shard (>200,000 in all), most of them answered by the fast path.
    assert compared > 200_000 // SHARDS
    assert fast > 0.7 * compared


def test_every_example_number_takes_the_fast_path() -> None:
    """Valid numbers in E.164 and in plain national digits never need the reference."""
    slow: list[tuple[str, str]] = []
    for region, number in EXAMPLES:
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        # "001" is no region to parse() in; any real one will do after "+".
        expected = normalise_slow(e164, region if region != "001" else "US")
        assert expected is not None
        inputs = [(e164, region if region != "001" else "US")]
        if region != "001":
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            inputs.append(("".join(c for c in national if c.isdigit()), region))
        for raw, default_region in inputs:
            answer = fast_path(raw, default_region)
            if answer is UNSURE:
                slow.append((raw, default_region))
            else:
                assert answer == expected, (raw, default_region)
    assert slow == []


# --- differential: random strings ------------------------------------------------

HYPOTHESIS_REGIONS = ["AU", "US", "GB", "DE", "IN", "IT", "BR", "CN"]
HYPOTHESIS_CODES = [str(phonenumbers.country_code_for_region(r)) for r in HYPOTHESIS_REGIONS]
digit_strings = st.text(alphabet="0123456789", max_size=18)


def _agrees(raw: str, region: str) -> None:
    expected = normalise_slow(raw, region)
    answer = fast_path(raw, region)
    assert answer is UNSURE or answer == expected
    assert _normalise_uncached(raw, region) == expected


@settings(max_examples=2000, deadline=None)
@given(digits=digit_strings, region=st.sampled_from(HYPOTHESIS_REGIONS))
def test_random_plus_digits(digits: str, region: str) -> None:
    _agrees("+" + digits, region)


@settings(max_examples=2000, deadline=None)
@given(
    code=st.sampled_from(HYPOTHESIS_CODES),
    digits=digit_strings,
    region=st.sampled_from(HYPOTHESIS_REGIONS),
)
def test_random_digits_after_known_country_code(code: str, digits: str, region: str) -> None:
    _agrees("+" + code + digits, region)


@settings(max_examples=2000, deadline=None)
@given(digits=digit_strings, region=st.sampled_from(HYPOTHESIS_REGIONS))
def test_random_national_digits(digits: str, region: str) -> None:
    _agrees(digits, region)


@settings(max_examples=1000, deadline=None)
@given(
    plus=st.booleans(),
    groups=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=5), min_size=1, max_size=5),
    separators=st.lists(st.sampled_from([" ", "-", "  ", ".", "/", "(", ")"]), max_size=5),
    region=st.sampled_from(HYPOTHESIS_REGIONS),
)
def test_random_grouped_digits(
    plus: bool, groups: list[str], separators: list[str], region: str
) -> None:
    text = groups[0]
    for group, separator in zip(groups[1:], separators + [""] * len(groups), strict=False):
        text += separator + group
    _agrees(("+" if plus else "") + text, region)
