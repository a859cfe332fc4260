"""Storage conformance: decisions (idempotent inserts, look-ups, dashboard aggregations)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aml.domain import RiskLevel
from storage.repositories.decisions import ALERT_MS, DECIDED_MS
from storage.store import Store
from tests.factories import T0, make_decision

pytestmark = pytest.mark.integration


async def test_round_trip_keeps_nested_scorers_and_rule_hits(store: Store) -> None:
    decision = make_decision()
    await store.decisions.insert_many([decision])
    got = await store.decisions.get_by_transaction(decision.transaction_id)
    assert got == decision
    assert got is not None and got.decided_at.tzinfo is not None
    assert got.scorers[1].score is None and got.scorers[1].available is False
    assert await store.decisions.get_by_transaction("missing") is None


async def test_replayed_decision_is_a_duplicate_not_an_error(store: Store) -> None:
    first = make_decision(transaction_id="tx-1", score=0.3)
    await store.decisions.insert_many([first])
    again = await store.decisions.insert_many(
        [make_decision(transaction_id="tx-1", score=0.9), make_decision(transaction_id="tx-2")]
    )
    assert again.duplicates == (0,) and again.inserted == (1,)
    kept = await store.decisions.get_by_transaction("tx-1")
    assert kept is not None and kept.score == 0.3


async def test_concurrent_inserts_of_one_transaction_store_one(store: Store) -> None:
    results = await asyncio.gather(
        *(store.decisions.insert_many([make_decision(transaction_id="same")]) for _ in range(6))
    )
    assert sum(len(r.inserted) for r in results) == 1
    assert await store.decisions.count() == 1


async def test_list_for_transactions_and_pagination(store: Store) -> None:
    made = [
        make_decision(
            transaction_id=f"t{i}", decided_at=T0 + timedelta(seconds=i), alert=i % 3 == 0
        )
        for i in range(9)
    ]
    await store.decisions.insert_many(made)
    some = await store.decisions.list_for_transactions(["t1", "t4", "nope"])
    assert [d.transaction_id for d in some] == ["t4", "t1"]
    page, total = await store.decisions.list_(skip=2, limit=3)
    assert total == 9 and [d.transaction_id for d in page] == ["t6", "t5", "t4"]
    alerting, n = await store.decisions.list_(alert=True)
    assert n == 3 and {d.transaction_id for d in alerting} == {"t0", "t3", "t6"}


async def test_per_minute_counts_with_empty_minutes(store: Store) -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 10, 59, 60, 185, 400)]
    await store.decisions.insert_many(
        [make_decision(decided_at=t, risk_level=RiskLevel.LOW) for t in times]
    )
    buckets = await store.decisions.per_minute(since=T0, until=T0 + timedelta(minutes=4))
    assert buckets == [
        (T0, 3),
        (T0 + timedelta(minutes=1), 1),
        (T0 + timedelta(minutes=2), 0),
        (T0 + timedelta(minutes=3), 1),
    ]


async def test_alert_rate_over_a_range(store: Store) -> None:
    await store.decisions.insert_many(
        [
            make_decision(decided_at=T0 + timedelta(minutes=i), alert=i in (1, 2, 7))
            for i in range(10)
        ]
    )
    total, alerts, rate = await store.decisions.alert_rate(
        since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=5)
    )
    assert (total, alerts) == (4, 2) and rate == 0.5
    assert await store.decisions.alert_rate(
        since=T0 + timedelta(days=1), until=T0 + timedelta(days=2)
    ) == (0, 0, 0.0)


async def test_per_minute_counts_only_inside_a_range_that_starts_mid_minute(store: Store) -> None:
    times = [T0 + timedelta(seconds=s) for s in (5, 30, 70, 125, 150)]
    await store.decisions.insert_many([make_decision(decided_at=t) for t in times])
    buckets = await store.decisions.per_minute(
        since=T0 + timedelta(seconds=20), until=T0 + timedelta(seconds=130)
    )
    # [0:20, 1:00), [1:00, 2:00), [2:00, 2:10): the decisions at 0:05 and 2:30 are outside.
    assert buckets == [
        (T0, 1),
        (T0 + timedelta(minutes=1), 1),
        (T0 + timedelta(minutes=2), 1),
    ]


async def test_counters_of_one_tenant_leave_the_others_out(store: Store) -> None:
    await store.decisions.insert_many(
        [
            make_decision(decided_at=T0 + timedelta(seconds=i), tenant=tenant, alert=i % 2 == 0)
            for i, tenant in enumerate(["t1", "t1", "t2", "t1", "t2"])
        ]
    )
    until = T0 + timedelta(minutes=1)
    assert await store.decisions.alert_rate(since=T0, until=until, tenant="t1") == (3, 1, 1 / 3)
    assert await store.decisions.alert_rate(since=T0, until=until, tenant="t2") == (2, 2, 1.0)
    assert await store.decisions.per_minute(since=T0, until=until, tenant="t2") == [(T0, 2)]


async def test_decisions_stored_before_the_time_keys_are_backfilled_and_counted(
    store: Store,
) -> None:
    """Documents written by a release without ``decided_ms`` / ``alert_ms`` get them when the
    indexes are ensured (at start-up); the counters select on them."""
    from storage.repositories.decisions import _as_id

    old = [make_decision(decided_at=T0 + timedelta(minutes=i), alert=i == 1) for i in range(3)]
    docs = []
    for d in old:
        doc = _as_id(d)
        del doc[DECIDED_MS]
        doc.pop(ALERT_MS, None)
        docs.append(doc)
    await store.decisions.col.insert_many(docs)
    until = T0 + timedelta(minutes=5)
    assert await store.decisions.alert_rate(since=T0, until=until) == (0, 0, 0.0)

    await store.decisions.ensure_indexes(embedded=await store.is_embedded())
    assert await store.decisions.alert_rate(since=T0, until=until) == (3, 1, 1 / 3)
    assert await store.decisions.col.count_documents({ALERT_MS: {"$exists": True}}) == 1
    assert [await store.decisions.get_by_transaction(d.transaction_id) for d in old] == old
