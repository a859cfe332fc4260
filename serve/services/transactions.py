"""Transaction search for analysts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aml.auth import Permission
from aml.domain import RiskLevel, Transaction
from aml.errors import NotFound
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store


async def search(
    store: Store,
    *,
    actor: Actor,
    tenant: str | None = None,
    account_id: str | None = None,
    client_id: str | None = None,
    min_amount_minor: int | None = None,
    max_amount_minor: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    risk_levels: Sequence[RiskLevel] = (),
    skip: int = 0,
    limit: int = 50,
) -> Page[Transaction]:
    """Transactions matching the filters, newest first."""
    actor.require(Permission.TRANSACTION_READ)
    check_window(skip, limit)
    items, total = await store.transactions.search(
        tenant=tenant or None,
        account_id=account_id or None,
        client_id=client_id or None,
        min_amount_minor=min_amount_minor,
        max_amount_minor=max_amount_minor,
        since=since,
        until=until,
        risk_levels=risk_levels,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


async def get_or_raise(store: Store, *, actor: Actor, transaction_id: str) -> Transaction:
    actor.require(Permission.TRANSACTION_READ)
    tx = await store.transactions.get(transaction_id)
    if tx is None:
        raise NotFound("transaction not found", transaction_id=transaction_id)
    return tx
