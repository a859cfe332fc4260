"""Fineract hook deliveries (the documented bodies and their quirks) to domain transactions."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from aml.domain import (
    Direction,
    IngestOutcome,
    Transaction,
    TransactionStatus,
    TransactionType,
    stable_id,
)
from aml.errors import BadRequest, Unprocessable, UnsupportedMediaType
from aml.settings import Settings
from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.fineract import parse_fineract, parse_java_map

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fineract"
HEADERS: dict[str, dict[str, str]] = json.loads((FIXTURES / "headers.json").read_text())
JSON = "application/json; charset=UTF-8"
FORM = "application/x-www-form-urlencoded"
RECEIVED = datetime(2024, 2, 1, 9, 0, tzinfo=UTC)  # after every value date in the examples
HOOK_TIME = datetime(2024, 1, 15, 10, 20, 31, 482913, tzinfo=UTC)  # the examples' "timestamp"
OPTIONS = ParseOptions(default_currency="USD")  # two decimals, so cents are visible


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def body(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw(name))
    return data


def parse(
    payload: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = JSON,
    received_at: datetime = RECEIVED,
    options: ParseOptions = OPTIONS,
) -> ParsedEvent:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_fineract(
        headers or {},
        data,
        content_type=content_type,
        received_at=received_at,
        options=options,
    )


def fixture(name: str, **kwargs: Any) -> ParsedEvent:
    return parse(raw(name), HEADERS[name], content_type=HEADERS[name]["Content-Type"], **kwargs)


def tx_of(event: ParsedEvent) -> Transaction:
    assert event.transaction is not None
    return event.transaction


def java_double(value: float) -> str:
    """Java's Double.toString: plain between 1e-3 and 1e7, else computerised scientific."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    power = exponent + len(mantissa) - 1
    rest = mantissa[1:] or "0"
    return f"{'-' if sign else ''}{mantissa[0]}.{rest}E{power}"


def java_string(value: Any) -> str:
    """String.valueOf of what Gson made of the wrapper (every number a double)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return java_double(float(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    return str(value)


def form_body(wrapper: dict[str, Any]) -> bytes:
    """The form body Fineract sends for a hook configured with Content Type "form"."""
    pairs = [(key, java_string(value)) for key, value in wrapper.items()]
    return urlencode(pairs, quote_via=quote, safe="").encode()


# --- the documented money events -----------------------------------------------------------------


def test_savings_deposit_example() -> None:
    event = fixture("savings_deposit")
    assert (event.outcome, event.tenant, event.source) == (
        IngestOutcome.ACCEPTED,
        "default",
        "fineract",
    )
    assert (event.entity, event.action) == ("SAVINGSACCOUNT", "DEPOSIT")
    assert event.dedupe_key == "SAVINGSACCOUNT|DEPOSIT|345"
    assert event.note is None
    tx = tx_of(event)
    assert tx.id == stable_id("default", "SAVINGSACCOUNT|DEPOSIT|345")
    assert tx.dedupe_key == event.dedupe_key
    assert (tx.type, tx.direction, tx.status) == (
        TransactionType.DEPOSIT,
        Direction.IN,
        TransactionStatus.PENDING,
    )
    assert (tx.amount_minor, tx.currency) == (150050, "USD")
    assert tx.account_id == "savings:12"
    assert (tx.external_id, tx.client_id, tx.office_id, tx.group_id) == ("345", "7", "1", None)
    # Same local day as the hook's publish time: the publish time is the best time known.
    assert tx.occurred_at == HOOK_TIME
    assert tx.received_at == RECEIVED
    assert tx.description == "Cash deposit at branch"
    # accountNumber is the payment detail typed by the teller, not Fineract's accountNo.
    assert tx.account_no is None
    assert tx.attributes["accountNumber"] == "ACC-9981"
    assert tx.attributes["receiptNumber"] == "RCPT-001"
    assert tx.attributes["paymentTypeId"] == "1"
    assert tx.attributes["createdBy"] == "1"
    assert "amount_unknown" not in tx.attributes


def test_savings_withdrawal_example_with_locale_string_amount() -> None:
    event = fixture("savings_withdrawal")
    tx = tx_of(event)
    assert event.dedupe_key == "SAVINGSACCOUNT|WITHDRAWAL|346"
    assert (tx.type, tx.direction, tx.amount_minor) == (
        TransactionType.WITHDRAWAL,
        Direction.OUT,
        100000,
    )
    # 16 January is not the hook's day: local noon in Douala (UTC+1).
    assert tx.occurred_at == datetime(2024, 1, 16, 11, 0, tzinfo=UTC)
    assert tx.attributes["paymentTypeId"] == "2"


def test_account_transfer_example() -> None:
    event = fixture("account_transfer")
    tx = tx_of(event)
    assert event.dedupe_key == "ACCOUNTTRANSFER|CREATE|88"
    assert (tx.type, tx.direction, tx.amount_minor) == (
        TransactionType.TRANSFER,
        Direction.OUT,
        25000,
    )
    assert (tx.account_id, tx.counterparty_account_id) == ("savings:12", "savings:15")
    assert (tx.client_id, tx.counterparty_client_id) == ("7", "9")
    assert tx.office_id == "1"
    assert tx.loan_id is None
    assert tx.external_id == "88"
    assert tx.description == "Rent share"
    assert tx.occurred_at == datetime(2024, 1, 17, 11, 0, tzinfo=UTC)


def test_loan_disbursement_example() -> None:
    event = fixture("loan_disburse")
    tx = tx_of(event)
    assert event.dedupe_key == "LOAN|DISBURSE|501"
    assert (tx.type, tx.account_id, tx.loan_id, tx.external_id) == (
        TransactionType.LOAN_DISBURSEMENT,
        "loan:21",
        "21",
        "501",
    )
    assert tx.amount_minor == 1_000_000
    assert tx.occurred_at == datetime(2024, 1, 10, 11, 0, tzinfo=UTC)
    assert tx.description == "Disbursed in cash"


def test_loan_repayment_example() -> None:
    event = fixture("loan_repayment")
    tx = tx_of(event)
    assert event.dedupe_key == "LOAN|REPAYMENT|502"
    assert (tx.type, tx.direction, tx.account_id, tx.loan_id) == (
        TransactionType.LOAN_REPAYMENT,
        Direction.IN,
        "loan:21",
        "21",
    )
    assert (tx.amount_minor, tx.external_id) == (95075, "502")
    assert tx.attributes["externalId"] == "rp-2024-01-31-0001"
    assert tx.occurred_at == datetime(2024, 1, 31, 11, 0, tzinfo=UTC)


def test_every_example_is_utc_aware() -> None:
    for name in HEADERS:
        event = fixture(name)
        if event.transaction is not None:
            assert event.transaction.occurred_at.utcoffset() == timedelta(0)
            assert event.transaction.received_at.utcoffset() == timedelta(0)


# --- failed commands ---------------------------------------------------------------------------


def test_failed_command_without_response_is_a_rejected_attempt() -> None:
    event = fixture("failed_withdrawal")
    assert event.outcome == IngestOutcome.REJECTED_COMMAND
    assert (event.entity, event.action) == ("SAVINGSACCOUNT", "WITHDRAWAL")
    assert event.transaction is None
    assert event.dedupe_key is None
    assert event.note is not None and "command failed" in event.note


def test_failed_command_in_the_1_5_to_1_8_error_shape() -> None:
    payload = body("failed_withdrawal") | {
        "status": "Exception",
        "response": {
            "developerMessage": "Insufficient balance for client Jane Doe",
            "httpStatusCode": "403",
            "defaultUserMessage": "Insufficient balance for client Jane Doe",
            "userMessageGlobalisationCode": "error.msg.savingsaccount.insufficient.balance",
            "errors": [{"developerMessage": "Jane Doe"}],
        },
    }
    event = parse(payload, HEADERS["failed_withdrawal"])
    assert event.outcome == IngestOutcome.REJECTED_COMMAND
    assert event.transaction is None
    assert event.note is not None
    assert "HTTP 403" in event.note
    assert "error.msg.savingsaccount.insufficient.balance" in event.note
    assert "Jane" not in event.note


def test_error_shaped_response_without_status_is_still_a_failure() -> None:
    payload = body("savings_deposit") | {"response": {"httpStatusCode": 400, "errors": []}}
    event = parse(payload, HEADERS["savings_deposit"])
    assert event.outcome == IngestOutcome.REJECTED_COMMAND
    assert event.transaction is None


# --- headers, tenants, body generations ----------------------------------------------------------


@pytest.mark.parametrize("transform", [str.lower, str.upper, lambda name: name])
def test_header_names_are_case_insensitive(transform: Any) -> None:
    headers = {transform(k): v for k, v in HEADERS["loan_repayment"].items()}
    payload = body("loan_repayment")
    del payload["entityName"], payload["actionName"]
    event = parse(payload, headers | {transform("Fineract-Platform-TenantId"): "bank2"})
    assert (event.entity, event.action, event.tenant) == ("LOAN", "REPAYMENT", "bank2")
    assert tx_of(event).tenant == "bank2"


def test_missing_headers_use_the_body_and_the_default_tenant() -> None:
    event = parse(raw("savings_deposit"), {})
    assert (event.tenant, event.entity, event.action) == ("default", "SAVINGSACCOUNT", "DEPOSIT")
    assert event.outcome == IngestOutcome.ACCEPTED
    other = ParseOptions(default_tenant="main")
    assert tx_of(parse(raw("savings_deposit"), {}, options=other)).tenant == "main"


def test_tenants_get_distinct_ids_for_the_same_fineract_ids() -> None:
    one = tx_of(parse(raw("savings_deposit"), {"Fineract-Platform-TenantId": "one"}))
    two = tx_of(parse(raw("savings_deposit"), {"Fineract-Platform-TenantId": "two"}))
    assert one.dedupe_key == two.dedupe_key
    assert one.id != two.id


def test_body_wins_over_disagreeing_headers_and_says_so() -> None:
    headers = HEADERS["savings_deposit"] | {"X-Fineract-Action": "WITHDRAWAL"}
    event = parse(raw("savings_deposit"), headers)
    assert event.action == "DEPOSIT"
    assert tx_of(event).direction == Direction.IN
    assert event.note is not None and "WITHDRAWAL" in event.note and "body used" in event.note


def test_bad_tenant_header_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="TenantId"):
        parse(raw("savings_deposit"), {"Fineract-Platform-TenantId": "../../etc"})


def test_legacy_bare_result_with_mifos_headers() -> None:
    event = fixture("legacy_savings_deposit")
    tx = tx_of(event)
    assert event.outcome == IngestOutcome.ACCEPTED
    assert event.dedupe_key == "SAVINGSACCOUNT|DEPOSIT|345"
    assert (tx.account_id, tx.client_id, tx.office_id) == ("savings:12", "7", "1")
    # No request, so no amount or date: enrichment fills them in.
    assert tx.amount_minor == 0
    assert tx.attributes["amount_unknown"] is True
    assert tx.occurred_at == RECEIVED
    # Same dedupe key as the modern body of the same transaction.
    assert tx.id == tx_of(fixture("savings_deposit")).id


def test_legacy_body_without_entity_headers_is_unprocessable() -> None:
    with pytest.raises(Unprocessable, match="X-Fineract-Entity"):
        parse(raw("legacy_savings_deposit"), {})


def test_legacy_repayment_takes_the_literal_amount_from_changes() -> None:
    payload = {
        "officeId": 1,
        "clientId": 7,
        "loanId": 21,
        "resourceId": 502,
        "changes": {
            "transactionDate": "31 January 2024",
            "transactionAmount": "1000",
            "locale": "en",
            "dateFormat": "dd MMMM yyyy",
        },
    }
    headers = {"X-Fineract-Entity": "LOAN", "X-Fineract-Action": "REPAYMENT"}
    tx = tx_of(parse(payload, headers))
    assert tx.amount_minor == 100000
    assert tx.occurred_at == datetime(2024, 1, 31, 11, 0, tzinfo=UTC)


def test_unrecognised_body_is_unprocessable() -> None:
    with pytest.raises(Unprocessable, match="expected a Fineract hook wrapper"):
        parse({"hello": "world"}, HEADERS["savings_deposit"])


# --- amounts, locales, dates ---------------------------------------------------------------------


def with_request(name: str, **request: Any) -> dict[str, Any]:
    payload = body(name)
    payload["request"] = payload["request"] | request
    return payload


@pytest.mark.parametrize(
    ("literal", "minor"),
    [("1.0E7", 1_000_000_000), ("1.0E-4", None), ("10000.0", 1_000_000), ("1500.50", 150050)],
)
def test_json_double_amounts_as_gson_writes_them(literal: str, minor: int | None) -> None:
    data = raw("savings_deposit").replace(
        b'"transactionAmount":1500.5', b'"transactionAmount":' + literal.encode()
    )
    if minor is None:
        # 0.0001 USD is below one cent: not a money movement.
        with pytest.raises(Unprocessable, match=r"request\.transactionAmount.*zero"):
            parse(data, HEADERS["savings_deposit"])
        return
    assert tx_of(parse(data, HEADERS["savings_deposit"])).amount_minor == minor


@pytest.mark.parametrize(
    ("locale", "amount", "date_text", "pattern", "expected_day"),
    [
        ("fr", "1\u202f000,50", "15 janvier 2024", "dd MMMM yyyy", 15),
        ("fr_FR", "1\u00a0000,50", "12 janv. 2024", "dd MMM yyyy", 12),
        ("de", "1.000,50", "12. Januar 2024", "dd. MMMM yyyy", 12),
        ("es", "1.000,50", "12 de enero de 2024", "dd 'de' MMMM 'de' yyyy", 12),
        ("pt_BR", "1.000,50", "12/01/2024", "dd/MM/yyyy", 12),
        ("it", "1.000,50", "12-01-2024", "dd-MM-yyyy", 12),
        ("en", "1,000.50", "Jan 12, 2024", "MMM d, yyyy", 12),
        ("en", "1,000.50", "2024-01-12", "yyyy-MM-dd", 12),
    ],
)
def test_locales_and_date_formats(
    locale: str, amount: str, date_text: str, pattern: str, expected_day: int
) -> None:
    payload = with_request(
        "savings_deposit",
        locale=locale,
        transactionAmount=amount,
        transactionDate=date_text,
        dateFormat=pattern,
    )
    tx = tx_of(parse(payload, HEADERS["savings_deposit"]))
    assert tx.amount_minor == 100050
    assert tx.occurred_at.date() == datetime(2024, 1, expected_day).date()


def test_currency_comes_from_the_body_when_present() -> None:
    payload = with_request("savings_deposit", currencyCode="eur")
    assert tx_of(parse(payload)).currency == "EUR"
    default = tx_of(fixture("savings_deposit", options=ParseOptions()))
    assert (default.currency, default.amount_minor) == ("XAF", 1500)  # XAF has no minor unit


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        (0, "zero"),
        ("0.00", "zero"),
        (-5.0, "negative"),
        ("-5.00", "negative"),
        (2e12, "maximum"),
        ("lots", "expected an amount"),
        (True, "expected an amount"),
        ({"value": 1}, "expected an amount"),
    ],
)
def test_bad_amounts_are_refused_naming_the_field(amount: Any, problem: str) -> None:
    with pytest.raises(Unprocessable, match=problem) as info:
        parse(with_request("savings_deposit", transactionAmount=amount))
    assert info.value.message.startswith("request.transactionAmount")


def test_value_dates_too_far_ahead_or_back_are_refused() -> None:
    ahead = with_request("savings_deposit", transactionDate="16 January 2024")
    with pytest.raises(Unprocessable, match=r"request\.transactionDate.*future"):
        parse(ahead, received_at=HOOK_TIME + timedelta(seconds=1))
    old = with_request("savings_deposit", transactionDate="15 January 2018")
    with pytest.raises(Unprocessable, match=r"request\.transactionDate.*older"):
        parse(old)


def test_date_without_pattern_is_refused() -> None:
    payload = body("savings_deposit")
    del payload["request"]["dateFormat"]
    with pytest.raises(Unprocessable, match=r"request\.transactionDate: expected a dateFormat"):
        parse(payload)


def test_date_with_time_of_day_is_exact() -> None:
    payload = with_request("savings_deposit", transactionDate="15 January 2024 09:30:00")
    tx = tx_of(parse(payload))
    assert tx.occurred_at == datetime(2024, 1, 15, 8, 30, tzinfo=UTC)
    assert "time_estimated" not in tx.attributes


def test_missing_required_ids_are_named() -> None:
    payload = body("savings_deposit")
    del payload["response"]["resourceId"]
    with pytest.raises(Unprocessable, match=r"response\.resourceId: required"):
        parse(payload)
    payload = body("savings_deposit")
    payload["response"]["savingsId"] = "twelve"
    with pytest.raises(Unprocessable, match=r"response\.savingsId"):
        parse(payload)


# --- group accounts, deposit products ------------------------------------------------------------


def test_group_account_has_group_and_no_client() -> None:
    payload = body("savings_deposit")
    del payload["clientId"], payload["response"]["clientId"]
    payload["response"]["groupId"] = 4
    tx = tx_of(parse(payload))
    assert (tx.group_id, tx.client_id) == ("4", None)


@pytest.mark.parametrize(
    ("entity", "action", "tx_type", "direction"),
    [
        ("FIXEDDEPOSITACCOUNT", "DEPOSIT", TransactionType.FIXED_DEPOSIT, Direction.IN),
        ("RECURRINGDEPOSITACCOUNT", "DEPOSIT", TransactionType.RECURRING_DEPOSIT, Direction.IN),
        ("RECURRINGDEPOSITACCOUNT", "WITHDRAWAL", TransactionType.WITHDRAWAL, Direction.OUT),
        ("FIXEDDEPOSITACCOUNT", "WITHDRAWAL", TransactionType.WITHDRAWAL, Direction.OUT),
    ],
)
def test_deposit_products(
    entity: str, action: str, tx_type: TransactionType, direction: Direction
) -> None:
    payload = body("savings_deposit") | {"entityName": entity, "actionName": action}
    event = parse(payload)
    assert event.dedupe_key == f"{entity}|{action}|345"
    tx = tx_of(event)
    assert (tx.type, tx.direction, tx.account_id) == (tx_type, direction, "savings:12")


# --- transfers between loans and savings ---------------------------------------------------------


def test_transfer_from_loan_to_savings() -> None:
    payload = with_request(
        "account_transfer", fromAccountType=1.0, fromAccountId=21.0, toAccountType=2.0
    )
    payload["response"] = {"loanId": 21, "resourceId": 89}
    tx = tx_of(parse(payload))
    assert (tx.account_id, tx.counterparty_account_id, tx.loan_id) == (
        "loan:21",
        "savings:15",
        "21",
    )


def test_transfer_from_savings_to_loan() -> None:
    payload = with_request("account_transfer", toAccountType=1.0, toAccountId=21.0)
    tx = tx_of(parse(payload))
    assert (tx.account_id, tx.counterparty_account_id, tx.loan_id) == (
        "savings:12",
        "loan:21",
        "21",
    )


def test_transfer_with_unknown_account_type_is_refused() -> None:
    with pytest.raises(Unprocessable, match=r"request\.toAccountType: expected 1 \(loan\)"):
        parse(with_request("account_transfer", toAccountType=3.0))


def test_transfer_without_request_falls_back_to_the_response_source() -> None:
    payload = body("account_transfer")
    del payload["request"]
    tx = tx_of(parse(payload, received_at=HOOK_TIME + timedelta(seconds=2)))
    assert (tx.account_id, tx.counterparty_account_id) == ("savings:12", None)
    assert tx.attributes["amount_unknown"] is True


# --- disbursements --------------------------------------------------------------------------------


def test_multi_tranche_disbursements_are_distinct_and_redeliveries_are_not() -> None:
    first = body("loan_disburse")
    second = body("loan_disburse")
    second["response"]["subResourceId"] = 601
    a, b = parse(first), parse(second)
    assert a.dedupe_key == "LOAN|DISBURSE|501"
    assert b.dedupe_key == "LOAN|DISBURSE|601"
    assert tx_of(a).id != tx_of(b).id
    again = parse(raw("loan_disburse"), HEADERS["loan_disburse"])
    assert tx_of(again).id == tx_of(a).id


def test_disbursement_without_amount_is_marked_for_enrichment() -> None:
    payload = body("loan_disburse")
    del payload["request"]["transactionAmount"]
    tx = tx_of(parse(payload))
    assert tx.amount_minor == 0
    assert tx.attributes["amount_unknown"] is True
    assert tx.occurred_at == datetime(2024, 1, 10, 11, 0, tzinfo=UTC)


def test_disbursement_to_savings_is_keyed_on_loan_and_date() -> None:
    payload = body("loan_disburse") | {"actionName": "DISBURSETOSAVINGS"}
    del payload["response"]["subResourceId"]
    event = parse(payload)
    assert event.dedupe_key == "LOAN|DISBURSETOSAVINGS|21|2024-01-10"
    tx = tx_of(event)
    assert (tx.external_id, tx.account_id, tx.type) == (
        None,
        "loan:21",
        TransactionType.LOAN_DISBURSEMENT,
    )
    # The same value date written differently is the same disbursement.
    payload["request"] |= {"actualDisbursementDate": "2024-01-10", "dateFormat": "yyyy-MM-dd"}
    assert parse(payload).dedupe_key == event.dedupe_key


# --- repayments -----------------------------------------------------------------------------------


def test_repayment_falls_back_to_the_literal_text_in_changes() -> None:
    payload = body("loan_repayment")
    del payload["request"]["transactionAmount"], payload["request"]["transactionDate"]
    payload["response"]["changes"]["transactionAmount"] = "1,250.00"
    tx = tx_of(parse(payload))
    assert tx.amount_minor == 125000


# --- corrections ----------------------------------------------------------------------------------


def undo_payload(timestamp: str) -> dict[str, Any]:
    return {
        "createdByName": "mifos",
        "request": {},
        "clientId": 7,
        "createdBy": 1,
        "officeId": 1,
        "entityName": "SAVINGSACCOUNT",
        "response": {"clientId": 7, "savingsId": 12, "resourceId": 12},
        "actionName": "UNDOTRANSACTION",
        "timestamp": timestamp,
    }


def test_savings_undo_is_a_correction_of_an_unknown_transaction() -> None:
    event = parse(undo_payload("2024-01-20T08:00:00.1Z"))
    assert event.outcome == IngestOutcome.CORRECTION
    tx = tx_of(event)
    assert (tx.type, tx.status, tx.direction) == (
        TransactionType.REVERSAL,
        TransactionStatus.CORRECTION,
        Direction.NONE,
    )
    assert tx.account_id == "savings:12"
    assert (tx.reverses_external_id, tx.external_id) == (None, None)
    # Redelivery of the same hook is the same event; a later undo on the account is not.
    assert parse(undo_payload("2024-01-20T08:00:00.1Z")).dedupe_key == event.dedupe_key
    assert parse(undo_payload("2024-01-20T09:00:00Z")).dedupe_key != event.dedupe_key


@pytest.mark.parametrize("action", ["REVERSETRANSACTION", "ADJUSTTRANSACTION"])
def test_savings_reverse_and_adjust_are_corrections(action: str) -> None:
    payload = undo_payload("2024-01-20T08:00:00Z") | {"actionName": action}
    payload["response"]["resourceId"] = 345
    event = parse(payload)
    assert event.outcome == IngestOutcome.CORRECTION
    assert event.dedupe_key == f"SAVINGSACCOUNT|{action}|345"
    assert tx_of(event).account_id == "savings:12"


def loan_adjust(amount: str) -> dict[str, Any]:
    payload = body("loan_repayment") | {"actionName": "ADJUST"}
    payload["request"]["transactionAmount"] = amount
    payload["response"]["changes"]["transactionAmount"] = amount
    return payload


def test_loan_adjust_to_zero_is_an_undo_of_that_transaction() -> None:
    event = parse(loan_adjust("0"))
    assert event.outcome == IngestOutcome.CORRECTION
    assert event.dedupe_key == "LOAN|ADJUST|502"
    tx = tx_of(event)
    assert (tx.amount_minor, tx.reverses_external_id, tx.account_id) == (0, "502", "loan:21")
    assert tx.attributes["undo"] is True


def test_loan_adjust_to_a_new_amount_is_a_modification() -> None:
    tx = tx_of(parse(loan_adjust("500.00")))
    assert (tx.amount_minor, tx.reverses_external_id) == (50000, None)
    assert tx.attributes["undo"] is False


# --- everything else ------------------------------------------------------------------------------


def test_other_events_are_unsupported_but_identified() -> None:
    payload = body("savings_deposit") | {"entityName": "LOAN", "actionName": "APPROVE"}
    event = parse(payload)
    assert event.outcome == IngestOutcome.UNSUPPORTED
    assert event.transaction is None
    assert event.note == "unsupported LOAN/APPROVE"
    assert event.dedupe_key is not None and event.dedupe_key.startswith("LOAN|APPROVE|345|")


# --- transport ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", None, "", "application/json; charset=ISO-8859-1"],
)
def test_other_content_types_are_unsupported(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(raw("savings_deposit"), {}, content_type=content_type)


def test_content_type_can_come_from_the_headers() -> None:
    event = parse(raw("savings_deposit"), {"content-type": "application/json"}, content_type=None)
    assert event.outcome == IngestOutcome.ACCEPTED


def test_repeated_content_types_give_the_same_answers_and_errors() -> None:
    # The media type is cached per Content-Type text; refusals must repeat, message and all.
    for _ in range(3):
        for content_type in (JSON, 'Application/JSON ; Charset="utf8"', "application/vnd+json"):
            assert parse(raw("savings_deposit"), {}, content_type=content_type).outcome == (
                IngestOutcome.ACCEPTED
            )
        for content_type, message in [
            ("", "missing Content-Type: "),
            (" ", "missing Content-Type: "),
            ("text/plain", "unsupported Content-Type: "),
            ("application/json; charset=latin-1", "unsupported charset: expected UTF-8"),
        ]:
            with pytest.raises(UnsupportedMediaType) as info:
                parse(raw("savings_deposit"), {}, content_type=content_type)
            assert info.value.message.startswith(message)


def test_repeated_entity_and_action_names_give_the_same_answers_and_errors() -> None:
    payload = body("loan_repayment")
    del payload["entityName"], payload["actionName"]
    for _ in range(3):
        event = parse(payload, {"X-Fineract-Entity": " loan ", "x-mifos-action": "Repayment"})
        assert (event.entity, event.action) == ("LOAN", "REPAYMENT")
        with pytest.raises(BadRequest) as bad_header:
            parse(payload, {"X-Fineract-Entity": "LOAN", "X-Fineract-Action": "re payment"})
        assert bad_header.value.message == "X-Fineract-Action: expected an upper-case name"
        with pytest.raises(Unprocessable) as bad_body:
            parse(body("loan_repayment") | {"entityName": "re payment"})
        assert bad_body.value.message == (
            "entityName: expected an upper-case name such as SAVINGSACCOUNT"
        )


def test_the_first_of_headers_differing_only_in_case_wins() -> None:
    payload = body("loan_repayment")
    del payload["entityName"], payload["actionName"]
    headers = {
        "X-Fineract-Action": "REPAYMENT",
        "x-fineract-action": "DISBURSE",
        " x-fineract-entity ": "LOAN",
        "x-fineract-entity": "SAVINGSACCOUNT",
        "X-Fineract-Platform-TenantId": "second",
        "fineract-platform-tenantid": "first",
    }
    event = parse(payload, headers)
    assert (event.entity, event.action, event.tenant) == ("LOAN", "REPAYMENT", "first")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{not json", BadRequest),
        (b"\xff\xfe{}", BadRequest),
        (b'{"a": NaN}', BadRequest),
        (b"[" * 100_000, BadRequest),
        (b"[1, 2]", Unprocessable),
        (b'"text"', Unprocessable),
    ],
)
def test_malformed_bodies(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(data, HEADERS["savings_deposit"])


# --- form bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["savings_deposit", "account_transfer", "loan_repayment"])
def test_form_bodies_give_the_same_transaction_as_json(name: str) -> None:
    from_json = tx_of(fixture(name))
    from_form = tx_of(parse(form_body(body(name)), HEADERS[name], content_type=FORM))
    assert from_form == from_json


def test_form_body_as_documented_starts() -> None:
    data = form_body(body("savings_deposit"))
    assert data.startswith(b"createdByName=mifos&request=%7Blocale%3Den%2C%20dateFormat%3Ddd%20")
    assert b"&clientId=7.0&createdBy=1.0&officeId=1.0&entityName=SAVINGSACCOUNT&" in data


def test_form_failed_command_is_rejected() -> None:
    event = parse(form_body(body("failed_withdrawal")), {}, content_type=FORM)
    assert event.outcome == IngestOutcome.REJECTED_COMMAND


def test_form_amount_that_reads_two_ways_is_refused() -> None:
    payload = with_request("savings_deposit", locale="de")
    with pytest.raises(Unprocessable, match="ambiguous"):
        parse(form_body(payload), {}, content_type=FORM)


def test_form_map_text_that_cannot_be_read_reliably_is_refused() -> None:
    payload = with_request("savings_deposit", note="see {ticket=4}")
    with pytest.raises(Unprocessable, match="Content Type json"):
        parse(form_body(payload), {}, content_type=FORM)


def test_java_map_reader() -> None:
    assert parse_java_map("{a=1.0, b={c=x y, d=[1.0, 2.0]}, e=null, f=}", "f") == {
        "a": "1.0",
        "b": {"c": "x y", "d": ["1.0", "2.0"]},
        "e": None,
        "f": "",
    }
    assert parse_java_map("{}", "f") == {}
    for bad in ("a=1", "{a=1", "{a=1}}", "{=1}", "{a b=1}", "{a=1,b=2}", "[1.0]"):
        with pytest.raises(Unprocessable):
            parse_java_map(bad, "response")


def test_options_follow_the_process_settings() -> None:
    settings = Settings(
        default_currency="kes", max_future_seconds=60, max_age_days=30, timezone="Africa/Nairobi"
    )
    options = ParseOptions.from_settings(settings)
    assert (options.default_currency, options.timezone) == ("KES", "Africa/Nairobi")
    assert options.default_tenant == settings.default_tenant
    assert (options.max_future, options.max_age) == (timedelta(seconds=60), timedelta(days=30))
    old = with_request("savings_deposit", transactionDate="15 December 2023")
    with pytest.raises(Unprocessable, match="older than 30 days"):
        parse(old, options=options, received_at=datetime(2024, 1, 20, tzinfo=UTC))
