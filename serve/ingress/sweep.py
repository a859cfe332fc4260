"""Reconciliation sweep: ingest account transactions that no hook delivered.

Fineract hooks are sent once with no retry, and never for jobs or transfer legs, so a periodic
sweep lists each account's transactions through the REST API
(``GET /savingsaccounts/{id}?associations=transactions``,
``GET /loans/{id}?associations=transactions``) and submits them through the same committer
with the same dedupe keys as the hook parser (``SAVINGSACCOUNT|DEPOSIT|<txId>``,
``LOAN|REPAYMENT|<txId>``, ...). A movement already delivered by a hook is a duplicate, so
swept + hooked = one transaction.

Transfers: a leg in the listing carries ``transfer.id``, the *transfer transaction* id
(``m_account_transfer_transaction``), while the ``ACCOUNTTRANSFER`` hook is keyed on the
*transfer detail* id (``m_account_transfer_details``, its ``resourceId``), and Fineract's API
offers no way from the first to the second. The sweep asks
``GET /accounttransfers?accountDetailId=<transfer.id>``: when that detail's transactions include
the leg's transfer, the two ids are the same (true for every transfer made while no detail had
two transactions) and the transfer is ingested once, as the hook parser would have stored it
(``ACCOUNTTRANSFER|CREATE|<detailId>``, source account, counterparty account and clients), so
the other leg, a later sweep or a late hook is a duplicate. Otherwise (ids drifted apart, e.g.
after standing instructions ran) a transfer whose hook did arrive is recognised by the transfer
id its read-back recorded (``attributes.transfer_id``, looked up among the source account's
transactions of that day); one that no hook delivered is not ingested, because a key a hook
could not reproduce would count it twice, and is listed in ``SweepReport.unresolved_transfers``.

Not swept: reversed transactions and the reversal entries that undo them (``isReversal``),
reversed transfers, and postings no customer made (interest, fees). A stored deposit, withdrawal,
disbursement or repayment that the listing shows reversed is marked ``reversed`` (the retry of
the reversal check a correction hook triggers, and the only one when that hook was lost).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
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
from aml.errors import AmlError, NotFound
from aml.money import to_minor
from serve.fineract_client import FineractClient, parse_local_date, to_decimal
from serve.ingress import new_event_id, received_now
from serve.ingress.committer import Committer, Submission
from serve.ingress.enrich import reversed_keys
from serve.ingress.handoff import HandoffDispatcher, ScoringHandoff
from serve.ingress.spool import Spool
from serve.metrics import IngressMetrics
from storage.store import Store

log = logging.getLogger(__name__)

SOURCE = "sweep"
_LOAN_ACCOUNT_TYPE = 1  # Fineract account types in transfers: 1 = loan, 2 = savings


@dataclass
class SweepReport:
    """What one sweep did."""

    accounts: int = 0
    listed: int = 0  # transactions seen in Fineract since ``since``
    ingested: int = 0  # new transactions stored by this sweep (missed by hooks)
    duplicates: int = 0  # already stored (delivered by a hook or an earlier sweep)
    skipped: int = 0  # reversed, unresolved transfer legs, postings no customer made
    # Stored movements this sweep marked reversed: their correction's own re-read was missed
    # (Fineract or the store down then), or its hook was lost.
    reversed: int = 0
    failed_accounts: list[str] = field(default_factory=list)
    # Transfer transaction ids whose transfer detail could not be identified (not ingested).
    unresolved_transfers: list[str] = field(default_factory=list)


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
    # Transfer legs are ingested as their transfer (see ``transfer_transaction``); the entry a
    # REVERSETRANSACTION adds (``isReversal``) takes money back, it is no new deposit/withdrawal.
    if (
        not isinstance(kind, dict)
        or raw.get("reversed") is True
        or raw.get("isReversal") is True
        or "transfer" in raw
    ):
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
    if not isinstance(kind, dict) or raw.get("manuallyReversed") is True or "transfer" in raw:
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


def _ref_id(value: Any) -> str | None:
    """The ``id`` of a Fineract reference object such as ``fromClient`` or ``toAccount``."""
    ident = value.get("id") if isinstance(value, dict) else None
    return str(ident) if isinstance(ident, int) and not isinstance(ident, bool) else None


def _transfer_side(data: dict[str, Any], side: str) -> str | None:
    """``loan:<id>`` / ``savings:<id>`` of one side (``from``/``to``) of ``AccountTransferData``."""
    account = _ref_id(data.get(f"{side}Account"))
    kind = data.get(f"{side}AccountType")
    if account is None or not isinstance(kind, dict):
        return None
    return f"{'loan' if kind.get('id') == _LOAN_ACCOUNT_TYPE else 'savings'}:{account}"


def transfer_transaction(
    data: dict[str, Any],
    *,
    detail_id: str,
    tenant: str,
    received_at: datetime,
    default_currency: str,
    tz: str,
) -> Transaction | None:
    """A swept account transfer (``AccountTransferData``) as the ``ACCOUNTTRANSFER``/``CREATE``
    hook parser stores it: keyed and identified by the transfer detail id, from the source
    account, with the counterparty account and both clients. None when reversed or incomplete.
    """
    source = _transfer_side(data, "from")
    target = _transfer_side(data, "to")
    day = parse_local_date(data.get("transferDate"))
    amount = to_decimal(data.get("transferAmount"))
    if data.get("reversed") is True or source is None or day is None or amount is None:
        return None
    currency = _currency(data, default_currency)
    dedupe_key = f"ACCOUNTTRANSFER|CREATE|{detail_id}"
    office = _ref_id(data.get("fromOffice"))
    loans = [side.split(":", 1)[1] for side in (source, target) if side and side[:5] == "loan:"]
    attributes: dict[str, Any] = {"time_estimated": True, "swept": True}
    to_office = _ref_id(data.get("toOffice"))
    if to_office is not None:
        attributes["toOfficeId"] = to_office
    if isinstance(data.get("id"), int):
        attributes["transfer_id"] = data["id"]
    from_account = data.get("fromAccount")
    to_client = data.get("toClient")
    description = data.get("transferDescription")
    return Transaction(
        id=stable_id(tenant, dedupe_key),
        tenant=tenant,
        dedupe_key=dedupe_key,
        source=SOURCE,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        amount_minor=to_minor(amount, currency),
        currency=currency,
        occurred_at=_occurred(day, tz),
        received_at=received_at,
        account_id=source,
        external_id=detail_id,
        client_id=_ref_id(data.get("fromClient")),
        office_id=office,
        branch_id=office,  # as the hook parser: Fineract's office is the branch
        loan_id=loans[0] if loans else None,
        counterparty_account_id=target,
        counterparty_client_id=_ref_id(to_client),
        counterparty_name=(
            to_client["displayName"]
            if isinstance(to_client, dict) and isinstance(to_client.get("displayName"), str)
            else None
        ),
        account_no=(
            from_account["accountNo"]
            if isinstance(from_account, dict) and isinstance(from_account.get("accountNo"), str)
            else None
        ),
        description=description if isinstance(description, str) and description else None,
        enriched=True,  # read from Fineract itself
        attributes=attributes,
    )


async def resolve_transfer(
    client: FineractClient, transfer_id: int
) -> tuple[str, dict[str, Any]] | None:
    """The transfer detail id and ``AccountTransferData`` of transfer transaction
    ``transfer_id``, or None when Fineract's answer does not prove which detail it belongs to.

    Only ``GET /accounttransfers?accountDetailId=`` links the two ids, so the detail with the
    transfer's own id is asked for: if its transactions include ``transfer_id`` the ids agree.
    (Trying other detail ids would be guessing: the offset grows with every standing-instruction
    run and every instruction created.)
    """
    for item in await client.account_transfers(str(transfer_id)):
        if item.get("id") == transfer_id:
            return str(transfer_id), item
    return None


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
    # Transfer transaction id -> what it resolved to, shared by every account of this sweep so
    # the other leg of a transfer costs no second look-up (and is still submitted: a duplicate).
    transfers: dict[int, Transaction | None] = {}
    try:
        for account_id in account_ids:
            report.accounts += 1
            try:
                subs = await _account_submissions(
                    store,
                    client,
                    account_id,
                    since,
                    tenant,
                    default_currency,
                    timezone,
                    report,
                    transfers,
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
        "%d skipped, %d marked reversed, %d failed",
        report.accounts,
        report.listed,
        report.ingested,
        report.duplicates,
        report.skipped,
        report.reversed,
        len(report.failed_accounts),
    )
    if report.unresolved_transfers:
        log.warning(
            "sweep: transfer transactions %s not ingested: Fineract does not say which transfer "
            "detail (the id its hook carries) they belong to; check them in Fineract",
            ", ".join(report.unresolved_transfers),
        )
    return report


async def _account_submissions(
    store: Store,
    client: FineractClient,
    account_id: str,
    since: date,
    tenant: str,
    default_currency: str,
    tz: str,
    report: SweepReport,
    transfers: dict[int, Transaction | None],
) -> list[Submission]:
    kind, _, number = account_id.partition(":")
    if kind == "savings":
        data = await client.savings_account(number)
    elif kind == "loan":
        data = await client.loan(number)
    else:
        raise ValueError(f"account id must be savings:<id> or loan:<id>, got {account_id!r}")
    client_id = str(data["clientId"]) if isinstance(data.get("clientId"), int) else None
    listing = [
        raw
        for raw in data.get("transactions") or []
        if isinstance(raw, dict) and (day := parse_local_date(raw.get("date"))) and day >= since
    ]
    # The sweep is also the retry of reversal reconciliation: whatever Fineract now shows as
    # reversed is marked so, however the correction's own re-read went.
    marked = await store.transactions.mark_reversed(tenant, reversed_keys(kind, listing))
    report.reversed += len(marked)
    received_at = received_now()
    subs: list[Submission] = []
    for raw in listing:
        report.listed += 1
        common: dict[str, Any] = {
            "tenant": tenant,
            "client_id": client_id,
            "received_at": received_at,
            "default_currency": default_currency,
            "tz": tz,
        }
        transfer = raw.get("transfer")
        if isinstance(transfer, dict):
            tx = await _transfer_of_leg(
                raw,
                transfer,
                store=store,
                client=client,
                report=report,
                transfers=transfers,
                common=common,
            )
        elif kind == "savings":
            tx = savings_transaction(raw, savings_id=number, **common)
        else:
            tx = loan_transaction(raw, loan_id=number, **common)
        if tx is None:
            report.skipped += 1
            continue
        entity, action, _ = tx.dedupe_key.split("|", 2)
        record = IngestRecord(
            id=new_event_id(),
            tenant=tenant,
            source=SOURCE,
            received_at=received_at,
            outcome=IngestOutcome.ACCEPTED,
            entity=entity,
            action=action,
            dedupe_key=tx.dedupe_key,
            body=f"{kind}:{number} transaction {raw.get('id')}",
        )
        subs.append(Submission(record=record, transaction=tx))
    return subs


async def _transfer_of_leg(
    raw: dict[str, Any],
    transfer: dict[str, Any],
    *,
    store: Store,
    client: FineractClient,
    report: SweepReport,
    transfers: dict[int, Transaction | None],
    common: dict[str, Any],
) -> Transaction | None:
    """The transfer a listed leg belongs to, or None when reversed or not identifiable."""
    transfer_id = transfer.get("id")
    reversed_leg = raw.get("reversed") is True or raw.get("manuallyReversed") is True
    if not isinstance(transfer_id, int) or reversed_leg or transfer.get("reversed") is True:
        return None
    if transfer_id not in transfers:
        resolved = await resolve_transfer(client, transfer_id)
        if resolved is not None:
            detail_id, data = resolved
            # The transfer names its own clients; the listed account's client is one side only.
            fields = {k: v for k, v in common.items() if k != "client_id"}
            transfers[transfer_id] = transfer_transaction(data, detail_id=detail_id, **fields)
        else:
            found = await stored_transfer(
                store, client, transfer_id, tenant=common["tenant"], tz=common["tz"]
            )
            if found is None:
                report.unresolved_transfers.append(str(transfer_id))
            transfers[transfer_id] = found  # submitted again: counted as already stored
    return transfers[transfer_id]


async def stored_transfer(
    store: Store, client: FineractClient, transfer_id: int, *, tenant: str, tz: str
) -> Transaction | None:
    """The transfer a hook stored for transfer transaction ``transfer_id``, found by the id its
    read-back recorded (``attributes.transfer_id``) among the source account's transactions of
    the transfer's day; None when no hook's read-back recorded it.
    """
    from serve.ingest.formats import zone

    try:
        data = await client.account_transfer(str(transfer_id))
    except NotFound:
        return None
    source = _transfer_side(data, "from")
    day = parse_local_date(data.get("transferDate"))
    if source is None or day is None:
        return None
    local = zone(tz)
    since = datetime.combine(day, time(0), tzinfo=local).astimezone(UTC)
    until = datetime.combine(day + timedelta(days=1), time(0), tzinfo=local).astimezone(UTC)
    for tx in await store.transactions.history(tenant, source, since=since, until=until):
        if tx.type is TransactionType.TRANSFER and tx.attributes.get("transfer_id") == transfer_id:
            return tx
    return None
