"""Storage conformance: marking transactions reversed by dedupe key."""

from __future__ import annotations

import pytest

from storage.store import Store
from tests.factories import make_tx

pytestmark = pytest.mark.integration


async def test_mark_reversed_marks_only_the_tenants_named_transactions_once(store: Store) -> None:
    undone = make_tx(dedupe_key="SAVINGSACCOUNT|DEPOSIT|345")
    kept = make_tx(dedupe_key="SAVINGSACCOUNT|DEPOSIT|346")
    other_tenant = make_tx(tenant="main", dedupe_key="SAVINGSACCOUNT|DEPOSIT|345")
    await store.transactions.insert_many([undone, kept, other_tenant])

    marked = await store.transactions.mark_reversed(
        "default", ["SAVINGSACCOUNT|DEPOSIT|345", "SAVINGSACCOUNT|WITHDRAWAL|999"]
    )

    assert [tx.id for tx in marked] == [undone.id]
    assert marked[0].reversed
    assert (await store.transactions.get(kept.id)).reversed is False  # type: ignore[union-attr]
    assert (await store.transactions.get(other_tenant.id)).reversed is False  # type: ignore[union-attr]
    # Already marked: a second reconciliation reports nothing new.
    assert await store.transactions.mark_reversed("default", ["SAVINGSACCOUNT|DEPOSIT|345"]) == []
    assert await store.transactions.mark_reversed("default", []) == []
