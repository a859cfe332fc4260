"""Storage conformance: transactions (runs on the embedded server and on AML_TEST_MONGODB_URI)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

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


async def test_stored_duplicates_are_found_per_tenant_in_one_read(store: Store) -> None:
    a = make_tx(dedupe_key="k1")
    b = make_tx(dedupe_key="k2")
    other = make_tx(dedupe_key="k1", tenant="other")
    await store.transactions.insert_many([a, b], ingest_ids=["rec-a", "rec-b"])
    await store.transactions.insert_many([other])
    found = await store.transactions.stored_from_many("default", ["k2", "k1", "k1", "missing"])
    assert found == {"k1": (a, "rec-a"), "k2": (b, "rec-b")}
    assert await store.transactions.stored_from_many("other", ["k1", "k2"]) == {"k1": (other, None)}
    assert await store.transactions.stored_from_many("default", []) == {}
    assert await store.transactions.stored_from("default", "k2") == (b, "rec-b")
    assert await store.transactions.stored_from("default", "missing") is None


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


async def test_search_totals_count_what_the_filters_match(store: Store) -> None:
    # The pager's total comes from the ``count`` command; it must agree with an aggregation
    # count and with the documents a full read finds, filter by filter.
    txs = [
        make_tx(
            tenant="t1" if i % 3 else "t2",
            account_id=f"savings:{950 + i % 4}",
            client_id=str(70 + i % 5),
            amount_minor=1_000 * (i + 1),
            occurred_at=T0 + timedelta(hours=i),
        )
        for i in range(24)
    ]
    await store.transactions.insert_many(txs)
    levels = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL]
    await store.transactions.mark_scored({t.id: levels[i % 4] for i, t in enumerate(txs[:20])})
    filters: list[dict[str, Any]] = [
        {},
        {"tenant": "t1"},
        {"account_id": "savings:951", "client_id": "71"},
        {"risk_levels": [RiskLevel.HIGH, RiskLevel.CRITICAL]},
        {"risk_levels": [RiskLevel.LOW], "tenant": "t2"},
        {"min_amount_minor": 5_000, "max_amount_minor": 12_000},
        {"since": T0 + timedelta(hours=5), "until": T0 + timedelta(hours=17), "tenant": "t1"},
    ]
    for f in filters:
        page, total = await store.transactions.search(limit=100, **f)
        assert total == len(page) > 0, f
        assert total == await store.transactions.col.count_documents(_query_of(f)), f


def _query_of(f: dict[str, Any]) -> dict[str, Any]:
    """The MongoDB query ``search`` builds for ``f`` (independently written)."""
    q: dict[str, Any] = {k: v for k, v in f.items() if k in ("tenant", "account_id", "client_id")}
    if "risk_levels" in f:
        q["risk_level"] = {"$in": [r.value for r in f["risk_levels"]]}
    if "min_amount_minor" in f:
        q["amount_minor"] = {"$gte": f["min_amount_minor"], "$lte": f["max_amount_minor"]}
    if "since" in f:
        q["occurred_at"] = {"$gte": f["since"], "$lt": f["until"]}
    return q


async def test_documents_stored_before_the_time_keys_are_backfilled_and_found(
    store: Store,
) -> None:
    from storage.codec import to_doc

    old = make_tx(account_id="savings:901", occurred_at=T0 + timedelta(hours=2))
    # As an earlier release stored it: dates only, no numeric time keys.
    await store.transactions.col.insert_one(to_doc(old))
    since = T0
    assert await store.transactions.history("default", "savings:901", since=since) == []

    await store.ensure_indexes()
    assert await store.transactions.history("default", "savings:901", since=since) == [old]
    assert await store.transactions.backfill_time_keys() == 0  # nothing left to do


async def test_history_reads_both_sides_once_each_in_time_order(store: Store) -> None:
    a, b = "savings:911", "savings:912"
    out = make_tx(account_id=a, counterparty_account_id=b, occurred_at=T0 + timedelta(hours=3))
    back = make_tx(account_id=b, counterparty_account_id=a, occurred_at=T0 + timedelta(hours=1))
    own = make_tx(account_id=a, occurred_at=T0 + timedelta(hours=2))
    late = make_tx(account_id=a, occurred_at=T0 + timedelta(days=3))
    await store.transactions.insert_many([out, back, own, late])
    got = await store.transactions.history("default", a, since=T0, until=T0 + timedelta(days=1))
    assert got == [back, own, out]
    assert await store.transactions.history("default", a, since=T0, limit=2) == [back, own]


async def test_pending_sweep_reads_by_the_numeric_receive_key(store: Store) -> None:
    first = make_tx(received_at=T0 + timedelta(minutes=1))
    second = make_tx(received_at=T0 + timedelta(minutes=2))
    fresh = make_tx(received_at=T0 + timedelta(hours=1))
    await store.transactions.insert_many([fresh, second, first])
    got = await store.transactions.list_pending(older_than=T0 + timedelta(minutes=30))
    assert [t.id for t in got] == [first.id, second.id]


async def test_the_embedded_store_is_recognised_and_gets_its_own_indexes(store: Store) -> None:
    import os

    names = {
        tuple(k for k, _ in spec["key"])
        for spec in (await store.transactions.col.index_information()).values()
    }
    if os.environ.get("AML_TEST_MONGODB_URI"):
        assert not await store.is_embedded()
        assert ("tenant", "account_id", "occurred_ms") in names
    else:
        assert await store.is_embedded()
        assert ("account_id",) in names and ("client_id",) in names
        # Duplicate look-ups read this one: the unique pair does not serve them here.
        assert ("dedupe_key",) in names and ("tenant", "dedupe_key") in names


async def test_an_index_no_version_declares_any_more_is_dropped_on_the_embedded_store_only(
    store: Store,
) -> None:
    """After an upgrade moved the transactions page from ``occurred_at`` to ``occurred_ms``,
    the old index would be updated on every insert for nothing."""
    from pymongo import DESCENDING

    embedded = await store.is_embedded()
    await store.transactions.col.create_index([("occurred_at", DESCENDING)])

    def fields(info: dict[str, Any]) -> set[tuple[str, ...]]:
        return {tuple(k for k, _ in spec["key"]) for spec in info.values()}

    # Every process ensures indexes as it starts (the ingress, the API, the dashboard...).
    await asyncio.gather(*(store.transactions.ensure_indexes(embedded=embedded) for _ in range(3)))
    kept = fields(await store.transactions.col.index_information())
    assert (("occurred_at",) in kept) is not embedded
    assert ("occurred_ms",) in kept and ("_id",) in kept


async def test_history_reads_each_window_on_both_sides_from_its_own_since(store: Store) -> None:
    """The reads a warming state shard makes, one per window: both sides of an account, its own
    ``since`` (at the stored millisecond), tenants apart, attempts left out, the oldest first."""
    a, b, hub = "savings:501", "savings:502", "savings:503"
    stream = [
        make_tx(account_id=a, occurred_at=T0 + timedelta(minutes=1)),
        make_tx(account_id=b, occurred_at=T0 + timedelta(minutes=2)),
        make_tx(
            account_id=a,
            counterparty_account_id=b,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            occurred_at=T0 + timedelta(minutes=3),
        ),
        make_tx(account_id=b, occurred_at=T0 + timedelta(minutes=4, microseconds=400)),
        make_tx(tenant="other", account_id=a, occurred_at=T0 + timedelta(minutes=5)),
        make_tx(account_id=a, status=TransactionStatus.REJECTED, occurred_at=T0),
        *(make_tx(account_id=hub, occurred_at=T0 + timedelta(seconds=s)) for s in range(6)),
    ]
    await store.transactions.insert_many(stream)
    requests = [
        ("default", a, T0),
        ("default", b, T0 + timedelta(minutes=2, microseconds=700)),  # inside the same ms
        ("other", a, T0),
        ("default", hub, T0),
        ("default", "savings:599", T0),  # nothing stored
    ]
    windows = await asyncio.gather(
        *(
            store.transactions.history(tenant, name, since=since, limit=4)
            for tenant, name, since in requests
        )
    )
    assert [len(w) for w in windows] == [2, 3, 1, 4, 0]
    assert [t.id for t in windows[3]] == [t.id for t in stream[6:10]]  # the oldest four
    for window in windows:
        assert [t.occurred_at for t in window] == sorted(t.occurred_at for t in window)
    clients = await asyncio.gather(
        store.transactions.client_history("default", "7", since=T0 + timedelta(minutes=2)),
        store.transactions.client_history("default", "nobody", since=T0),
    )
    assert [t.id for t in clients[0]] == [t.id for t in stream[1:4]] and clients[1] == []


async def test_windows_answer_each_read_as_its_own_history_in_few_reads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a warming shard reads for a batch: every window as ``history`` / ``client_history``
    would answer it alone, with chunks of names, a busy account read alone, and one object per
    stored transaction."""
    from storage.repositories import transactions as module

    monkeypatch.setattr(module, "WINDOWS_CHUNK", 3)
    rng = __import__("random").Random(7)
    accounts = [f"savings:{700 + i}" for i in range(8)]
    stream = []
    for i in range(160):
        owner = accounts[0] if i % 3 == 0 else rng.choice(accounts)  # the first one is busy
        cp = rng.choice([None, *accounts])
        stream.append(
            make_tx(
                tenant=rng.choice(["default", "default", "other"]),
                account_id=owner,
                client_id=f"c{accounts.index(owner) % 3}",
                counterparty_account_id=cp if cp != owner else None,
                type=TransactionType.TRANSFER if cp and cp != owner else TransactionType.DEPOSIT,
                direction=Direction.OUT if cp and cp != owner else Direction.IN,
                status=TransactionStatus.REJECTED if i % 17 == 0 else TransactionStatus.PENDING,
                occurred_at=T0 + timedelta(minutes=i, microseconds=rng.choice([0, 300])),
            )
        )
    await store.transactions.insert_many(stream)
    reads = [
        *(("account", "default", a, T0 + timedelta(minutes=3 * k)) for k, a in enumerate(accounts)),
        ("account", "other", accounts[1], T0),
        ("account", "default", "savings:799", T0),  # nothing stored
        ("account", "default", accounts[2], T0 + timedelta(minutes=40, microseconds=700)),
        *(("client", "default", f"c{k}", T0 + timedelta(minutes=k)) for k in range(3)),
        ("client", "other", "c1", T0),
    ]
    limit = 30  # the busy account has more: its chunk is read again window by window
    got = await store.transactions.windows(reads, limit=limit)
    alone = await asyncio.gather(
        *(
            store.transactions.client_history(t, n, since=s, limit=limit)
            if kind == "client"
            else store.transactions.history(t, n, since=s, limit=limit)
            for kind, t, n, s in reads
        )
    )
    assert [[t.id for t in w] for w in got] == [[t.id for t in w] for w in alone]
    assert [w for w in got if w] and len(got[0]) == limit
    objects = {}
    for window in got:
        for tx in window:
            assert objects.setdefault(tx.id, tx) is tx
    assert await store.transactions.windows([]) == []
