"""The generic flat source: HMAC signature, schema, data quality, per-type id spaces."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aml.domain import ActorType, Direction, IngestOutcome, TransactionType, stable_id
from aml.errors import BadRequest, ConfigError, Unauthorized, Unprocessable
from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.generic import parse_generic, verify_signature

SECRET = "k" * 40
RECEIVED = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
OPTIONS = ParseOptions(default_currency="USD")


def payload(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transaction_id": "T-1001",
        "account_id": "savings:12",
        "client_id": "7",
        "transaction_type": "deposit",
        "amount": 1500.5,
        "transaction_date": "2026-01-15T09:30:00Z",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def parse(data: dict[str, Any] | bytes, tenant: str = "default") -> ParsedEvent:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return parse_generic(raw, received_at=RECEIVED, options=OPTIONS, tenant=tenant)


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- signature ---------------------------------------------------------------------------------


def test_valid_signature_passes() -> None:
    body = json.dumps(payload()).encode()
    verify_signature(body, sign(body), SECRET)
    verify_signature(body, "sha256=" + sign(body), SECRET)
    verify_signature(body, f"  {sign(body)}\n", SECRET)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_missing_signature_is_unauthorized(signature: str | None) -> None:
    with pytest.raises(Unauthorized, match="missing signature"):
        verify_signature(b"{}", signature, SECRET)


def test_wrong_signatures_are_unauthorized() -> None:
    body = json.dumps(payload()).encode()
    good = sign(body)
    for bad in (
        sign(body, "another-secret-another-secret-another"),
        sign(body + b" "),
        good[:-1],
        good + "0",
        "é" * 64,
        "sha256=",
    ):
        with pytest.raises(Unauthorized, match="invalid signature"):
            verify_signature(body, bad, SECRET)


def test_no_secret_never_means_no_check() -> None:
    body = b"{}"
    with pytest.raises(ConfigError):
        verify_signature(body, sign(body, ""), "")


# --- parsing -----------------------------------------------------------------------------------


def test_valid_body_becomes_a_transaction() -> None:
    event = parse(
        payload(
            counterparty_account_id="savings:99",
            counterparty_name="ACME Ltd",
            description="school fees",
            ip_address="196.200.1.7",
            user_agent="app/1.2",
            country_code="cm",
            geo_location="4.05,9.70",
            actor_type="agent",
            agent_id="AG-1",
            branch_id="BR-2",
            merchant_id="M-3",
            device_id="d" * 64,
            kyc_level=2,
            currency="eur",
        ),
        tenant="bank2",
    )
    assert (event.outcome, event.source, event.tenant) == (
        IngestOutcome.ACCEPTED,
        "generic",
        "bank2",
    )
    assert (event.entity, event.action) == ("GENERIC", "DEPOSIT")
    assert event.dedupe_key == "GENERIC|deposit|T-1001"
    tx = event.transaction
    assert tx is not None
    assert tx.id == stable_id("bank2", "GENERIC|deposit|T-1001")
    assert (tx.type, tx.direction, tx.amount_minor, tx.currency) == (
        TransactionType.DEPOSIT,
        Direction.IN,
        150050,
        "EUR",
    )
    assert tx.occurred_at == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    assert (tx.account_id, tx.client_id, tx.external_id) == ("savings:12", "7", "T-1001")
    assert (tx.counterparty_account_id, tx.counterparty_name) == ("savings:99", "ACME Ltd")
    assert (tx.ip_address, tx.country_code, tx.kyc_level) == ("196.200.1.7", "CM", 2)
    assert (tx.actor_type, tx.agent_id, tx.branch_id, tx.merchant_id) == (
        ActorType.AGENT,
        "AG-1",
        "BR-2",
        "M-3",
    )
    assert tx.attributes == {"user_agent": "app/1.2", "geo_location": "4.05,9.70"}
    assert event.note is None


def test_each_type_has_its_own_id_space() -> None:
    deposit = parse(payload(transaction_type="deposit"))
    repayment = parse(payload(transaction_type="loan_repayment"))
    assert deposit.dedupe_key != repayment.dedupe_key
    assert deposit.transaction is not None and repayment.transaction is not None
    assert deposit.transaction.id != repayment.transaction.id
    assert repayment.transaction.direction == Direction.IN


def test_defaults_and_coercions() -> None:
    event = parse(
        payload(transaction_id=4711, amount="99.99", transaction_date="2026-01-15T09:30:00")
    )
    tx = event.transaction
    assert tx is not None
    assert (tx.external_id, tx.amount_minor, tx.currency) == ("4711", 9999, "USD")
    assert tx.occurred_at == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)  # naive means UTC
    assert tx.actor_type == ActorType.CUSTOMER
    assert tx.ip_address is None


def test_offsets_are_converted_to_utc() -> None:
    tx = parse(payload(transaction_date="2026-01-15T10:30:00+01:00")).transaction
    assert tx is not None and tx.occurred_at == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def test_bad_ip_is_dropped_not_fatal() -> None:
    event = parse(payload(ip_address="not-an-ip"))
    assert event.transaction is not None and event.transaction.ip_address is None
    assert event.note == "ip_address ignored: not an IP address"


def test_data_quality_errors_are_all_listed() -> None:
    future = (RECEIVED + timedelta(seconds=301)).isoformat()
    with pytest.raises(Unprocessable) as info:
        parse(payload(transaction_date=future, amount=2e9))
    problems = info.value.details["data_quality_errors"]
    assert len(problems) == 2
    assert any("transaction_date" in p and "future" in p for p in problems)
    assert any("amount" in p and "maximum" in p for p in problems)
    old = (RECEIVED - timedelta(days=5 * 365 + 1)).isoformat()
    with pytest.raises(Unprocessable) as info:
        parse(payload(transaction_date=old))
    assert info.value.details["data_quality_errors"] == ["transaction_date: older than 1825 days"]


def test_limits_are_inclusive_at_the_edge() -> None:
    edge = (RECEIVED + timedelta(seconds=300)).isoformat()
    assert parse(payload(transaction_date=edge, amount=1e9)).outcome == IngestOutcome.ACCEPTED


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"transaction_id": None}, "transaction_id"),
        ({"amount": 0}, "amount"),
        ({"amount": -3}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"transaction_type": "bribe"}, "transaction_type"),
        ({"kyc_level": 5}, "kyc_level"),
        ({"kyc_level": "2"}, "kyc_level"),
        ({"currency": "EURO"}, "currency"),
        ({"country_code": "CMR"}, "country_code"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"transaction_date": "yesterday"}, "transaction_date"),
        ({"transaction_date": 1768470000}, "transaction_date"),
        ({"account_id": ""}, "account_id"),
    ],
)
def test_schema_errors_name_the_field_without_echoing_values(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(Unprocessable) as info:
        parse(payload(**overrides))
    errors = info.value.details["errors"]
    assert any(e.startswith(field) for e in errors)
    for value in overrides.values():
        if isinstance(value, str) and len(value) > 2:
            assert all(value not in e for e in errors)


def test_amount_that_rounds_to_nothing_is_refused() -> None:
    with pytest.raises(Unprocessable) as info:
        parse(payload(amount=0.001))
    assert info.value.details["data_quality_errors"] == ["amount: rounds to zero USD minor units"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", BadRequest),
        (b"\xc3\x28", BadRequest),
        (b'{"amount": Infinity}', BadRequest),
        (b"[]", Unprocessable),
        (b"null", Unprocessable),
    ],
)
def test_malformed_bodies(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(body)
