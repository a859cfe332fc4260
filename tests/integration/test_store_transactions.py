"""Storage conformance: transactions (runs on the embedded server and on AML_TEST_MONGODB_URI)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aml.domain import (
    ActorType,
    Direction,
    RiskLevel,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from storage.store import Store
from tests.factories import T0, make_tx

pytestmark = pytest.mark.integration


async def test_round_trip_keeps_every_field(store: Store) -> None:
    tx = make_tx(
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        counterparty_account_id="savings:15",
        actor_type=ActorType.AGENT,
        kyc_level=2,
        attributes={"paymentTypeId": 1, "nested": {"a": [1, 2]}},
        running_balance_minor=-5,
    )
    await store.transactions.insert_many([tx])
    got = await store.transactions.get(tx.id)
    assert got == tx
    assert got is not None and got.occurred_at.tzinfo is not None


async def test_duplicate_dedupe_keys_are_reported_not_stored(store: Store) -> None:
    a = make_tx(dedupe_key="k1")
    b = make_tx(dedupe_key="k2")
    first = await store.transactions.insert_many([a, b])
    assert first.inserted == (0, 1)
    again = await store.transactions.insert_many(
        [make_tx(dedupe_key="k2"), make_tx(dedupe_key="k3")]
    )
    assert again.duplicates == (0,) and again.inserted == (1,)
    assert await store.transactions.count() == 3


async def test_concurrent_inserts_of_one_key_store_one(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.transactions.insert_many([make_tx(dedupe_key="same", external_id=str(i))])
            for i in range(8)
        )
    )
    assert sum(len(r.inserted) for r in results) == 1
    assert await store.transactions.count({"dedupe_key": "same"}) == 1


async def test_history_is_point_in_time_and_both_sides(store: Store) -> None:
    own = [make_tx(occurred_at=T0 + timedelta(hours=h)) for h in range(5)]
    incoming = make_tx(
        account_id="savings:99",
        counterparty_account_id="savings:12",
        type=TransactionType.TRANSFER,
        occurred_at=T0 + timedelta(hours=2, minutes=30),
    )
    failed = make_tx(status=TransactionStatus.REJECTED, occurred_at=T0 + timedelta(hours=1))
    await store.transactions.insert_many([*own, incoming, failed])
    hist = await store.transactions.history(
        "default", "savings:12", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)
    )
    assert [t.occurred_at for t in hist] == [
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
        T0 + timedelta(hours=2, minutes=30),
    ]


async def test_status_transition_guarded(store: Store) -> None:
    tx = make_tx()
    await store.transactions.insert_many([tx])
    assert (
        await store.transactions.set_status(
            [tx.id], TransactionStatus.SCORED, only_from=TransactionStatus.PENDING
        )
        == 1
    )
    assert (
        await store.transactions.set_status(
            [tx.id], TransactionStatus.SCORED, only_from=TransactionStatus.PENDING
        )
        == 0
    )
    got = await store.transactions.get(tx.id)
    assert isinstance(got, Transaction) and got.status is TransactionStatus.SCORED


async def test_search_paginates_newest_first(store: Store) -> None:
    txs = [
        make_tx(amount_minor=100 * i, occurred_at=T0 + timedelta(minutes=i)) for i in range(1, 31)
    ]
    await store.transactions.insert_many(txs)
    page, total = await store.transactions.search(min_amount_minor=1000, skip=5, limit=10)
    assert total == 21
    assert [t.amount_minor for t in page] == [100 * i for i in range(25, 15, -1)]


async def test_enrichment_update_keeps_types(store: Store) -> None:
    tx = make_tx()
    await store.transactions.insert_many([tx])
    later = T0 + timedelta(days=1)
    got = await store.transactions.update_fields(
        tx.id, reversed=True, enriched=True, received_at=later, running_balance_minor=123
    )
    assert got is not None
    again = await store.transactions.get(tx.id)
    assert again is not None
    assert again.reversed is True and again.enriched is True
    assert again.received_at == later and again.running_balance_minor == 123


async def test_mark_scored_records_risk_and_search_filters_by_it(store: Store) -> None:
    txs = [make_tx(occurred_at=T0 + timedelta(minutes=i)) for i in range(6)]
    await store.transactions.insert_many(txs)
    levels = [RiskLevel.LOW, RiskLevel.HIGH, RiskLevel.CRITICAL, RiskLevel.LOW, RiskLevel.HIGH]
    risk = {tx.id: level for tx, level in zip(txs, levels, strict=False)}
    assert await store.transactions.mark_scored(risk) == 5
    # Idempotent: a replayed persist changes nothing.
    assert await store.transactions.mark_scored(risk) == 0
    page, total = await store.transactions.search(risk_levels=[RiskLevel.HIGH, RiskLevel.CRITICAL])
    assert total == 3
    assert [t.id for t in page] == [txs[4].id, txs[2].id, txs[1].id]
    assert {t.status for t in page} == {TransactionStatus.SCORED}
    unscored = await store.transactions.get(txs[5].id)
    assert unscored is not None and unscored.risk_level is None
    assert unscored.status is TransactionStatus.PENDING
