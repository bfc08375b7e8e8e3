"""Tests for roxgate.sms.text (SMS encoding, length and segmentation)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roxgate.sms.text import (
    GSM7,
    UCS2,
    TextMeasure,
    encode_gsm7,
    encode_ucs2,
    is_gsm7,
    measure,
    split_parts,
)

EMOJI = "\U0001f600"  # 😀, outside the BMP: a surrogate pair in UTF-16

# The GSM 03.38 default alphabet written out independently of the module, in code
# order, with None at 0x1B (escape to the extension table).
GSM_DEFAULT: list[str | None] = [
    *"@£$¥èéùìòÇ\nØø\rÅå",
    *"Δ_ΦΓΛΩΠΨΣΘΞ",
    None,
    *"ÆæßÉ",
    *" !\"#¤%&'()*+,-./",
    *"0123456789:;<=>?",
    *"¡ABCDEFGHIJKLMNO",
    *"PQRSTUVWXYZÄÖÑÜ§",
    *"¿abcdefghijklmno",
    *"pqrstuvwxyzäöñüà",
]
GSM_EXT = {
    "\x0c": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}


def units_of(part: str, encoding: str) -> int:
    if encoding == GSM7:
        return sum(2 if c in GSM_EXT else 1 for c in part)
    return len(part.encode("utf-16-be", "surrogatepass")) // 2


def reference_parts(text: str) -> list[str]:
    """Naive character-by-character greedy segmentation, for comparison."""
    if not text:
        return []
    encoding = GSM7 if all(c in GSM_EXT or c in GSM_DEFAULT for c in text) else UCS2
    single, per_part = (160, 153) if encoding == GSM7 else (70, 67)
    if units_of(text, encoding) <= single:
        return [text]
    parts: list[str] = []
    current = ""
    used = 0
    for c in text:
        w = units_of(c, encoding)
        if used + w > per_part:
            parts.append(current)
            current, used = "", 0
        current += c
        used += w
    parts.append(current)
    return parts


# --- alphabet ------------------------------------------------------------------------


def test_reference_table_shape() -> None:
    assert len(GSM_DEFAULT) == 128
    assert GSM_DEFAULT[0x09] == "Ç"
    assert GSM_DEFAULT[0x24] == "¤"
    assert GSM_DEFAULT[0x7F] == "à"


def test_every_default_alphabet_char_encodes_to_its_code() -> None:
    for code, char in enumerate(GSM_DEFAULT):
        if char is None:
            continue
        assert is_gsm7(char), (code, char)
        assert encode_gsm7(char) == bytes([code]), (code, char)
        assert measure(char) == TextMeasure(GSM7, 1, 1), (code, char)


def test_every_extension_char_encodes_to_esc_code() -> None:
    for char, code in GSM_EXT.items():
        assert is_gsm7(char), char
        assert encode_gsm7(char) == bytes([0x1B, code]), char
        assert measure(char) == TextMeasure(GSM7, 2, 1), char


@pytest.mark.parametrize(
    ("text", "expected"),
    [("@", b"\x00"), ("€", b"\x1b\x65"), ("{", b"\x1b\x28"), ("$", b"\x02"), ("Ç", b"\x09")],
)
def test_encode_gsm7_vectors(text: str, expected: bytes) -> None:
    assert encode_gsm7(text) == expected


def test_encode_gsm7_mixed_text() -> None:
    assert encode_gsm7("Hi {€}@\n") == b"Hi \x1b\x28\x1b\x65\x1b\x29\x00\n"


def test_whole_latin1_and_ascii_range_membership() -> None:
    # Every code point below U+0400 is GSM exactly when it is in one of the two tables.
    for cp in range(0x400):
        c = chr(cp)
        expected = c in GSM_EXT or c in GSM_DEFAULT
        assert is_gsm7(c) is expected, hex(cp)
        assert measure(c).encoding == (GSM7 if expected else UCS2), hex(cp)


@pytest.mark.parametrize("char", ["ç", "й", "`", "\x1b", "\t", "\x00", "\u2126", "$"])
def test_lookalikes_and_non_gsm(char: str) -> None:
    # Ω here is U+2126 OHM SIGN (not GSM); the GSM Ω is U+03A9.
    expected_gsm = char == "$"
    assert is_gsm7(char) is expected_gsm
    if not expected_gsm:
        with pytest.raises(ValueError):
            encode_gsm7(char)


def test_escape_char_is_not_gsm() -> None:
    assert not is_gsm7("\x1b")
    assert measure("abc\x1b") == TextMeasure(UCS2, 4, 1)


def test_encode_gsm7_error_message_names_char() -> None:
    with pytest.raises(ValueError, match=r"'ç' at index 2"):
        encode_gsm7("abç")


def test_encode_ucs2() -> None:
    assert encode_ucs2("aй") == b"\x00a\x04\x39"
    assert encode_ucs2(EMOJI) == b"\xd8\x3d\xde\x00"


# --- measure: GSM7 -------------------------------------------------------------------


def test_empty_text() -> None:
    assert measure("") == TextMeasure(GSM7, 0, 0)
    assert split_parts("") == []
    assert is_gsm7("")
    assert encode_gsm7("") == b""


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (153, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (765, 5)],
)
def test_gsm_basic_lengths(length: int, parts: int) -> None:
    assert measure("a" * length) == TextMeasure(GSM7, length, parts)
    assert len(split_parts("a" * length)) == parts


def test_gsm_extension_counts_two() -> None:
    assert measure("a" * 159 + "€") == TextMeasure(GSM7, 161, 2)
    assert measure("a" * 158 + "€") == TextMeasure(GSM7, 160, 1)


def test_gsm_extension_never_straddles() -> None:
    text = "a" * 152 + "€" + "a" * 10
    assert measure(text) == TextMeasure(GSM7, 164, 2)
    parts = split_parts(text)
    assert parts == ["a" * 152, "€" + "a" * 10]
    assert [units_of(p, GSM7) for p in parts] == [152, 12]


def test_gsm_all_extension_chars() -> None:
    assert measure("{" * 80) == TextMeasure(GSM7, 160, 1)
    # 81 ext chars = 162 septets; 76 fit in a 153-septet part (152 septets).
    assert measure("{" * 81) == TextMeasure(GSM7, 162, 2)
    assert split_parts("{" * 81) == ["{" * 76, "{" * 5]
    # 153 ext chars = 306 septets = 2 x 153 by ceil division, but 76 per part -> 3 parts.
    assert measure("{" * 153) == TextMeasure(GSM7, 306, 3)
    assert [len(p) for p in split_parts("{" * 153)] == [76, 76, 1]


def test_gsm_ext_at_exact_boundary_fits() -> None:
    # 151 narrow + ext = 153 septets exactly: the ext char stays in part 1.
    text = "a" * 151 + "€" + "a" * 20
    assert split_parts(text) == ["a" * 151 + "€", "a" * 20]
    assert measure(text) == TextMeasure(GSM7, 173, 2)


# --- measure: UCS2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (67, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_lengths(length: int, parts: int) -> None:
    text = "й" * length
    assert measure(text) == TextMeasure(UCS2, length, parts)
    assert len(split_parts(text)) == parts


def test_single_non_gsm_char_switches_whole_text() -> None:
    text = "a" * 100 + "ç"
    assert measure(text) == TextMeasure(UCS2, 101, 2)
    assert measure("a" * 69 + "й") == TextMeasure(UCS2, 70, 1)
    # Extension chars count one unit in UCS-2.
    assert measure("€" * 70 + "й") == TextMeasure(UCS2, 71, 2)


def test_emoji_counts_two_units() -> None:
    assert measure(EMOJI) == TextMeasure(UCS2, 2, 1)
    assert measure(EMOJI * 35) == TextMeasure(UCS2, 70, 1)
    # 36 emoji = 72 units; 33 per 67-unit part since pairs are not split.
    assert measure(EMOJI * 36) == TextMeasure(UCS2, 72, 2)
    assert split_parts(EMOJI * 36) == [EMOJI * 33, EMOJI * 3]
    # 67 emoji = 134 units = 2 x 67, but 33 per part -> 3 parts.
    assert measure(EMOJI * 67) == TextMeasure(UCS2, 134, 3)


def test_surrogate_pair_never_straddles() -> None:
    text = "й" * 66 + EMOJI + "й" * 10
    assert measure(text) == TextMeasure(UCS2, 78, 2)
    assert split_parts(text) == ["й" * 66, EMOJI + "й" * 10]
    text = "й" * 65 + EMOJI + "й" * 10
    assert split_parts(text) == ["й" * 65 + EMOJI, "й" * 10]


def test_emoji_in_100_char_ascii_text() -> None:
    text = "a" * 50 + EMOJI + "a" * 49
    assert measure(text) == TextMeasure(UCS2, 101, 2)
    assert split_parts(text) == ["a" * 50 + EMOJI + "a" * 15, "a" * 34]


def test_extension_chars_then_non_gsm_is_ucs2() -> None:
    text = "{€}" * 30 + "й"
    assert measure(text) == TextMeasure(UCS2, 91, 2)
    assert not is_gsm7(text)


def test_long_texts_beyond_precomputed_tables() -> None:
    assert measure("a" * 2000) == TextMeasure(GSM7, 2000, 14)
    assert measure("й" * 2000) == TextMeasure(UCS2, 2000, 30)
    assert measure("€" * 2000) == TextMeasure(GSM7, 4000, 27)  # 76 per part
    assert measure(EMOJI * 2000) == TextMeasure(UCS2, 4000, 61)  # 33 per part
    assert len(split_parts("a" * 2000)) == 14


def test_measure_results_are_shared_and_frozen() -> None:
    m = measure("hello")
    assert m is measure("world")
    with pytest.raises(AttributeError):
        m.parts = 2  # type: ignore[misc]


def test_lone_surrogates_count_one_unit() -> None:
    text = "\ud83d" + "a" * 70
    assert measure(text) == TextMeasure(UCS2, 71, 2)
    assert split_parts(text) == ["\ud83d" + "a" * 66, "a" * 4]
    with pytest.raises(ValueError):
        encode_ucs2(text)


# --- split_parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "a" * 765,
        "й" * 135,
        "{" * 81,
        EMOJI * 36,
        "a" * 152 + "€" + "a" * 10,
        ("x€" * 200) + "y",
        ("й" + EMOJI) * 50,
    ],
)
def test_split_parts_round_trip_and_limits(text: str) -> None:
    parts = split_parts(text)
    assert "".join(parts) == text
    assert split_parts("".join(parts)) == parts
    m = measure(text)
    assert len(parts) == m.parts
    assert parts == reference_parts(text)
    if m.parts > 1:
        limit = 153 if m.encoding == GSM7 else 67
        assert all(0 < units_of(p, m.encoding) <= limit for p in parts)


def test_split_parts_basic_gsm_slices() -> None:
    parts = split_parts("a" * 307)
    assert [len(p) for p in parts] == [153, 153, 1]


# --- properties ----------------------------------------------------------------------

GSM_CHARS = "".join(c for c in GSM_DEFAULT if c is not None) + "".join(GSM_EXT)

texts = st.one_of(
    st.text(alphabet=GSM_CHARS, max_size=800),
    st.text(alphabet=st.sampled_from(sorted(GSM_EXT)) | st.sampled_from("ab"), max_size=800),
    st.text(max_size=400),
    st.text(alphabet=st.sampled_from(["a", "й", EMOJI, "€", "\U0010ffff"]), max_size=400),
    st.text(alphabet=st.sampled_from(["a", "{", "\ud83d", "\ude00", EMOJI]), max_size=300),
)


@settings(max_examples=500)
@given(texts)
def test_property_split_parts(text: str) -> None:
    m = measure(text)
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == m.parts
    assert parts == reference_parts(text)
    assert m.units == units_of(text, m.encoding)
    assert m.encoding == (GSM7 if is_gsm7(text) else UCS2)
    if m.parts == 1:
        assert m.units <= (160 if m.encoding == GSM7 else 70)
    elif m.parts > 1:
        limit = 153 if m.encoding == GSM7 else 67
        assert all(0 < units_of(p, m.encoding) <= limit for p in parts)
    if m.encoding == GSM7:
        assert len(encode_gsm7(text)) == m.units
        assert all(measure(p).encoding == GSM7 for p in parts)
    elif not any("\ud800" <= c <= "\udfff" for c in text):
        assert len(encode_ucs2(text)) == 2 * m.units


def test_decode_gsm7_round_trips_and_is_lenient() -> None:
    from roxgate.sms.text import decode_gsm7

    text = "Hello {world} €5 @home\nÄÖÑÜ§¿ ~|^[]\\"
    assert decode_gsm7(encode_gsm7(text)) == text
    assert decode_gsm7(b"\x1b\x7f") == " "  # unknown extension code
    assert decode_gsm7(b"a\x1b") == "a"  # trailing escape
    assert decode_gsm7(b"\xc1") == "A"  # high bit ignored
