"""Reconciliation sweep: ingest account transactions that no hook delivered.

Fineract hooks are sent once with no retry, and never for jobs or transfer legs, so a periodic
sweep lists each account's transactions through the REST API
(``GET /savingsaccounts/{id}?associations=transactions``,
``GET /loans/{id}?associations=transactions``) and submits them through the same committer
with the same dedupe keys as the hook parser (``SAVINGSACCOUNT|DEPOSIT|<txId>``,
``LOAN|REPAYMENT|<txId>``, ...). A movement already delivered by a hook is a duplicate, so
swept + hooked = one transaction.

Not swept: reversed transactions (they did not happen), transfer legs (a transfer is keyed on
its transfer-detail id, which the account listing does not show), and postings no customer made
(interest, fees).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from aml.domain import (
    Direction,
    IngestOutcome,
    IngestRecord,
    Transaction,
    TransactionType,
    stable_id,
)
from aml.errors import AmlError
from aml.money import to_minor
from serve.fineract_client import FineractClient, parse_local_date, to_decimal
from serve.ingress import new_event_id, received_now
from serve.ingress.committer import Committer, Submission
from serve.ingress.handoff import HandoffDispatcher, ScoringHandoff
from serve.ingress.spool import Spool
from serve.metrics import IngressMetrics
from storage.store import Store

log = logging.getLogger(__name__)

SOURCE = "sweep"


@dataclass
class SweepReport:
    """What one sweep did."""

    accounts: int = 0
    listed: int = 0  # transactions seen in Fineract since ``since``
    ingested: int = 0  # new transactions stored by this sweep (missed by hooks)
    duplicates: int = 0  # already stored (delivered by a hook or an earlier sweep)
    skipped: int = 0  # reversed, transfer legs, postings no customer made
    failed_accounts: list[str] = field(default_factory=list)


def _occurred(day: date, tz: str) -> datetime:
    from serve.ingest.formats import zone

    # Same rule as the hook parser for a date without a time: local noon of that date.
    return datetime.combine(day, time(12), tzinfo=zone(tz)).astimezone(UTC)


def _currency(data: dict[str, Any], default: str) -> str:
    cur = data.get("currency")
    code = cur.get("code") if isinstance(cur, dict) else None
    return code.upper() if isinstance(code, str) and len(code) == 3 else default


def _swept(
    raw: dict[str, Any],
    *,
    tenant: str,
    entity: str,
    action: str,
    tx_type: TransactionType,
    direction: Direction,
    account_id: str,
    balance_field: str,
    client_id: str | None,
    received_at: datetime,
    default_currency: str,
    tz: str,
    loan_id: str | None = None,
    account_no: str | None = None,
) -> Transaction | None:
    """A classified swept transaction keyed as the hook parser keys ``entity|action|<txId>``."""
    day = parse_local_date(raw.get("date"))
    amount = to_decimal(raw.get("amount"))
    if day is None or amount is None or not isinstance(raw.get("id"), int):
        return None
    tx_id = str(raw["id"])
    currency = _currency(raw, default_currency)
    dedupe_key = f"{entity}|{action}|{tx_id}"
    balance = to_decimal(raw.get(balance_field))
    return Transaction(
        id=stable_id(tenant, dedupe_key),
        tenant=tenant,
        dedupe_key=dedupe_key,
        source=SOURCE,
        type=tx_type,
        direction=direction,
        amount_minor=to_minor(amount, currency),
        currency=currency,
        occurred_at=_occurred(day, tz),
        received_at=received_at,
        account_id=account_id,
        external_id=tx_id,
        client_id=client_id,
        loan_id=loan_id,
        running_balance_minor=to_minor(balance, currency) if balance is not None else None,
        account_no=account_no,
        enriched=True,  # read from Fineract itself
        attributes={"time_estimated": True, "swept": True},
    )


def savings_transaction(
    raw: dict[str, Any],
    *,
    tenant: str,
    savings_id: str,
    client_id: str | None,
    received_at: datetime,
    default_currency: str,
    tz: str,
) -> Transaction | None:
    """A swept savings transaction as the hook parser would have keyed it; None when skipped."""
    kind = raw.get("transactionType")
    if not isinstance(kind, dict) or raw.get("reversed") is True or "transfer" in raw:
        return None
    if kind.get("deposit") is True:
        action, tx_type, direction = "DEPOSIT", TransactionType.DEPOSIT, Direction.IN
    elif kind.get("withdrawal") is True:
        action, tx_type, direction = "WITHDRAWAL", TransactionType.WITHDRAWAL, Direction.OUT
    else:
        return None
    return _swept(
        raw,
        tenant=tenant,
        entity="SAVINGSACCOUNT",
        action=action,
        tx_type=tx_type,
        direction=direction,
        account_id=f"savings:{savings_id}",
        balance_field="runningBalance",
        client_id=client_id,
        received_at=received_at,
        default_currency=default_currency,
        tz=tz,
        account_no=raw.get("accountNo") if isinstance(raw.get("accountNo"), str) else None,
    )


def loan_transaction(
    raw: dict[str, Any],
    *,
    tenant: str,
    loan_id: str,
    client_id: str | None,
    received_at: datetime,
    default_currency: str,
    tz: str,
) -> Transaction | None:
    """A swept loan transaction as the hook parser would have keyed it; None when skipped."""
    kind = raw.get("type")
    if not isinstance(kind, dict) or raw.get("manuallyReversed") is True:
        return None
    if kind.get("disbursement") is True:
        action, tx_type, direction = "DISBURSE", TransactionType.LOAN_DISBURSEMENT, Direction.OUT
    elif kind.get("repayment") is True:
        action, tx_type, direction = "REPAYMENT", TransactionType.LOAN_REPAYMENT, Direction.IN
    else:
        return None
    return _swept(
        raw,
        tenant=tenant,
        entity="LOAN",
        action=action,
        tx_type=tx_type,
        direction=direction,
        account_id=f"loan:{loan_id}",
        balance_field="outstandingLoanBalance",
        client_id=client_id,
        received_at=received_at,
        default_currency=default_currency,
        tz=tz,
        loan_id=loan_id,
    )


async def sweep(
    store: Store,
    client: FineractClient,
    since: date,
    account_ids: Sequence[str],
    *,
    tenant: str = "default",
    committer: Committer | None = None,
    spool_dir: Path | None = None,
    handoff: ScoringHandoff | None = None,
    default_currency: str = "XAF",
    timezone: str = "Africa/Douala",
) -> SweepReport:
    """List the accounts' transactions since ``since`` and ingest those no hook delivered.

    Args:
        store: the store.
        client: Fineract REST client.
        since: first value date to consider.
        account_ids: ``"savings:<id>"`` and ``"loan:<id>"`` accounts to sweep.
        tenant: the Fineract tenant the client reads.
        committer: a running committer to submit through (the ingress's own); when None, one is
            started for this sweep with its spool in ``spool_dir``.
        spool_dir: spool directory of the sweep's own committer (required without ``committer``).
        handoff: where newly stored transactions go to be scored (own committer only).
        default_currency: used when Fineract names no currency.
        timezone: the institution's zone (value dates are local dates).
    """
    own = committer is None
    if committer is None:
        if spool_dir is None:
            raise ValueError("spool_dir is required when no committer is given")
        metrics = IngressMetrics()
        committer = Committer(
            store, Spool(spool_dir), metrics=metrics, dispatcher=HandoffDispatcher(handoff, metrics)
        )
        await committer.start()
    report = SweepReport()
    try:
        for account_id in account_ids:
            report.accounts += 1
            try:
                subs = await _account_submissions(
                    client, account_id, since, tenant, default_currency, timezone, report
                )
            except (AmlError, ValueError) as exc:
                log.warning("sweep of %s failed: %s", account_id, exc)
                report.failed_accounts.append(account_id)
                continue
            if not subs:
                continue
            for ack in await committer.submit_many(subs):
                if ack.outcome is IngestOutcome.DUPLICATE:
                    report.duplicates += 1
                else:
                    report.ingested += 1
    finally:
        if own:
            await committer.close()
    log.info(
        "sweep: %d accounts, %d listed, %d ingested (missed by hooks), %d already stored, "
        "%d skipped, %d failed",
        report.accounts,
        report.listed,
        report.ingested,
        report.duplicates,
        report.skipped,
        len(report.failed_accounts),
    )
    return report


async def _account_submissions(
    client: FineractClient,
    account_id: str,
    since: date,
    tenant: str,
    default_currency: str,
    tz: str,
    report: SweepReport,
) -> list[Submission]:
    kind, _, number = account_id.partition(":")
    if kind == "savings":
        data = await client.savings_account(number)
    elif kind == "loan":
        data = await client.loan(number)
    else:
        raise ValueError(f"account id must be savings:<id> or loan:<id>, got {account_id!r}")
    client_id = str(data["clientId"]) if isinstance(data.get("clientId"), int) else None
    received_at = received_now()
    subs: list[Submission] = []
    for raw in data.get("transactions") or []:
        if not isinstance(raw, dict):
            continue
        day = parse_local_date(raw.get("date"))
        if day is None or day < since:
            continue
        report.listed += 1
        common: dict[str, Any] = {
            "tenant": tenant,
            "client_id": client_id,
            "received_at": received_at,
            "default_currency": default_currency,
            "tz": tz,
        }
        tx = (
            savings_transaction(raw, savings_id=number, **common)
            if kind == "savings"
            else loan_transaction(raw, loan_id=number, **common)
        )
        if tx is None:
            report.skipped += 1
            continue
        record = IngestRecord(
            id=new_event_id(),
            tenant=tenant,
            source=SOURCE,
            received_at=received_at,
            outcome=IngestOutcome.ACCEPTED,
            entity="LOAN" if kind == "loan" else "SAVINGSACCOUNT",
            action=tx.dedupe_key.split("|")[1],
            dedupe_key=tx.dedupe_key,
            body=f"{kind}:{number} transaction {tx.external_id}",
        )
        subs.append(Submission(record=record, transaction=tx))
    return subs
