"""Amounts and dates read the way Fineract reads the client's request."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from aml.errors import Unprocessable
from serve.ingest.formats import (
    ValueDate,
    amount_to_minor,
    check_window,
    parse_amount,
    parse_currency,
    parse_hook_timestamp,
    parse_id,
    parse_java_date,
    resolve_occurred_at,
)

# --- amounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1500.5, "1500.5"),
        (10000.0, "10000"),
        (1.0e7, "10000000"),  # Gson writes this as 1.0E7
        (1.0e-4, "0.0001"),  # and this as 1.0E-4
        (250, "250"),
    ],
)
def test_json_numbers_are_read_exactly_as_printed(value: float, expected: str) -> None:
    assert parse_amount(value, locale="en", field="f") == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("1,000.00", "en", "1000.00"),
        ("1,234,567.89", "en_US", "1234567.89"),
        ("1.000,50", "de", "1000.50"),
        ("1.000,50", "de_DE", "1000.50"),
        ("1\u00a0000,50", "fr", "1000.50"),  # older Java: no-break space
        ("1\u202f000,50", "fr_FR", "1000.50"),  # Java 13+: narrow no-break space
        ("1 000,50", "fr", "1000.50"),
        ("12.345,6", "es", "12345.6"),
        ("12.345,6", "pt_BR", "12345.6"),
        ("12\u00a0345,6", "pt_PT", "12345.6"),
        ("9.999,99", "it", "9999.99"),
        ("1\u2019000.25", "de_CH", "1000.25"),
        ("1'000.25", "de-CH", "1000.25"),
        ("950.75", "en", "950.75"),
        ("950", "de", "950"),
        ("0,5", "fr", "0.5"),
    ],
)
def test_locale_strings_use_the_requests_separators(text: str, locale: str, expected: str) -> None:
    assert parse_amount(text, locale=locale, field="f") == Decimal(expected)


def test_grouping_is_lenient_like_java_so_the_booked_amount_is_read() -> None:
    # Java's DecimalFormat skips grouping separators wherever they are: Fineract booked 15.
    assert parse_amount("1.5", locale="de", field="f") == Decimal(15)


@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("1.000,50", "en"),  # de text under en
        ("1,000.00", "de"),  # en text under de
        ("12abc", "en"),
        ("1.0E7", "en"),  # exponent text is not a locale number
        ("", "en"),
        ("   ", "en"),
        ("1,,", "en"),
        (",5", "xx"),  # unknown language: only plain digits can be read
    ],
)
def test_text_that_is_not_a_number_in_its_locale_is_refused(text: str, locale: str) -> None:
    with pytest.raises(Unprocessable, match=r"request\.transactionAmount: "):
        parse_amount(text, locale=locale, field="request.transactionAmount")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, None, [1], {"a": 1}])
def test_non_amounts_are_refused_and_named(value: object) -> None:
    with pytest.raises(Unprocessable, match="transferAmount"):
        parse_amount(value, locale="en", field="request.transferAmount")


def test_literal_text_whose_type_was_lost_is_read_when_unambiguous() -> None:
    assert parse_amount("1000", locale="de", field="f", typeless=True) == Decimal(1000)
    assert parse_amount("1.0E7", locale="en", field="f", typeless=True) == Decimal(10_000_000)
    assert parse_amount("1,000.00", locale="en", field="f", typeless=True) == Decimal(1000)
    assert parse_amount("1.000,50", locale="de", field="f", typeless=True) == Decimal("1000.50")


def test_literal_text_that_reads_two_ways_is_refused_not_guessed() -> None:
    # "1500.5" is the double 1500.5 or the de string 15005: nobody can tell.
    with pytest.raises(Unprocessable, match="ambiguous"):
        parse_amount("1500.5", locale="de", field="f", typeless=True)


def test_error_messages_do_not_echo_the_value() -> None:
    with pytest.raises(Unprocessable) as info:
        parse_amount("secret-4711", locale="en", field="request.transactionAmount")
    assert "4711" not in str(info.value)
    assert "request.transactionAmount" in info.value.message


def test_amount_to_minor_applies_the_currency_exponent_and_limits() -> None:
    assert amount_to_minor(Decimal("1500.5"), currency="USD", field="f", max_major=1e12) == 150050
    assert amount_to_minor(Decimal("1500"), currency="XAF", field="f", max_major=1e12) == 1500
    assert amount_to_minor(Decimal("1.2345"), currency="KWD", field="f", max_major=1e12) == 1234
    with pytest.raises(Unprocessable, match="negative"):
        amount_to_minor(Decimal("-1"), currency="USD", field="f", max_major=1e12)
    with pytest.raises(Unprocessable, match="zero"):
        amount_to_minor(Decimal(0), currency="USD", field="f", max_major=1e12)
    with pytest.raises(Unprocessable, match="zero"):
        amount_to_minor(Decimal("0.4"), currency="XAF", field="f", max_major=1e12)
    with pytest.raises(Unprocessable, match="maximum"):
        amount_to_minor(Decimal("1000001"), currency="USD", field="f", max_major=1e6)
    assert amount_to_minor(Decimal(0), currency="USD", field="f", max_major=1, allow_zero=True) == 0


def test_ids_written_as_doubles_become_integers() -> None:
    assert parse_id(15.0, "f") == "15"
    assert parse_id(7, "f") == "7"
    assert parse_id("7.0", "f") == "7"
    assert parse_id("1.2345678E7", "f") == "12345678"
    for bad in (1.5, -1, True, "abc", None, float("inf"), 2**63, "1.5E0"):
        with pytest.raises(Unprocessable, match=r"response\.resourceId: "):
            parse_id(bad, "response.resourceId")


def test_currency_codes_are_three_letters() -> None:
    assert parse_currency(" usd ", "f") == "USD"
    with pytest.raises(Unprocessable):
        parse_currency("US", "f")


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern", "locale", "expected"),
    [
        ("15 January 2024", "dd MMMM yyyy", "en", date(2024, 1, 15)),
        ("15 JANUARY 2024", "dd MMMM yyyy", "en", date(2024, 1, 15)),  # case-insensitive
        ("5 january 2024", "dd MMMM yyyy", "en", date(2024, 1, 5)),  # lenient width
        ("2024-01-15", "yyyy-MM-dd", "en", date(2024, 1, 15)),
        ("15/01/2024", "dd/MM/yyyy", "en", date(2024, 1, 15)),
        ("15-01-2024", "dd-MM-yyyy", "fr", date(2024, 1, 15)),
        ("Jan 5, 2024", "MMM d, yyyy", "en", date(2024, 1, 5)),
        ("Sep 30, 2024", "MMM d, yyyy", "en", date(2024, 9, 30)),
        ("5 March 2024", "d MMMM uuuu", "en", date(2024, 3, 5)),
        ("15 janvier 2024", "dd MMMM yyyy", "fr", date(2024, 1, 15)),
        ("15 févr. 2024", "dd MMM yyyy", "fr_FR", date(2024, 2, 15)),
        ("1 août 2024", "d MMMM yyyy", "fr", date(2024, 8, 1)),
        ("1 AOÛT 2024", "d MMMM yyyy", "fr", date(2024, 8, 1)),
        ("15 Dezember 2024", "dd MMMM yyyy", "de", date(2024, 12, 15)),
        ("3 März 2024", "d MMMM yyyy", "de_DE", date(2024, 3, 3)),
        ("15 diciembre 2024", "dd MMMM yyyy", "es", date(2024, 12, 15)),
        ("15 março 2024", "dd MMMM yyyy", "pt_BR", date(2024, 3, 15)),
        ("15 settembre 2024", "dd MMMM yyyy", "it", date(2024, 9, 15)),
        ("15 maart 2024", "dd MMMM yyyy", "nl", date(2024, 3, 15)),
        ("15 Machi 2024", "dd MMMM yyyy", "sw", date(2024, 3, 15)),
        ("15 Jan 2024", "dd MMMM yyyy", "en", date(2024, 1, 15)),  # lenient text style
        ("20240115", "yyyyMMdd", "en", date(2024, 1, 15)),  # adjacent numeric fields
        ("15.01.24", "dd.MM.yy", "de", date(2024, 1, 15)),
        ("2024-01-15 of the year", "yyyy-MM-dd 'of the year'", "en", date(2024, 1, 15)),
        ("Monday 15 January 2024", "EEEE dd MMMM yyyy", "en", date(2024, 1, 15)),
        ("2024-01-15", "yyyy-MM-dd[ HH:mm]", "en", date(2024, 1, 15)),
    ],
)
def test_java_patterns_and_month_names(
    text: str, pattern: str, locale: str, expected: date
) -> None:
    parsed = parse_java_date(text, pattern=pattern, locale=locale, field="f")
    assert parsed == ValueDate(expected, None)


def test_optional_trailing_time_is_read() -> None:
    parsed = parse_java_date(
        "15 January 2024 14:05:09", pattern="dd MMMM yyyy", locale="en", field="f"
    )
    assert parsed == ValueDate(date(2024, 1, 15), time(14, 5, 9))


@pytest.mark.parametrize(
    ("text", "pattern", "locale", "problem"),
    [
        ("31 February 2024", "dd MMMM yyyy", "en", "not a valid calendar date"),
        ("15 Janvier 2024", "dd MMMM yyyy", "en", "does not match"),
        ("2024-01-15", "dd/MM/yyyy", "en", "does not match"),
        ("15 January 2024", "dd MMMM yyyy", "xx", "month names are not supported"),
        ("15 01 2024", "dd MM yyyy QQQ", "en", "unsupported dateFormat"),
        ("15 01 2024", "dd MM 'yyyy", "en", "unsupported dateFormat"),
        ("15 01", "dd MM", "en", "must contain day, month and year"),
        ("x", "", "en", "expected a dateFormat"),
        (None, "dd MM yyyy", "en", "expected a date string"),
        ("15 01 2024", "dd MM yyyy", 5, "expected a locale"),
    ],
)
def test_bad_dates_name_the_problem(
    text: object, pattern: str, locale: object, problem: str
) -> None:
    with pytest.raises(Unprocessable, match=problem) as info:
        parse_java_date(text, pattern=pattern, locale=locale, field="request.transactionDate")
    assert info.value.message.startswith("request.transactionDate")


def test_hook_timestamp_accepts_0_to_9_fraction_digits() -> None:
    assert parse_hook_timestamp("2024-01-15T10:20:31.482913Z") == datetime(
        2024, 1, 15, 10, 20, 31, 482913, tzinfo=UTC
    )
    assert parse_hook_timestamp("2024-01-15T10:20:31.123456789Z") == datetime(
        2024, 1, 15, 10, 20, 31, 123456, tzinfo=UTC
    )
    assert parse_hook_timestamp("2024-01-15T10:20:31Z") == datetime(
        2024, 1, 15, 10, 20, 31, tzinfo=UTC
    )
    assert parse_hook_timestamp("2024-01-15T11:20:31+01:00") == datetime(
        2024, 1, 15, 10, 20, 31, tzinfo=UTC
    )
    for bad in ("yesterday", "2024-13-45T99:00:00Z", 1705314031, None):
        assert parse_hook_timestamp(bad) is None


# --- value date to instant ---------------------------------------------------------------------

RECEIVED = datetime(2024, 2, 1, 9, 0, tzinfo=UTC)
TZ = "Africa/Douala"  # UTC+1, no DST


def test_same_local_day_as_the_hook_uses_the_hook_time() -> None:
    anchor = datetime(2024, 1, 15, 10, 20, 31, tzinfo=UTC)
    occurred, estimated = resolve_occurred_at(
        ValueDate(date(2024, 1, 15)), anchor=anchor, received_at=RECEIVED, tz=TZ
    )
    assert (occurred, estimated) == (anchor, True)


def test_other_days_are_local_noon_in_utc() -> None:
    occurred, _ = resolve_occurred_at(
        ValueDate(date(2024, 1, 10)), anchor=None, received_at=RECEIVED, tz=TZ
    )
    assert occurred == datetime(2024, 1, 10, 11, 0, tzinfo=UTC)
    occurred, _ = resolve_occurred_at(
        ValueDate(date(2024, 1, 10)), anchor=None, received_at=RECEIVED, tz="America/New_York"
    )
    assert occurred == datetime(2024, 1, 10, 17, 0, tzinfo=UTC)


def test_local_day_decides_not_the_utc_day() -> None:
    # 23:30 UTC on the 14th is 00:30 on the 15th in Douala: a "15 January" entry.
    anchor = datetime(2024, 1, 14, 23, 30, tzinfo=UTC)
    occurred, _ = resolve_occurred_at(
        ValueDate(date(2024, 1, 15)), anchor=anchor, received_at=RECEIVED, tz=TZ
    )
    assert occurred == anchor


def test_explicit_time_is_local_time() -> None:
    occurred, estimated = resolve_occurred_at(
        ValueDate(date(2024, 1, 15), time(14, 5)), anchor=None, received_at=RECEIVED, tz=TZ
    )
    assert (occurred, estimated) == (datetime(2024, 1, 15, 13, 5, tzinfo=UTC), False)


def test_sender_clock_ahead_is_capped_at_receipt() -> None:
    anchor = RECEIVED + timedelta(minutes=30)
    occurred, _ = resolve_occurred_at(
        ValueDate(RECEIVED.date()), anchor=anchor, received_at=RECEIVED, tz=TZ
    )
    assert occurred == RECEIVED


def test_window_refuses_future_and_ancient_dates() -> None:
    limits = {"max_future": timedelta(minutes=5), "max_age": timedelta(days=30)}
    check_window(RECEIVED + timedelta(minutes=4), received_at=RECEIVED, field="f", **limits)
    check_window(RECEIVED - timedelta(days=29), received_at=RECEIVED, field="f", **limits)
    with pytest.raises(Unprocessable, match=r"request\.transactionDate: .*future"):
        check_window(
            RECEIVED + timedelta(minutes=6),
            received_at=RECEIVED,
            field="request.transactionDate",
            **limits,
        )
    with pytest.raises(Unprocessable, match="older than 30 days"):
        check_window(RECEIVED - timedelta(days=31), received_at=RECEIVED, field="f", **limits)


# --- repeated reads (the date, locale and limit readers keep what they have read) ---------------


class _Text(str):
    """A ``str`` subclass: never taken by the date cache, so it shows the uncached answer."""


def test_repeated_date_reads_give_the_same_answers_and_errors() -> None:
    for _ in range(3):
        for text, pattern, locale in [
            ("15 January 2024", "dd MMMM yyyy", "en"),
            ("15 janvier 2024 14:05:09", "dd MMMM yyyy", "fr"),
            ("2024-01-15", "yyyy-MM-dd", None),
        ]:
            cached = parse_java_date(text, pattern=pattern, locale=locale, field="f")
            uncached = parse_java_date(_Text(text), pattern=pattern, locale=locale, field="f")
            assert cached == uncached
    # The same text under another field still names that field when it is refused.
    for field in ("request.transactionDate", "changes.transactionDate", "request.transactionDate"):
        with pytest.raises(Unprocessable) as info:
            parse_java_date("31 February 2024", pattern="dd MMMM yyyy", locale="en", field=field)
        assert info.value.message == f"{field}: not a valid calendar date or time"
        with pytest.raises(Unprocessable) as info:
            parse_java_date("15 January 2024", pattern="dd MMMM yyyy", locale="x", field=field)
        assert info.value.message == (
            f"{field} (locale): expected a locale such as 'en' or 'fr_FR', got a string of 1 "
            "characters"
        )


def test_repeated_locale_and_limit_reads_give_the_same_answers_and_errors() -> None:
    for _ in range(3):
        assert parse_amount("1 000,50", locale=" de_AT ", field="f") == Decimal("1000.50")
        assert parse_amount("1\u202f000,50", locale="fr", field="f") == Decimal("1000.50")
        assert parse_amount("1'000.50", locale="de-CH", field="f") == Decimal("1000.50")
        with pytest.raises(Unprocessable) as info:
            parse_amount("1", locale="1x", field="g")
        assert info.value.message.startswith("g: expected a locale")
        assert amount_to_minor(Decimal("10"), currency="USD", field="f", max_major=10) == 1000
        with pytest.raises(Unprocessable) as info:
            amount_to_minor(Decimal("10"), currency="USD", field="f", max_major=5)
        assert info.value.message == "f: amount above the accepted maximum of 5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), (12, "12"), (2**63 - 1, str(2**63 - 1)), (12.0, "12"), ("12", "12")],
)
def test_ids_in_range_are_kept(value: object, expected: str) -> None:
    assert parse_id(value, "f") == expected


@pytest.mark.parametrize("value", [-1, 2**63, True, False, 1.5, "-1", None])
def test_ids_out_of_range_or_of_the_wrong_kind_are_refused(value: object) -> None:
    with pytest.raises(Unprocessable) as info:
        parse_id(value, "f")
    assert info.value.message.startswith("f: expected a whole, non-negative id")


@pytest.mark.parametrize(
    ("plain", "with_offset"),
    [
        ("2024-01-15T10:20:31Z", "2024-01-15T10:20:31+00:00"),
        ("2024-01-15T10:20:31.482Z", "2024-01-15T10:20:31.482+00:00"),
        ("2024-01-15T10:20:31.482913Z", "2024-01-15T10:20:31.482913+00:00"),
        ("2024-02-29T23:59:59.999999Z", "2024-02-29T23:59:59.999999+00:00"),
    ],
)
def test_plain_utc_timestamps_read_like_any_other(plain: str, with_offset: str) -> None:
    # The usual "...Z" shape takes a shorter path than "+00:00": both give the same UTC instant.
    fast, general = parse_hook_timestamp(plain), parse_hook_timestamp(with_offset)
    assert fast == general
    assert fast is not None and general is not None
    assert fast.tzinfo is UTC and general.tzinfo is UTC


@pytest.mark.parametrize(
    "bad",
    [
        "2024-01-15T24:00:00Z",  # ISO's end of day: refused, as Java does
        "2024-02-30T10:00:00Z",
        "2023-02-29T10:00:00Z",
        "2024-01-15T10:60:00Z",
        "2024-01-15T10:00:60Z",
        "0000-01-15T10:00:00Z",
        "2024-00-15T10:00:00Z",
        "2024-01-15 10:20:31Z",
        "2024-01-15T10:20:31,482Z",
        "2024-01-15T10:20:31.48z",
    ],
)
def test_malformed_or_impossible_timestamps_are_ignored(bad: str) -> None:
    assert parse_hook_timestamp(bad) is None
