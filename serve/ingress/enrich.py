"""Background read-back of stored transactions from Fineract (never in the ack path).

A hook carries no currency, balance or account number, and its amount is the client's text. After
a transaction is stored, the matching Fineract resource is read back and the stored transaction
updated: currency, amount (when the hook had none or the currency differs), running balance,
``accountNo``, a transfer's counterparty and transaction id (``attributes.transfer_id``, what
account listings show), and ``reversed``. Failures are counted and logged; the transaction simply
stays un-enriched.

Corrections (``SAVINGSACCOUNT`` ``UNDOTRANSACTION``/``REVERSETRANSACTION``/``ADJUSTTRANSACTION``,
``LOAN`` ``ADJUST``) do not say which money movement they undid: an undo's ``resourceId`` is the
savings *account*. So after a correction is stored, the account's transaction list is re-read
(``GET /savingsaccounts/{id}?associations=transactions``, ``GET /loans/{id}?associations=
transactions``) and every stored deposit, withdrawal, disbursement or repayment Fineract now shows
as reversed (``reversed``/``manuallyReversed``) is marked ``reversed``. When exactly one was newly
marked, the correction records it in ``reverses_external_id``. Transfer legs are left alone:
Fineract refuses to undo a transfer leg through the savings transaction commands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from aml.domain import Transaction, TransactionStatus, TransactionType
from aml.errors import AmlError, NotFound
from aml.money import to_minor
from serve.fineract_client import FineractClient, FineractUnavailable, to_decimal
from serve.metrics import IngressMetrics
from storage.store import Store

log = logging.getLogger(__name__)

_LOAN_ACCOUNT_TYPE = 1  # Fineract account types in transfers: 1 = loan, 2 = savings


def _split_account(account_id: str) -> tuple[str, str] | None:
    kind, _, number = account_id.partition(":")
    return (kind, number) if kind and number else None


def _currency(data: dict[str, Any]) -> str | None:
    cur = data.get("currency")
    code = cur.get("code") if isinstance(cur, dict) else None
    return code.upper() if isinstance(code, str) and len(code) == 3 else None


def _amount_fields(tx: Transaction, currency: str | None, amount: Decimal | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    cur = currency or tx.currency
    if currency and currency != tx.currency:
        fields["currency"] = currency
    unknown = bool(tx.attributes.get("amount_unknown")) or tx.amount_minor <= 0
    if amount is not None and (unknown or cur != tx.currency):
        fields["amount_minor"] = to_minor(abs(amount), cur)
        if "amount_unknown" in tx.attributes:
            fields["attributes"] = {
                k: v for k, v in tx.attributes.items() if k != "amount_unknown"
            } | {"amount_from": "fineract"}
    return fields


def _account_fields(tx: Transaction, data: dict[str, Any], balance_field: str) -> dict[str, Any]:
    """Amount, currency and the account's balance after the movement (``balance_field``)."""
    currency = _currency(data)
    fields = _amount_fields(tx, currency, to_decimal(data.get("amount")))
    balance = to_decimal(data.get(balance_field))
    if balance is not None:
        fields["running_balance_minor"] = to_minor(balance, currency or tx.currency)
    return fields


def savings_fields(tx: Transaction, data: dict[str, Any]) -> dict[str, Any]:
    """Fields to update from a savings transaction read-back."""
    fields = _account_fields(tx, data, "runningBalance")
    if isinstance(data.get("accountNo"), str):
        fields["account_no"] = data["accountNo"]
    if data.get("reversed") is True:
        fields["reversed"] = True
    return fields


def loan_fields(tx: Transaction, data: dict[str, Any]) -> dict[str, Any]:
    """Fields to update from a loan transaction read-back."""
    fields = _account_fields(tx, data, "outstandingLoanBalance")
    if data.get("manuallyReversed") is True or data.get("reversed") is True:
        fields["reversed"] = True
    return fields


def reversed_keys(kind: str, listing: Sequence[Any]) -> list[str]:
    """Dedupe keys (as the hook parser and the sweep build them) of the money movements an
    account listing shows as reversed; ``kind`` is ``savings`` or ``loan``."""
    keys: list[str] = []
    for raw in listing:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), int) or "transfer" in raw:
            continue
        if kind == "savings":
            flags, gone = raw.get("transactionType"), raw.get("reversed") is True
            actions = (
                ("deposit", "SAVINGSACCOUNT|DEPOSIT"),
                ("withdrawal", "SAVINGSACCOUNT|WITHDRAWAL"),
            )
        else:
            flags, gone = raw.get("type"), raw.get("manuallyReversed") is True
            actions = (("disbursement", "LOAN|DISBURSE"), ("repayment", "LOAN|REPAYMENT"))
        if not gone or not isinstance(flags, dict):
            continue
        keys.extend(f"{prefix}|{raw['id']}" for flag, prefix in actions if flags.get(flag) is True)
    return keys


def transfer_fields(tx: Transaction, data: dict[str, Any]) -> dict[str, Any]:
    """Fields to update from an ``AccountTransferData`` read-back."""
    currency = _currency(data)
    fields = _amount_fields(tx, currency, to_decimal(data.get("transferAmount")))
    from_account = data.get("fromAccount")
    if isinstance(from_account, dict) and isinstance(from_account.get("accountNo"), str):
        fields["account_no"] = from_account["accountNo"]
    to_account = data.get("toAccount")
    to_type = data.get("toAccountType")
    if isinstance(to_account, dict) and isinstance(to_account.get("id"), int):
        kind = (
            "loan"
            if isinstance(to_type, dict) and to_type.get("id") == _LOAN_ACCOUNT_TYPE
            else "savings"
        )
        fields["counterparty_account_id"] = f"{kind}:{to_account['id']}"
    to_client = data.get("toClient")
    if isinstance(to_client, dict):
        if isinstance(to_client.get("id"), int):
            fields["counterparty_client_id"] = str(to_client["id"])
        if isinstance(to_client.get("displayName"), str):
            fields["counterparty_name"] = to_client["displayName"]
    if data.get("reversed") is True:
        fields["reversed"] = True
    if isinstance(data.get("id"), int) and tx.attributes.get("transfer_id") != data["id"]:
        # The transfer transaction id is what account listings show; the sweep finds the
        # hooked transfer by it when it cannot tell the detail id.
        attributes = fields.get("attributes", tx.attributes)
        fields["attributes"] = {**attributes, "transfer_id": data["id"]}
    return fields


class Enricher:
    """Reads stored transactions back from Fineract in the background.

    Args:
        store: where the enriched fields are written.
        client: the Fineract REST client (with its circuit breaker).
        metrics: the ingress metrics (``aml_ingest_enrichment_total{result}``).
        concurrency: read-backs in flight at most.
    """

    def __init__(
        self,
        store: Store,
        client: FineractClient,
        metrics: IngressMetrics,
        *,
        concurrency: int = 4,
    ) -> None:
        self._store = store
        self._client = client
        self._metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, txs: Sequence[Transaction]) -> None:
        """Enrich ``txs`` in the background (called right after they were stored)."""
        for tx in txs:
            task = asyncio.get_running_loop().create_task(self._guarded(tx))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(self, tx: Transaction) -> None:
        async with self._slots:
            try:
                if tx.status is TransactionStatus.CORRECTION:
                    await self.reconcile_reversals(tx)
                else:
                    await self.enrich(tx)
            except Exception:
                self._metrics.enrichment.labels(result="error").inc()
                log.exception("enrichment of transaction %s failed", tx.id)

    async def reconcile_reversals(self, correction: Transaction) -> list[Transaction]:
        """Find what ``correction`` undid by re-reading its account, and mark it reversed.

        A reversed movement stays in the customer's history and velocity windows on purpose:
        the money did move and then came back, and both legs matter to AML (quick in-and-out
        is a layering pattern). Analysts see the ``reversed`` flag on the transaction.

        Returns:
            The stored transactions newly marked reversed (empty when Fineract could not be
            read, the account kind is unknown, or nothing new was reversed).
        """
        account = _split_account(correction.account_id)
        if account is None or account[0] not in ("savings", "loan"):
            self._metrics.enrichment.labels(result="unsupported").inc()
            return []
        kind, number = account
        try:
            data = await (
                self._client.savings_account(number)
                if kind == "savings"
                else self._client.loan(number)
            )
        except NotFound:
            self._metrics.enrichment.labels(result="not_found").inc()
            log.warning("account %s of correction %s not found in Fineract", number, correction.id)
            return []
        except FineractUnavailable as exc:
            self._metrics.enrichment.labels(result="unavailable").inc()
            log.info(
                "reversal check of correction %s (%s) skipped: %s",
                correction.id,
                correction.dedupe_key,
                exc.message,
            )
            return []
        except AmlError as exc:
            self._metrics.enrichment.labels(result="error").inc()
            log.warning("reversal check of correction %s failed: %s", correction.id, exc.message)
            return []
        listing = data.get("transactions")
        keys = reversed_keys(kind, listing if isinstance(listing, list) else [])
        marked = await self._store.transactions.mark_reversed(correction.tenant, keys)
        fields: dict[str, Any] = {"enriched": True}
        if len(marked) == 1 and correction.reverses_external_id is None:
            fields["reverses_external_id"] = marked[0].external_id
        await self._store.transactions.update_fields(correction.id, **fields)
        self._metrics.enrichment.labels(result="ok").inc()
        if marked:
            log.info(
                "correction %s: %d transaction(s) reversed in Fineract marked (%s)",
                correction.dedupe_key,
                len(marked),
                ", ".join(tx.dedupe_key for tx in marked),
            )
        return marked

    async def enrich(self, tx: Transaction) -> Transaction | None:
        """Read ``tx`` back and store what Fineract knows. Returns the updated transaction, or
        None when nothing could be read (not found, Fineract unavailable, unknown kind)."""
        try:
            fields = await self._read_back(tx)
        except NotFound:
            self._metrics.enrichment.labels(result="not_found").inc()
            log.warning("transaction %s (%s) not found in Fineract", tx.id, tx.dedupe_key)
            return None
        except FineractUnavailable as exc:
            self._metrics.enrichment.labels(result="unavailable").inc()
            log.info("enrichment of %s skipped: %s", tx.id, exc.message)
            return None
        except AmlError as exc:
            self._metrics.enrichment.labels(result="error").inc()
            log.warning("enrichment of %s failed: %s", tx.id, exc.message)
            return None
        if fields is None:
            self._metrics.enrichment.labels(result="unsupported").inc()
            return None
        fields["enriched"] = True
        updated = await self._store.transactions.update_fields(tx.id, **fields)
        self._metrics.enrichment.labels(result="ok").inc()
        return updated

    async def _read_back(self, tx: Transaction) -> dict[str, Any] | None:
        if tx.external_id is None:
            return None
        if tx.type is TransactionType.TRANSFER and tx.source == "fineract":
            items = await self._client.account_transfers(tx.external_id)
            if not items:
                raise NotFound("transfer not found")
            return transfer_fields(tx, items[0])
        account = _split_account(tx.account_id)
        if account is None:
            return None
        kind, number = account
        if kind == "savings":
            return savings_fields(
                tx, await self._client.savings_transaction(number, tx.external_id)
            )
        if kind == "loan":
            return loan_fields(tx, await self._client.loan_transaction(number, tx.external_id))
        return None

    async def wait_idle(self) -> None:
        """Wait for the read-backs in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop: cancel read-backs in flight (they are best-effort). The client is the caller's."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
