"""Storage: a client's movements on all of its accounts (what client windows are rebuilt from)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aml.domain import Direction, TransactionStatus, TransactionType
from storage.store import Store
from tests.factories import T0, make_tx

pytestmark = pytest.mark.integration


async def test_client_history_spans_accounts_in_time_order_and_window(store: Store) -> None:
    loan = make_tx(
        account_id="loan:21",
        type=TransactionType.LOAN_DISBURSEMENT,
        direction=Direction.OUT,
        occurred_at=T0 + timedelta(hours=2),
    )
    spend = make_tx(
        account_id="savings:13",
        type=TransactionType.WITHDRAWAL,
        direction=Direction.OUT,
        occurred_at=T0 + timedelta(hours=1),
    )
    deposit = make_tx(account_id="savings:12", occurred_at=T0 + timedelta(hours=3))
    too_early = make_tx(account_id="savings:12", occurred_at=T0 - timedelta(seconds=1))
    too_late = make_tx(account_id="savings:12", occurred_at=T0 + timedelta(hours=4))
    other_client = make_tx(client_id="8", occurred_at=T0 + timedelta(hours=1))
    other_tenant = make_tx(tenant="other", occurred_at=T0 + timedelta(hours=1))
    rejected = make_tx(status=TransactionStatus.REJECTED, occurred_at=T0 + timedelta(hours=1))
    await store.transactions.insert_many(
        [loan, spend, deposit, too_early, too_late, other_client, other_tenant, rejected]
    )
    got = await store.transactions.client_history(
        "default", "7", since=T0, until=T0 + timedelta(hours=4)
    )
    assert [t.id for t in got] == [spend.id, loan.id, deposit.id]
    # Without an end, everything from ``since`` on.
    open_ended = await store.transactions.client_history("default", "7", since=T0)
    assert [t.id for t in open_ended] == [spend.id, loan.id, deposit.id, too_late.id]


async def test_client_history_is_limited_to_the_oldest_first(store: Store) -> None:
    txs = [make_tx(occurred_at=T0 + timedelta(minutes=m)) for m in range(5)]
    await store.transactions.insert_many(txs)
    got = await store.transactions.client_history("default", "7", since=T0, limit=3)
    assert [t.id for t in got] == [t.id for t in txs[:3]]
