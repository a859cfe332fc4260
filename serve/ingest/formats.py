"""Amounts and dates as Fineract clients write them, read the way Fineract reads them.

Fineract parses request amounts with ``NumberFormat.getNumberInstance(locale)`` and request dates
with the client's own ``DateTimeFormatter`` pattern (case-insensitive, lenient, optional trailing
`` HH:mm:ss``). A hook repeats the client's text, so the product has to read it with the same
rules. Everything here is locale-table driven: nothing depends on the host's C locale, and no
``strptime`` is involved.

Error messages name the field, what was expected and what kind of value arrived, never the value
itself (request bodies can carry personal data).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aml.errors import BadRequest, ConfigError, Unprocessable
from aml.money import to_minor

__all__ = [
    "ValueDate",
    "amount_to_minor",
    "check_window",
    "describe",
    "parse_amount",
    "parse_currency",
    "parse_hook_timestamp",
    "parse_id",
    "parse_java_date",
    "resolve_occurred_at",
    "zone",
]

_MAX_TEXT = 64  # longer amount or date strings are not something a teller typed
_MAX_PATTERN = 64
_MAX_ID = 2**63 - 1  # Fineract ids are Java longs

# ---------------------------------------------------------------------------------------------
# Locales
# ---------------------------------------------------------------------------------------------

_SPACES = frozenset({" ", "\u00a0", "\u202f", "\u2009"})  # Java 13+ uses U+202F for fr
_APOSTROPHES = frozenset({"'", "\u2019"})

# (group separators accepted, decimal separator) per language, after CLDR as shipped with Java.
_LANG_SEPARATORS: dict[str, tuple[frozenset[str], str]] = {
    **{lang: (frozenset({","}), ".") for lang in ("en", "sw", "zh", "ja", "ko", "hi", "th", "he")},
    **{lang: (frozenset({"."}), ",") for lang in ("de", "es", "pt", "it", "nl", "id", "tr", "da")},
    **{lang: (_SPACES, ",") for lang in ("fr", "ru", "pl", "sv", "nb", "no", "fi", "cs", "sk")},
    **{lang: (_SPACES, ",") for lang in ("uk", "hu", "bg", "lt", "lv", "et")},
}
# Countries whose conventions differ from their language's default.
_COUNTRY_SEPARATORS: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("de", "CH"): (_APOSTROPHES, "."),
    ("fr", "CH"): (_APOSTROPHES | _SPACES, "."),
    ("it", "CH"): (_APOSTROPHES, "."),
    ("de", "AT"): (_SPACES, ","),
    ("pt", "PT"): (_SPACES, ","),
    ("es", "MX"): (frozenset({","}), "."),
    ("es", "US"): (frozenset({","}), "."),
    ("en", "ZA"): (_SPACES, ","),
}

_LOCALE_RE = re.compile(r"([A-Za-z]{2,3})(?:[_-]([A-Za-z]{2}|\d{3}))?(?:[_-][A-Za-z0-9]{1,8})*")


@lru_cache(maxsize=256)
def _locale_parts(locale: str) -> tuple[str, str] | None:
    # Cached: every amount and date of a hook names its locale, and clients use very few.
    match = _LOCALE_RE.fullmatch(locale.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").upper()


def _split_locale(locale: object, field: str) -> tuple[str, str]:
    parts = _locale_parts(locale) if isinstance(locale, str) else None
    if parts is None:
        raise Unprocessable(
            f"{field}: expected a locale such as 'en' or 'fr_FR', got {describe(locale)}"
        )
    return parts


def _separators(locale: object, field: str) -> tuple[frozenset[str], str] | None:
    lang, country = _split_locale(locale, field)
    return _COUNTRY_SEPARATORS.get((lang, country)) or _LANG_SEPARATORS.get(lang)


def describe(value: object) -> str:
    """Name the kind of a value for an error message without revealing the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else f"a string of {len(value)} characters"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def decode_text(body: bytes) -> str:
    """``body`` as strict UTF-8 text.

    Raises:
        BadRequest: the body is not valid UTF-8.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8") from None


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


# Built once: ``json.loads`` with ``parse_constant`` builds a new decoder (and scanner) per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def decode_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, refusing ``NaN`` and ``Infinity`` (no JSON standard has them).

    Raises:
        BadRequest: the body is not UTF-8, not JSON, or nested too deeply to parse.
        Unprocessable: the body is JSON but not an object.
    """
    text = decode_text(body)
    try:
        data = _JSON_DECODER.decode(text)
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Unprocessable(f"body: expected a JSON object, got {describe(data)}")
    return data


# ---------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------

_ID_TEXT = re.compile(r"\d{1,19}(?:\.0+)?")
_ID_DOUBLE_TEXT = re.compile(r"\d\.\d{1,18}E\d{1,2}")


def parse_id(value: object, field: str) -> str:
    """Read a Fineract id (integer, double such as ``15.0``, or its text) as a decimal string.

    Raises:
        Unprocessable: when the value is not a non-negative whole number that fits a Java long.
    """
    if type(value) is int and 0 <= value <= _MAX_ID:
        # The common case (a JSON integer): nothing to normalise. Everything else, bool
        # included (``type(True) is bool``), goes through the checks below.
        return str(value)
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _ID_TEXT.fullmatch(text):
            number = int(text.split(".")[0])
        elif _ID_DOUBLE_TEXT.fullmatch(text):
            # Java's Double.toString of a large id, as found in form bodies ("1.2345678E7").
            dec = Decimal(text)
            if dec == dec.to_integral_value():
                number = int(dec)
    if number is None or number < 0 or number > _MAX_ID:
        raise Unprocessable(f"{field}: expected a whole, non-negative id, got {describe(value)}")
    return str(number)


# ---------------------------------------------------------------------------------------------
# Amounts
# ---------------------------------------------------------------------------------------------

# What Gson / Java Double.toString / a JSON number literal look like as text.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_SIGNED_DIGITS = re.compile(r"-?\d+")
_ASCII_DIGITS = re.compile(r"\d*", re.ASCII)


def _number_text(text: str) -> Decimal | None:
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


def _locale_text(text: str, locale: object, field: str) -> Decimal | None:
    """Parse ``text`` like ``DecimalFormat.parse`` for ``locale``; None if it is not such text.

    Java skips grouping separators anywhere in the integer part (it is lenient about group
    sizes), so ``"1.5"`` in ``de`` is fifteen; the product books what Fineract booked.
    """
    seps = _separators(locale, field)
    if seps is None:
        # Unknown language: only text without separators can be read without guessing.
        return Decimal(text) if _SIGNED_DIGITS.fullmatch(text) else None
    groups, decimal_sep = seps
    negative = text.startswith("-")
    body = text[1:] if negative else text
    integer, _, fraction = body.partition(decimal_sep)
    if not integer and not fraction:
        return None
    if integer and (not integer[0].isdigit() or not integer[-1].isdigit()):
        return None
    digits = integer.translate(_removal_table(groups))
    if not _ASCII_DIGITS.fullmatch(digits) or not _ASCII_DIGITS.fullmatch(fraction):
        return None
    if not digits and not fraction:
        return None
    value = Decimal(f"{digits or '0'}.{fraction or '0'}")
    return -value if negative else value


@lru_cache(maxsize=32)
def _removal_table(chars: frozenset[str]) -> dict[int, None]:
    """A ``str.translate`` table deleting ``chars`` (one table per separator set, built once)."""
    return dict.fromkeys(map(ord, chars))


def parse_amount(value: object, *, locale: object, field: str, typeless: bool = False) -> Decimal:
    """Read an amount the way Fineract read the request.

    Args:
        value: a JSON number (a double in the hook: ``1500.5``, ``1.0E7``), or a string formatted
            for ``locale`` (``"1,000.00"`` en, ``"1.000,50"`` de, ``"1 000,50"`` fr).
        locale: the request's ``locale``; may be None for plain numbers.
        field: the field path, for error messages.
        typeless: True when the text may be either a number's text or a locale string because the
            type was lost (form bodies, ``changes.transactionAmount``). If both readings are
            possible and disagree, the amount is ambiguous and rejected rather than guessed.

    Returns:
        The amount as a finite ``Decimal`` (sign preserved; callers decide what is allowed).

    Raises:
        Unprocessable: naming the field when the value is not an amount.
    """
    if isinstance(value, bool) or value is None:
        raise Unprocessable(f"{field}: expected an amount, got {describe(value)}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unprocessable(f"{field}: expected a finite amount, got a non-finite number")
        # repr gives the shortest text that round-trips, i.e. the double Gson printed.
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise Unprocessable(f"{field}: expected an amount, got {describe(value)}")
    text = value.strip()
    if not text or len(text) > _MAX_TEXT:
        raise Unprocessable(f"{field}: expected an amount, got {describe(value)}")
    as_number = _number_text(text) if (typeless or locale is None) else None
    as_locale = _locale_text(text, locale, field) if locale is not None else None
    if as_number is not None and as_locale is not None and as_number != as_locale:
        raise Unprocessable(
            f"{field}: ambiguous amount text (reads differently as a number and in locale "
            f"{_locale_name(locale)}); send JSON hooks so the type is kept"
        )
    result = as_locale if as_locale is not None else as_number
    if result is None:
        where = f"in locale {_locale_name(locale)}" if locale is not None else "as a number"
        raise Unprocessable(f"{field}: expected an amount {where}, got {describe(value)}")
    if not result.is_finite():  # pragma: no cover - both readers only produce finite values
        raise Unprocessable(f"{field}: expected a finite amount")
    return result


def _locale_name(locale: object) -> str:
    if isinstance(locale, str) and _LOCALE_RE.fullmatch(locale.strip()):
        return repr(locale.strip())
    return "(invalid)"


def amount_to_minor(
    amount: Decimal, *, currency: str, field: str, max_major: float, allow_zero: bool = False
) -> int:
    """Validate a money movement's amount and convert it to integer minor units.

    Raises:
        Unprocessable: for negative amounts, zero (unless ``allow_zero``), amounts that round to
            zero minor units, or amounts above ``max_major``.
    """
    if not amount.is_finite():
        raise Unprocessable(f"{field}: expected a finite amount")
    if amount < 0:
        raise Unprocessable(f"{field}: expected a positive amount, got a negative amount")
    if amount > _max_amount(max_major):
        raise Unprocessable(f"{field}: amount above the accepted maximum of {max_major:g}")
    minor = to_minor(amount, currency)
    if minor == 0 and not allow_zero:
        raise Unprocessable(
            f"{field}: expected a positive amount, got zero ({currency} minor units)"
        )
    return minor


@lru_cache(maxsize=16)
def _max_amount(max_major: float) -> Decimal:
    # The limit is one configured value; converting it on every amount showed in profiles.
    return Decimal(repr(float(max_major)))


_CURRENCY = re.compile(r"[A-Za-z]{3}")


def parse_currency(value: object, field: str) -> str:
    """An ISO 4217 alphabetic code, upper-cased.

    Raises:
        Unprocessable: when the value is not three letters.
    """
    if isinstance(value, str) and _CURRENCY.fullmatch(value.strip()):
        return value.strip().upper()
    raise Unprocessable(
        f"{field}: expected a 3-letter ISO 4217 currency code, got {describe(value)}"
    )


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

# Month names (format and stand-alone forms, full and abbreviated) as Java's CLDR data has them.
# Lenient Java parsing accepts any text style for MMM and MMMM, so every form is accepted for both.
_MONTHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (
        ("january", "jan"),
        ("february", "feb"),
        ("march", "mar"),
        ("april", "apr"),
        ("may",),
        ("june", "jun"),
        ("july", "jul"),
        ("august", "aug"),
        ("september", "sep", "sept"),
        ("october", "oct"),
        ("november", "nov"),
        ("december", "dec"),
    ),
    "fr": (
        ("janvier", "janv."),
        ("février", "févr."),
        ("mars",),
        ("avril", "avr."),
        ("mai",),
        ("juin",),
        ("juillet", "juil."),
        ("août",),
        ("septembre", "sept."),
        ("octobre", "oct."),
        ("novembre", "nov."),
        ("décembre", "déc."),
    ),
    "de": (
        ("januar", "jan."),
        ("februar", "feb."),
        ("märz", "mär."),
        ("april", "apr."),
        ("mai",),
        ("juni", "jun."),
        ("juli", "jul."),
        ("august", "aug."),
        ("september", "sept.", "sep."),
        ("oktober", "okt."),
        ("november", "nov."),
        ("dezember", "dez."),
    ),
    "es": (
        ("enero", "ene."),
        ("febrero", "feb."),
        ("marzo", "mar."),
        ("abril", "abr."),
        ("mayo", "may."),
        ("junio", "jun."),
        ("julio", "jul."),
        ("agosto", "ago."),
        ("septiembre", "setiembre", "sept.", "sep.", "set."),
        ("octubre", "oct."),
        ("noviembre", "nov."),
        ("diciembre", "dic."),
    ),
    "pt": (
        ("janeiro", "jan."),
        ("fevereiro", "fev."),
        ("março", "mar."),
        ("abril", "abr."),
        ("maio", "mai."),
        ("junho", "jun."),
        ("julho", "jul."),
        ("agosto", "ago."),
        ("setembro", "set."),
        ("outubro", "out."),
        ("novembro", "nov."),
        ("dezembro", "dez."),
    ),
    "it": (
        ("gennaio", "gen."),
        ("febbraio", "feb."),
        ("marzo", "mar."),
        ("aprile", "apr."),
        ("maggio", "mag."),
        ("giugno", "giu."),
        ("luglio", "lug."),
        ("agosto", "ago."),
        ("settembre", "set."),
        ("ottobre", "ott."),
        ("novembre", "nov."),
        ("dicembre", "dic."),
    ),
    "nl": (
        ("januari", "jan."),
        ("februari", "feb."),
        ("maart", "mrt."),
        ("april", "apr."),
        ("mei",),
        ("juni", "jun."),
        ("juli", "jul."),
        ("augustus", "aug."),
        ("september", "sep.", "sept."),
        ("oktober", "okt."),
        ("november", "nov."),
        ("december", "dec."),
    ),
    "sw": (
        ("januari", "jan"),
        ("februari", "feb"),
        ("machi", "mac"),
        ("aprili", "apr"),
        ("mei",),
        ("juni", "jun"),
        ("julai", "jul"),
        ("agosti", "ago"),
        ("septemba", "sep"),
        ("oktoba", "okt"),
        ("novemba", "nov"),
        ("desemba", "des"),
    ),
}


def _month_lookup(lang: str) -> dict[str, int] | None:
    table = _MONTHS.get(lang)
    if table is None:
        return None
    lookup: dict[str, int] = {}
    for month, names in enumerate(table, start=1):
        for name in names:
            for form in {name, name.rstrip(".")}:
                lookup[form.casefold()] = month
    return lookup


_MONTH_LOOKUPS: dict[str, dict[str, int]] = {
    lang: lookup for lang in _MONTHS if (lookup := _month_lookup(lang)) is not None
}


@dataclass(frozen=True, slots=True)
class ValueDate:
    """A date read from a request, with the time of day when the text carried one."""

    day: date
    time_of_day: time | None = None


@dataclass(frozen=True, slots=True)
class _Field:
    group: str
    kind: str  # "day", "month", "month_name", "year", "year2", "hour", "minute", "second", "skip"


@dataclass(frozen=True, slots=True)
class _Compiled:
    regex: re.Pattern[str]
    fields: tuple[_Field, ...]


def _tokenize(pattern: str) -> list[tuple[str, str | int]]:
    """Split a Java pattern into ("letter", count) runs, ("lit", text) and ("[" | "]", 0)."""
    tokens: list[tuple[str, str | int]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = i + 1
            text = []
            while True:
                if end >= len(pattern):
                    raise ValueError("unterminated quote")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            tokens.append(("lit", "".join(text) if end > i + 1 else "'"))
            i = end + 1
        elif ch in "[]":
            tokens.append((ch, 0))
            i += 1
        elif ch in "#{}":
            raise ValueError("reserved character")
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == ch:
                j += 1
            tokens.append((ch, j - i))
            i = j
        else:
            tokens.append(("lit", ch))
            i += 1
    return tokens


_NUMERIC_LETTERS = {"d": "day", "M": "month", "L": "month", "y": "year", "u": "year"}
_NUMERIC_LETTERS |= {"H": "hour", "m": "minute", "s": "second"}


@lru_cache(maxsize=512)
def _compile(pattern: str, lang: str) -> _Compiled:
    tokens = _tokenize(pattern)
    if len(tokens) > 40:
        raise ValueError("too many pattern elements")
    parts: list[str] = []
    fields: list[_Field] = []
    depth = 0

    def numeric(idx: int) -> bool:
        tok, count = tokens[idx]
        if tok not in _NUMERIC_LETTERS:
            return False
        return not (tok in "ML" and isinstance(count, int) and count >= 3)

    for idx, (tok, count) in enumerate(tokens):
        if tok == "lit":
            assert isinstance(count, str)
            # Fineract parses leniently: a space in the pattern also matches the non-breaking
            # spaces some locales put in dates.
            parts.append("".join(r"[ \u00a0\u202f]" if c == " " else re.escape(c) for c in count))
            continue
        if tok == "[":
            depth += 1
            parts.append("(?:")
            continue
        if tok == "]":
            if depth == 0:
                raise ValueError("unbalanced ]")
            depth -= 1
            parts.append(")?")
            continue
        assert isinstance(count, int)
        group = f"f{len(fields)}"
        adjacent = idx + 1 < len(tokens) and numeric(idx + 1)
        if tok in "ML" and count >= 3:
            lookup = _MONTH_LOOKUPS.get(lang)
            if lookup is None:
                raise LookupError(lang)
            names = sorted(lookup, key=len, reverse=True)
            parts.append(f"(?P<{group}>{'|'.join(re.escape(n) for n in names)})")
            fields.append(_Field(group, "month_name"))
        elif tok == "E":
            parts.append(rf"(?P<{group}>[^\W\d_]{{2,12}}\.?)")
            fields.append(_Field(group, "skip"))
        elif tok in _NUMERIC_LETTERS:
            kind = _NUMERIC_LETTERS[tok]
            if kind == "year" and count == 2:
                width = r"\d{2}"
                kind = "year2"
            elif adjacent:
                width = rf"\d{{{count}}}"
            elif kind == "year":
                width = r"\d{1,4}"
            else:
                width = r"\d{1,2}"
            if count > 4:
                raise ValueError("field too wide")
            parts.append(f"(?P<{group}>{width})")
            fields.append(_Field(group, kind))
        else:
            raise ValueError(f"unsupported pattern letter {tok!r}")
    if depth:
        raise ValueError("unbalanced [")
    # Fineract appends an optional " HH:mm:ss" to every pattern.
    n = len(fields)
    parts.append(rf"(?:[ T](?P<f{n}>\d{{1,2}}):(?P<f{n + 1}>\d{{1,2}}):(?P<f{n + 2}>\d{{1,2}}))?")
    fields += [
        _Field(f"f{n}", "hour"),
        _Field(f"f{n + 1}", "minute"),
        _Field(f"f{n + 2}", "second"),
    ]
    regex = re.compile("".join(parts), re.IGNORECASE | re.UNICODE)
    return _Compiled(regex, tuple(fields))


def parse_java_date(text: object, *, pattern: object, locale: object, field: str) -> ValueDate:
    """Parse a request date with the client's Java ``DateTimeFormatter`` pattern and locale.

    Supports the pattern letters Fineract clients use: ``d``, ``M``/``L`` (numeric or, from three
    letters on, month names of the locale: en, fr, de, es, pt, it, nl, sw), ``y``/``u``
    (``yy`` is 2000-2099), ``E`` (day name, ignored), ``H``, ``m``, ``s``, quoted literals and
    ``[optional]`` sections. Matching is case-insensitive and numeric fields accept one or two
    digits, like Fineract's lenient parser; a trailing `` HH:mm:ss`` is always accepted.

    Raises:
        Unprocessable: naming the field when the text, pattern or locale cannot be used.
    """
    if type(text) is str and type(pattern) is str and (locale is None or type(locale) is str):
        # Hooks of one day repeat the same few date texts, patterns and locales. Only successful
        # reads are cached (lru_cache does not keep exceptions), so errors are built afresh.
        return _read_java_date_cached(text, pattern, locale, field)
    return _read_java_date(text, pattern, locale, field)


def _read_java_date(text: object, pattern: object, locale: object, field: str) -> ValueDate:
    if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > _MAX_PATTERN:
        raise Unprocessable(f"{field}: expected a dateFormat pattern, got {describe(pattern)}")
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
        raise Unprocessable(f"{field}: expected a date string, got {describe(text)}")
    lang = _split_locale(locale, f"{field} (locale)")[0] if locale is not None else "en"
    try:
        compiled = _compile(pattern.strip(), lang)
    except LookupError:
        raise Unprocessable(
            f"{field}: month names are not supported for locale {_locale_name(locale)}"
        ) from None
    except (ValueError, re.error) as exc:
        raise Unprocessable(f"{field}: unsupported dateFormat pattern ({exc})") from None
    match = compiled.regex.fullmatch(text.strip())
    if match is None:
        raise Unprocessable(f"{field}: date does not match its dateFormat pattern")
    values: dict[str, int] = {}
    for fld in compiled.fields:
        raw = match.group(fld.group)
        if raw is None or fld.kind == "skip":
            continue
        if fld.kind == "month_name":
            values["month"] = _MONTH_LOOKUPS[lang][raw.casefold()]
        elif fld.kind == "year2":
            values["year"] = 2000 + int(raw)
        else:
            values[fld.kind] = int(raw)
    if not {"day", "month", "year"} <= values.keys():
        raise Unprocessable(f"{field}: dateFormat pattern must contain day, month and year")
    try:
        day = date(values["year"], values["month"], values["day"])
        clock = (
            time(values["hour"], values.get("minute", 0), values.get("second", 0))
            if "hour" in values
            else None
        )
    except ValueError:
        raise Unprocessable(f"{field}: not a valid calendar date or time") from None
    return ValueDate(day, clock)


# A pure function of its arguments (all strings or None here) returning a frozen value.
_read_java_date_cached = lru_cache(maxsize=1024)(_read_java_date)


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})"
)
# The shape nearly every hook has: UTC, whole seconds with 0, 3 or 6 fraction digits, ASCII only.
# For it ``datetime.fromisoformat`` gives the same instant as the general path below, several times
# faster (building the datetime field by field was most of the cost of this function).
_PLAIN_UTC_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3}|\.\d{6})?Z", re.ASCII
)


def parse_hook_timestamp(value: object) -> datetime | None:
    """The hook's ``timestamp`` (``Instant.toString()``: UTC, ``Z``, 0-9 fraction digits).

    Returns None when absent or malformed: the publish time is a hint, never a reason to refuse
    a money event.
    """
    if not isinstance(value, str) or len(value) > 40:
        return None
    # Hour 24 is left to the general path, which (like Java) refuses it: ISO 8601 allows "24:00"
    # as the end of a day, and newer Pythons' fromisoformat may read it as the next midnight.
    if _PLAIN_UTC_TIMESTAMP.fullmatch(value) and value[11:13] < "24":
        try:
            # A zero offset comes back as the ``UTC`` singleton, as the general path gives.
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, tz = match.groups()
    try:
        result = datetime(
            int(y),
            int(mo),
            int(d),
            int(h),
            int(mi),
            int(s or 0),
            int((frac or "0")[:6].ljust(6, "0")),
        )
        if tz == "Z":
            return result.replace(tzinfo=UTC)
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
        return (result - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The institution's time zone.

    Raises:
        ConfigError: when the zone is unknown (a deployment error, not bad input).
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r}") from exc


def resolve_occurred_at(
    value: ValueDate | None, *, anchor: datetime | None, received_at: datetime, tz: str
) -> tuple[datetime, bool]:
    """Turn a Fineract business date into the UTC instant of the movement.

    Fineract dates are the institution's local calendar dates (time zone ``tz``), usually with
    no time of day. The rule, applied the same way everywhere:

    1. A date that carried a time (``... HH:mm:ss``) is that local time.
    2. A date equal to the local date of the ``anchor`` (the hook's publish ``timestamp``, else
       ``received_at``) is the anchor itself, capped at ``received_at`` because a movement cannot
       follow its own receipt (this absorbs clock skew): same-day events keep their real order and
       spacing, which velocity features depend on.
    3. Any other date (backdated or forward-dated entries) is local noon of that date. Noon keeps
       the UTC instant on the same calendar day for every zone within +/-11 h, so daily totals
       do not shift a movement into the neighbouring day.
    4. No date at all (legacy bodies without ``request``) is the anchor, as in 2.

    Returns:
        ``(occurred_at, estimated)``; ``estimated`` is True when the time of day was not given.
    """
    received = received_at.astimezone(UTC)
    base = anchor.astimezone(UTC) if anchor is not None else received
    capped = min(base, received)
    local_zone = zone(tz)
    if value is None:
        return capped, True
    if value.time_of_day is not None:
        local = datetime.combine(value.day, value.time_of_day, tzinfo=local_zone)
        return local.astimezone(UTC), False
    if value.day == base.astimezone(local_zone).date():
        return capped, True
    try:
        noon = datetime.combine(value.day, time(12), tzinfo=local_zone).astimezone(UTC)
    except (OverflowError, ValueError):
        noon = datetime.combine(value.day, time(12), tzinfo=UTC)
    return noon, True


def check_window(
    occurred_at: datetime,
    *,
    received_at: datetime,
    max_future: timedelta,
    max_age: timedelta,
    field: str,
) -> None:
    """Reject value dates too far in the future or the past relative to receipt.

    Raises:
        Unprocessable: naming the field and the limit that was crossed.
    """
    received = received_at.astimezone(UTC)
    if occurred_at > received + max_future:
        raise Unprocessable(
            f"{field}: date is more than {int(max_future.total_seconds())} s in the future"
        )
    if occurred_at < received - max_age:
        raise Unprocessable(f"{field}: date is older than {max_age.days} days")
