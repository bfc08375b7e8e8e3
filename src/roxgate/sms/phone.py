"""Recipient numbers to E.164, fast enough for 500 recipients per request.

The definition of a correct answer is :func:`normalise_slow`: ``phonenumbers.parse``
then ``is_valid_number``, ``format_number(E164)`` and ``region_code_for_number``.
That costs ~40 µs a number, so :func:`normalise` first tries a fast path that
re-implements the few steps of ``parse``/``is_valid_number`` that matter for the
plain forms clients actually send, using the same metadata (and so the same
regular expressions) as phonenumbers, pre-compiled and combined per region.
On top, :func:`normalise` remembers the last 65,536 answers (inputs of up to 64
characters); :func:`normalise_slow` and ``fast_path`` never do.

Fast-path forms (everything else goes to :func:`normalise_slow`):

* ``+`` followed by ASCII digits, optionally grouped by single spaces or hyphens
  (``+61407555001``, ``+61 407 555 001``, ``+1-650-253-0000``);
* ASCII digits, grouped the same way, read in ``default_region`` when that is a
  supported region code (``0407555001``, ``0407 555 001``, ``6502530000``).

Within those forms the fast path still hands over to the reference whenever the
input takes a rarely-used branch of ``parse``: an unknown country code after ``+``
(parse then retries without the ``+``), an international dialling prefix at the
start of a national number, a national number that parse would read as
starting with the region's own country code, or a ``default_region`` of
``"001"`` (for a non-geographic ``+800``-style number parse then keeps no
metadata and strips no national prefix; we do not tell the cases apart).

Measured with ``time.process_time`` on a shared 2-core development box
(Python 3.11, phonenumbers 9.0.43; best of 20 passes over 5,000 distinct
numbers, after one pass that loads metadata and compiles the regexes; other
jobs were running, so treat these as upper bounds):

=============================  ===========  ===========  ========
input                          fast path    reference    speed-up
=============================  ===========  ===========  ========
``+614075xxxxx`` with AU       3.0 µs       44 µs        ~15x
``04075xxxxx`` with AU         3.9 µs       49 µs        ~13x
``+1650253xxxx`` with US       2.9 µs       42 µs        ~15x
``+44 7400 xxxxxx`` with GB    4.0 µs       58 µs        ~14x
memo miss overhead             ~0.5-1 µs
memo hit                       0.2 µs
=============================  ===========  ===========  ========

The first number of a calling code costs milliseconds once (phonenumbers loads
the metadata; we compile one combined regex per number length).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

__all__ = ["Normalised", "cache_clear", "cache_info", "normalise", "normalise_slow"]


class Normalised(NamedTuple):
    """A valid number. A NamedTuple: built 500 times a request, and a frozen
    dataclass's ``__init__`` cost a tenth of the whole fast path."""

    e164: str  # "+61407555001"
    region: str  # region_code_for_number, e.g. "AU"; "001" for non-geographic entities


def normalise_slow(raw: str, default_region: str) -> Normalised | None:
    """The reference: what phonenumbers itself answers. Always correct, ~40 µs."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number)
    assert region is not None  # a valid number always has a region
    return Normalised(e164, region)


class _Unsure:
    """Marker returned by the fast path when only the reference can answer."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSURE"


UNSURE: Final = _Unsure()

_NON_GEO: Final = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY  # "001"
# parse() refuses more than 250 characters; well below that our forms are
# plain digits, so anything longer is left to the reference.
_MAX_FAST_INPUT: Final = 64
# parse(): a national significant number has 2..17 digits; "+" followed by
# two digits or fewer is TOO_SHORT_AFTER_IDD (handled by the reference).
_MIN_NSN: Final = 2
_MAX_NSN: Final = 17
_MIN_DIGITS: Final = 3
# Digits grouped by single spaces or hyphens. parse() drops such punctuation
# when normalising, none of it can start an extension (those need letters,
# "#", "," or ";"), and every such string of >= 3 digits is "viable", so these
# inputs parse exactly like the bare digit string. [0-9] keeps out the other
# Unicode digits that str.isdigit() and \d accept.
_GROUPED_DIGITS: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_SEPARATORS: Final = str.maketrans("", "", " -")

# _test_number_length() verdicts that make parse() keep the number as it was
# rather than take the version with the national prefix stripped.
_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH, _POSSIBLE, _TOO_LONG = range(5)
_KEEP_UNSTRIPPED: Final = frozenset((_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH))

# The number types _number_type_helper() accepts as "valid". Mobile and fixed
# line first: the order of alternatives in the combined regex does not change
# whether it matches, only how soon the common numbers match.
_TYPE_DESCS: Final[tuple[str, ...]] = (
    "mobile",
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)

_compiled: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    # The metadata repeats patterns across regions and lengths; compile each once
    # and keep it (re's own cache is bounded and shared with phonenumbers).
    compiled = _compiled.get(pattern)
    if compiled is None:
        compiled = _compiled[pattern] = re.compile(pattern)
    return compiled


# A description reduced to what matching reads: (pattern, possible lengths).
_Desc = tuple[str, tuple[int, ...]]


def _usable(desc: PhoneNumberDesc | None) -> _Desc | None:
    # _match_national_number(): a missing desc, or a missing or empty pattern,
    # never matches.
    if desc is None or not desc.national_number_pattern:
        return None
    return desc.national_number_pattern, tuple(desc.possible_length)


def _admits_length(desc: _Desc, length: int) -> bool:
    # _is_number_matching_desc(): an empty possible_length list means "not
    # checked here"; (-1,) marks a type with no numbers and admits no length.
    lengths = desc[1]
    return not lengths or length in lengths


class _Validator:
    """``_number_type_helper(nsn, metadata) != UNKNOWN`` as one regex per length.

    The helper accepts a number when the general description matches AND any of
    the type descriptions does (each: length admitted, pattern fullmatches). For
    a given length the admitted type patterns are fixed, so they are folded into
    one alternation, and the general pattern into a lookahead anchored at the end
    of the string: ``(?=(?:GENERAL)\\Z)(?:T1|T2|...)``, one fullmatch per number.
    """

    __slots__ = ("_by_length", "_general", "_types")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self._general = _usable(metadata.general_desc)
        names = _TYPE_DESCS
        if metadata.same_mobile_and_fixed_line_pattern:
            # The helper never tests the mobile desc in this case, even where its
            # possible lengths differ from fixed line's: leave it out likewise.
            names = names[1:]
        usable = (_usable(getattr(metadata, name)) for name in names)
        self._types = tuple(desc for desc in usable if desc is not None)
        self._by_length: dict[int, re.Pattern[str] | None] = {}

    def _build(self, length: int) -> re.Pattern[str] | None:
        general = self._general
        if general is None or not _admits_length(general, length):
            return None
        alternatives = [f"(?:{d[0]})" for d in self._types if _admits_length(d, length)]
        if not alternatives:
            return None
        return _compile(f"(?=(?:{general[0]})\\Z)(?:{'|'.join(alternatives)})")

    def __call__(self, nsn: str) -> bool:
        length = len(nsn)
        try:
            matcher = self._by_length[length]
        except KeyError:
            matcher = self._by_length[length] = self._build(length)
        return matcher is not None and matcher.fullmatch(nsn) is not None


class _ParseRules:
    """What ``parse`` reads from the metadata it parses a number with."""

    __slots__ = (
        "_general",
        "_local_lengths",
        "_possible_lengths",
        "_prefix",
        "_transform",
        "_verdicts",
        "country_code",
        "country_code_str",
        "idd",
    )

    def __init__(self, metadata: PhoneMetadata) -> None:
        # Every region and non-geographic entity has both.
        assert metadata.country_code is not None and metadata.general_desc is not None
        self.country_code: int = metadata.country_code
        self.country_code_str = str(metadata.country_code)
        general = metadata.general_desc
        usable = _usable(general)
        self._general = _compile(usable[0]) if usable is not None else None
        self._possible_lengths = tuple(general.possible_length)
        self._local_lengths = tuple(general.possible_length_local_only)
        self._verdicts: dict[int, int] = {}
        prefix = metadata.national_prefix_for_parsing
        self._prefix = _compile(prefix) if prefix else None
        self._transform: str | None = metadata.national_prefix_transform_rule or None
        # parse() uses "NonMatch" when there is no prefix, which no digit string matches.
        idd = metadata.international_prefix
        self.idd = _compile(idd) if idd is not None else None

    def general_matches(self, number: str) -> bool:
        # _match_national_number(number, general_desc, False): pattern only, no
        # possible-length check.
        return self._general is not None and self._general.fullmatch(number) is not None

    def length_verdict(self, length: int) -> int:
        """``_test_number_length(number, metadata)`` for the UNKNOWN type."""
        verdict = self._verdicts.get(length)
        if verdict is None:
            lengths = self._possible_lengths
            if length in self._local_lengths:
                verdict = _LOCAL_ONLY
            elif lengths[0] == length:
                verdict = _POSSIBLE
            elif lengths[0] > length:
                verdict = _TOO_SHORT
            elif lengths[-1] < length:
                verdict = _TOO_LONG
            elif length in lengths[1:]:
                verdict = _POSSIBLE
            else:
                verdict = _INVALID_LENGTH
            self._verdicts[length] = verdict
        return verdict

    def strip_national_prefix(self, number: str) -> str | _Unsure:
        """The number ``_maybe_strip_national_prefix_carrier_code`` returns."""
        if self._prefix is None or not number:
            return number
        match = self._prefix.match(number)
        if match is None:
            return number
        groups = match.groups()
        if self._transform is None or (groups and groups[-1] is None):
            stripped = number[match.end() :]
        elif groups:
            # A transform applies (NANPA islands' 7-digit local numbers get their
            # area code, AR mobiles a 9, ...): the very substitution parse makes.
            stripped = self._prefix.sub(self._transform, number, count=1)
        else:
            # parse() would index an empty group tuple and raise: let it.
            return UNSURE
        # Keep the original when it was viable and the result would not be.
        if self.general_matches(number) and not self.general_matches(stripped):
            return number
        return stripped

    def national_significant(self, number: str) -> str | _Unsure | None:
        """The end of ``parse``: prefix stripping, then the NSN length limits.

        ``None`` is a ``NumberParseException`` (too short or too long).
        """
        if len(number) < _MIN_NSN:
            return None
        stripped = self.strip_national_prefix(number)
        if isinstance(stripped, _Unsure):
            return stripped
        # The stripped form is taken only if its length could be a whole number.
        if stripped != number and self.length_verdict(len(stripped)) not in _KEEP_UNSTRIPPED:
            number = stripped
        if not _MIN_NSN <= len(number) <= _MAX_NSN:
            return None
        # A leading zero is kept by parse as italian_leading_zero plus a count of
        # zeros, and national_significant_number() rebuilds exactly this string.
        return number


class _Country:
    """One country calling code: its parse rules and its region resolution."""

    __slots__ = ("_steps", "code_str", "rules")

    def __init__(self, country_code: int) -> None:
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
        self.code_str = str(country_code)
        # parse() re-reads the metadata of the code's main region (first listed).
        main = PhoneMetadata.metadata_for_region_or_calling_code(country_code, regions[0])
        assert main is not None
        self.rules = _ParseRules(main)
        steps: list[tuple[str, re.Pattern[str] | None, _Validator, bool]] = []
        for region in regions:
            # metadata_for_region* runs phonenumbers' lazy loader on first use.
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
            if metadata is None:
                continue  # as _region_code_for_number_from_list does
            leading = (
                _compile(metadata.leading_digits) if metadata.leading_digits is not None else None
            )
            # is_valid_number_for_region() also checks the region's own calling code.
            same_code = region == _NON_GEO or metadata.country_code == country_code
            steps.append((region, leading, _Validator(metadata), same_code))
        self._steps = tuple(steps)

    def valid_region(self, nsn: str) -> str | None:
        """``region_code_for_number`` if ``is_valid_number``, else ``None``."""
        steps = self._steps
        if len(steps) == 1:
            # A single region is taken without a test; validity decides alone.
            region, _, valid, same_code = steps[0]
            return region if same_code and valid(nsn) else None
        # Shared codes: the first region whose leading digits match (prefix match)
        # or, lacking leading digits, whose types accept the number.
        for region, leading, valid, same_code in steps:
            if leading is not None:
                if leading.match(nsn) is not None:
                    return region if same_code and valid(nsn) else None
            elif valid(nsn):
                return region if same_code else None
        return None


_countries: dict[int, _Country] = {}
_region_rules: dict[str, _ParseRules] = {}


def _country(country_code: int) -> _Country:
    country = _countries.get(country_code)
    if country is None:
        country = _countries[country_code] = _Country(country_code)
    return country


def _rules_for_region(region: str) -> _ParseRules:
    rules = _region_rules.get(region)
    if rules is None:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        assert metadata is not None
        rules = _region_rules[region] = _ParseRules(metadata)
    return rules


# "+" then up to three digits: parse tries 1-, 2- then 3-digit prefixes against
# the calling-code table. Built once; the table is fixed for a given release.
_CODE_BY_PREFIX: Final = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
_SUPPORTED_REGIONS: Final = frozenset(phonenumbers.SUPPORTED_REGIONS)


def _finish(country: _Country, rules: _ParseRules, number: str) -> Normalised | _Unsure | None:
    nsn = rules.national_significant(number)
    if nsn is None or isinstance(nsn, _Unsure):
        return nsn
    region = country.valid_region(nsn)
    if region is None:
        return None
    return Normalised("+" + country.code_str + nsn, region)


def _international(digits: str) -> Normalised | _Unsure | None:
    """``digits`` came after a ``+``."""
    if len(digits) < _MIN_DIGITS:
        return UNSURE
    for size in (1, 2, 3):
        code = _CODE_BY_PREFIX.get(digits[:size])
        if code is not None:
            break
    else:
        # Includes a leading 0. parse() then retries without the "+", reading the
        # digits in the default region: rare, and the reference's business.
        return UNSURE
    country = _countries.get(code) or _country(code)
    return _finish(country, country.rules, digits[size:])


def _national(digits: str, region: str) -> Normalised | _Unsure | None:
    """``digits`` without ``+``, read in the (supported) ``region``."""
    if len(digits) < _MIN_DIGITS:
        return UNSURE
    rules = _rules_for_region(region)
    if rules.idd is not None and rules.idd.match(digits) is not None:
        return UNSURE  # "0011 61 ..." from AU, "011 ..." from US: dialled internationally
    code = rules.country_code_str
    if digits.startswith(code):
        # parse() treats the leading digits as the country code when the rest
        # looks better without it; decide exactly whether it would, and leave it
        # the cases where it does.
        rest = rules.strip_national_prefix(digits[len(code) :])
        if isinstance(rest, _Unsure):
            return rest
        if (
            not rules.general_matches(digits) and rules.general_matches(rest)
        ) or rules.length_verdict(len(digits)) == _TOO_LONG:
            return UNSURE
    return _finish(_country(rules.country_code), rules, digits)


def fast_path(raw: str, default_region: str) -> Normalised | _Unsure | None:
    """The fast path alone: the reference's answer, or :data:`UNSURE`."""
    if len(raw) > _MAX_FAST_INPUT:
        return UNSURE
    if raw[:1] == "+":
        digits = raw[1:]
        if not (digits.isascii() and digits.isdigit()):
            if _GROUPED_DIGITS.fullmatch(digits) is None:
                return UNSURE
            digits = digits.translate(_SEPARATORS)
        if default_region == _NON_GEO:
            # parse() reloads metadata only when the number's main region differs
            # from default_region: for +800 & co. with "001" it keeps None and
            # strips no national prefix. Nobody sends "001"; not worth the branch.
            return UNSURE
        return _international(digits)
    if default_region not in _SUPPORTED_REGIONS:
        # Includes lower case: parse() then refuses national numbers outright.
        return UNSURE
    digits = raw
    if not (digits.isascii() and digits.isdigit()):
        if _GROUPED_DIGITS.fullmatch(digits) is None:
            return UNSURE
        digits = digits.translate(_SEPARATORS)
    return _national(digits, default_region)


def _normalise_uncached(raw: str, default_region: str) -> Normalised | None:
    answer = fast_path(raw, default_region)
    if isinstance(answer, _Unsure):
        return normalise_slow(raw, default_region)
    return answer


# Inputs longer than this are not remembered: a client could otherwise fill the
# memo with megabyte-long junk. Real numbers, even formatted, are far shorter.
_MAX_MEMO_KEY: Final = 64


@lru_cache(maxsize=65536)
def _memo(raw: str, default_region: str) -> Normalised | None:
    return _normalise_uncached(raw, default_region)


cache_clear = _memo.cache_clear
cache_info = _memo.cache_info


def normalise(raw: str, default_region: str) -> Normalised | None:
    """``raw`` as E.164 and its region, or ``None`` if it is not a valid number.

    Same answer as :func:`normalise_slow`. Memoised (bounded, see
    :func:`cache_clear`): campaigns re-send to the same numbers, and the answer
    depends on nothing but the arguments.
    """
    if len(raw) > _MAX_MEMO_KEY:
        return _normalise_uncached(raw, default_region)
    return _memo(raw, default_region)
