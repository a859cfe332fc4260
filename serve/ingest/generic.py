"""The generic flat JSON source (``POST /webhooks/generic``), signed with HMAC-SHA256.

For systems other than Fineract's native hooks (a translating gateway, a card switch, a mobile
money platform). The body is one flat object per transaction; the signature is the lowercase hex
HMAC-SHA256 of the raw body. Each transaction type has its own id space
(``GENERIC|<transaction_type>|<transaction_id>``), so a savings and a loan transaction that share
a number are not mistaken for duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from aml.domain import (
    ActorType,
    Direction,
    IngestOutcome,
    Transaction,
    TransactionType,
    ensure_utc,
    stable_id,
)
from aml.errors import ConfigError, Unauthorized, Unprocessable
from aml.money import to_minor
from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.formats import decode_json_object

__all__ = [
    "MAX_AMOUNT_MAJOR",
    "GenericTransaction",
    "GenericTransactionType",
    "parse_generic",
    "verify_signature",
]

SOURCE = "generic"
MAX_AMOUNT_MAJOR = Decimal(1_000_000_000)  # data-quality ceiling for this source

_Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
_Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


def _iso_text(value: object) -> object:
    # Epoch numbers are refused: seconds and milliseconds cannot be told apart reliably.
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")
    return value


_IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]


class GenericTransactionType(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    LOAN_DISBURSEMENT = "loan_disbursement"
    LOAN_REPAYMENT = "loan_repayment"
    SHARE_PURCHASE = "share_purchase"
    SHARE_REDEMPTION = "share_redemption"
    FIXED_DEPOSIT = "fixed_deposit"
    RECURRING_DEPOSIT = "recurring_deposit"
    CHARGE = "charge"
    FEE = "fee"
    OTHER = "other"


# Money flow relative to ``account_id``; loans as seen from the loan account, like Fineract's.
_DIRECTIONS: dict[GenericTransactionType, Direction] = {
    GenericTransactionType.DEPOSIT: Direction.IN,
    GenericTransactionType.WITHDRAWAL: Direction.OUT,
    GenericTransactionType.TRANSFER: Direction.OUT,
    GenericTransactionType.LOAN_DISBURSEMENT: Direction.OUT,
    GenericTransactionType.LOAN_REPAYMENT: Direction.IN,
    GenericTransactionType.SHARE_PURCHASE: Direction.IN,
    GenericTransactionType.SHARE_REDEMPTION: Direction.OUT,
    GenericTransactionType.FIXED_DEPOSIT: Direction.IN,
    GenericTransactionType.RECURRING_DEPOSIT: Direction.IN,
    GenericTransactionType.CHARGE: Direction.OUT,
    GenericTransactionType.FEE: Direction.OUT,
    GenericTransactionType.OTHER: Direction.NONE,
}


class GenericTransaction(BaseModel):
    """One transaction in the generic flat format (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    transaction_id: _Id
    account_id: _Id
    client_id: _Id
    transaction_type: GenericTransactionType
    amount: Decimal = Field(gt=0, allow_inf_nan=False, max_digits=30)
    currency: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$")] | None
    ) = None
    transaction_date: _IsoDateTime
    counterparty_account_id: _Id | None = None
    counterparty_name: _Text | None = None
    description: _Text | None = None
    ip_address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = (
        None
    )
    user_agent: _Text | None = None
    country_code: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$")] | None
    ) = None
    geo_location: _Text | None = None
    actor_type: ActorType = ActorType.CUSTOMER
    agent_id: _Id | None = None
    branch_id: _Id | None = None
    merchant_id: _Id | None = None
    device_id: _Id | None = None
    kyc_level: int | None = Field(default=None, ge=1, le=4, strict=True)


def verify_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Check the sender's HMAC-SHA256 of the raw body (lowercase hex, optional ``sha256=``).

    Raises:
        Unauthorized: "missing signature" when absent; "invalid signature" when it does not
            match.
        ConfigError: when no secret is configured (never accept unsigned traffic instead).
    """
    if not secret:
        raise ConfigError("AML_GENERIC_WEBHOOK_SECRET is not set: generic webhooks are refused")
    if signature is None or not signature.strip():
        raise Unauthorized("missing signature")
    given = signature.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    # Compared as bytes: compare_digest refuses non-ASCII str, and a bad header must be a 401.
    if not hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8", "replace")):
        raise Unauthorized("invalid signature")


def _validate(data: dict[str, Any]) -> GenericTransaction:
    try:
        return GenericTransaction.model_validate(data)
    except ValidationError as exc:
        # Field paths and reasons only: pydantic's "input" would echo personal data.
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise Unprocessable("invalid generic transaction", errors=problems) from None


def parse_generic(
    body: bytes, *, received_at: datetime, options: ParseOptions, tenant: str
) -> ParsedEvent:
    """Parse one generic-source body (already signature-checked) into a transaction.

    ``transaction_date`` without an offset is taken as UTC. The IP address is the customer's as
    given in the payload; the caller's socket address is never used.

    Raises:
        BadRequest: when the body is not UTF-8 JSON.
        Unprocessable: for schema errors (``details.errors``) and data-quality errors
            (``details.data_quality_errors``: date > ``max_future`` ahead, older than
            ``max_age``, amount above 1e9).
    """
    received = ensure_utc(received_at)
    model = _validate(decode_json_object(body))
    occurred = ensure_utc(model.transaction_date)
    currency = (model.currency or options.default_currency).upper()

    problems: list[str] = []
    if occurred > received + options.max_future:
        seconds = int(options.max_future.total_seconds())
        problems.append(f"transaction_date: more than {seconds} s in the future")
    if occurred < received - options.max_age:
        problems.append(f"transaction_date: older than {options.max_age.days} days")
    ceiling = min(MAX_AMOUNT_MAJOR, Decimal(repr(float(options.max_amount_major))))
    if model.amount > ceiling:
        problems.append(f"amount: above the accepted maximum of {ceiling:,.0f}")
    amount_minor = 0 if problems else to_minor(model.amount, currency)
    if not problems and amount_minor == 0:
        problems.append(f"amount: rounds to zero {currency} minor units")
    if problems:
        raise Unprocessable("data quality errors", data_quality_errors=problems)

    notes: list[str] = []
    ip_address: str | None = None
    if model.ip_address:
        try:
            ip_address = str(ipaddress.ip_address(model.ip_address))
        except ValueError:
            # A bad IP is no reason to lose a money movement; it is dropped and said so.
            notes.append("ip_address ignored: not an IP address")

    attributes: dict[str, Any] = {}
    if model.user_agent:
        attributes["user_agent"] = model.user_agent
    if model.geo_location:
        attributes["geo_location"] = model.geo_location

    dedupe_key = f"GENERIC|{model.transaction_type.value}|{model.transaction_id}"
    tx = Transaction(
        id=stable_id(tenant, dedupe_key),
        tenant=tenant,
        dedupe_key=dedupe_key,
        source=SOURCE,
        type=TransactionType(model.transaction_type.value),
        direction=_DIRECTIONS[model.transaction_type],
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=occurred.astimezone(UTC),
        received_at=received,
        account_id=model.account_id,
        external_id=model.transaction_id,
        client_id=model.client_id,
        counterparty_account_id=model.counterparty_account_id,
        counterparty_name=model.counterparty_name,
        actor_type=model.actor_type,
        agent_id=model.agent_id,
        branch_id=model.branch_id,
        merchant_id=model.merchant_id,
        device_id=model.device_id,
        ip_address=ip_address,
        country_code=model.country_code.upper() if model.country_code else None,
        kyc_level=model.kyc_level,
        description=model.description,
        attributes=attributes,
    )
    return ParsedEvent(
        outcome=IngestOutcome.ACCEPTED,
        tenant=tenant,
        source=SOURCE,
        entity="GENERIC",
        action=model.transaction_type.value.upper(),
        dedupe_key=dedupe_key,
        transaction=tx,
        note="; ".join(notes) or None,
    )
