"""Storage conformance: audit log (append-only hash chain)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage.store import Store
from tests.factories import T0

pytestmark = pytest.mark.integration


async def _append(store: Store, i: int, actor: str = "ana") -> None:
    await store.audit_log.append(
        at=T0 + timedelta(seconds=i, microseconds=456_789),
        actor=actor,
        action="alert.decide" if i % 2 else "case.create",
        target_type="alert",
        target_id=f"a{i}",
        details={"decision": "legitimate", "amount_minor": 1000 * i, "tags": ["x", "y"]},
        ip="10.0.0.1",
    )


async def test_appended_entries_round_trip_and_verify(store: Store) -> None:
    for i in range(5):
        await _append(store, i)
    page, total = await store.audit_log.list_(limit=10)
    assert total == 5
    assert [e.seq for e in page] == [5, 4, 3, 2, 1]
    assert page[-1].details == {"decision": "legitimate", "amount_minor": 0, "tags": ["x", "y"]}
    assert page[0].at.tzinfo is not None
    assert page[0].prev_hash == page[1].hash
    assert await store.audit_log.verify() is None


async def test_editing_a_stored_entry_is_reported(store: Store) -> None:
    for i in range(6):
        await _append(store, i)
    await store.audit_log.col.update_one({"seq": 4}, {"$set": {"details": {"decision": "x"}}})
    assert await store.audit_log.verify() == 4


async def test_deleting_a_stored_entry_is_reported(store: Store) -> None:
    for i in range(4):
        await _append(store, i)
    await store.audit_log.col.delete_one({"seq": 2})
    assert await store.audit_log.verify() == 3


async def test_concurrent_appends_form_one_unbroken_chain(store: Store) -> None:
    await asyncio.gather(*(_append(store, i, actor=f"u{i}") for i in range(12)))
    page, total = await store.audit_log.list_(limit=100)
    assert total == 12
    assert sorted(e.seq for e in page) == list(range(1, 13))
    assert await store.audit_log.verify() is None


async def test_filters_and_pagination(store: Store) -> None:
    for i in range(10):
        await _append(store, i, actor="bob" if i < 4 else "ana")
    page, total = await store.audit_log.list_(actor="ana", skip=2, limit=3)
    assert total == 6
    assert [e.seq for e in page] == [8, 7, 6]
    decided, n = await store.audit_log.list_(action="alert.decide", target_id="a3")
    assert n == 1 and decided[0].seq == 4
