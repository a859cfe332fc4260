"""Storage conformance: streaming a tenant's transactions grouped by client (runs on the
embedded server and on AML_TEST_MONGODB_URI)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aml.domain import Transaction
from storage.store import Store
from tests.factories import T0, make_tx

pytestmark = pytest.mark.integration

SINCE = T0
UNTIL = T0 + timedelta(days=30)


async def _seed(store: Store) -> list[Transaction]:
    """Seven clients in t1 with interleaved times, plus noise the stream must leave out."""
    inside = [
        make_tx(
            tenant="t1",
            client_id=f"c{i % 7}",
            account_id=f"savings:{i % 7}",
            # Inserted out of time order so that the sort is what orders them.
            occurred_at=SINCE + timedelta(days=(i * 11) % 29, hours=i % 5),
        )
        for i in range(40)
    ]
    noise = [
        make_tx(tenant="t1", client_id="c1", occurred_at=SINCE - timedelta(seconds=1)),
        make_tx(tenant="t1", client_id="c2", occurred_at=UNTIL),  # the end is exclusive
        make_tx(tenant="t1", client_id="late", occurred_at=UNTIL + timedelta(days=1)),
        make_tx(tenant="t1", client_id=None, occurred_at=SINCE + timedelta(days=1)),
        make_tx(tenant="t2", client_id="c1", occurred_at=SINCE + timedelta(days=1)),
    ]
    await store.transactions.insert_many([*inside, *noise])
    return inside


def _by_client(txs: list[Transaction]) -> dict[str, list[Transaction]]:
    out: dict[str, list[Transaction]] = {}
    for tx in sorted(txs, key=lambda t: (t.occurred_at, t.id)):
        assert tx.client_id is not None
        out.setdefault(tx.client_id, []).append(tx)
    return out


async def test_client_ids_are_the_window_s_clients_sorted(store: Store) -> None:
    await _seed(store)
    ids = await store.transactions.client_ids("t1", since=SINCE, until=UNTIL)
    assert ids == [f"c{i}" for i in range(7)]


@pytest.mark.parametrize("per_chunk", [1, 3, 7, 50])
async def test_chunks_hold_every_window_transaction_once_grouped_and_in_time_order(
    store: Store, per_chunk: int
) -> None:
    inside = await _seed(store)
    chunks = [
        c
        async for c in store.transactions.iter_client_chunks(
            "t1", since=SINCE, until=UNTIL, clients_per_chunk=per_chunk
        )
    ]
    assert all(1 <= len(c) <= per_chunk for c in chunks)
    assert len(chunks) == -(-7 // per_chunk)
    seen_clients = [cid for c in chunks for cid in c]
    assert seen_clients == sorted(seen_clients) and len(set(seen_clients)) == 7
    merged = {cid: txs for c in chunks for cid, txs in c.items()}
    expected = _by_client(inside)
    assert {c: [t.id for t in txs] for c, txs in merged.items()} == {
        c: [t.id for t in txs] for c, txs in expected.items()
    }
    for txs in merged.values():
        times = [t.occurred_at for t in txs]
        assert times == sorted(times)
    # Whole transactions come back, not projections.
    first = expected["c0"][0]
    assert merged["c0"][0] == first


async def test_given_client_ids_limit_the_stream(store: Store) -> None:
    inside = await _seed(store)
    chunks = [
        c
        async for c in store.transactions.iter_client_chunks(
            "t1", since=SINCE, until=UNTIL, clients_per_chunk=10, client_ids=["c5", "nobody"]
        )
    ]
    assert len(chunks) == 1 and list(chunks[0]) == ["c5"]
    assert len(chunks[0]["c5"]) == sum(1 for t in inside if t.client_id == "c5")


async def test_empty_tenant_streams_nothing(store: Store) -> None:
    await _seed(store)
    chunks = [
        c
        async for c in store.transactions.iter_client_chunks(
            "nobody", since=SINCE, until=UNTIL, clients_per_chunk=5
        )
    ]
    assert chunks == []
    with pytest.raises(ValueError, match="clients_per_chunk"):
        async for _ in store.transactions.iter_client_chunks(
            "t1", since=SINCE, until=UNTIL, clients_per_chunk=0
        ):
            pass
