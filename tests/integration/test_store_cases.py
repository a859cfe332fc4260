"""Storage conformance: cases (numbering, links, append-only notes, four-eyes, stale writes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aml.domain import CaseStatus
from aml.errors import Conflict, Forbidden, NotFound
from storage.store import Store
from tests.factories import T0, make_case, make_note

pytestmark = pytest.mark.integration


async def test_create_numbers_per_year_and_round_trips(store: Store) -> None:
    first = await store.cases.create(
        make_case(client_id="7", alert_ids=("a1",), notes=(make_note(),), assignee="ana")
    )
    second = await store.cases.create(make_case())
    next_year = await store.cases.create(make_case(created_at=datetime(2027, 1, 2, tzinfo=UTC)))
    assert (first.number, second.number) == ("CASE-2026-000001", "CASE-2026-000002")
    assert next_year.number == "CASE-2027-000001"
    assert await store.cases.get(first.id) == first
    assert await store.cases.get_by_number("CASE-2026-000002") == second
    with pytest.raises(NotFound):
        await store.cases.get_or_raise("missing")


async def test_concurrent_creates_get_distinct_numbers(store: Store) -> None:
    made = await asyncio.gather(*(store.cases.create(make_case()) for _ in range(10)))
    assert sorted(c.number for c in made) == [f"CASE-2026-{i:06d}" for i in range(1, 11)]


async def test_links_are_added_once_and_removed(store: Store) -> None:
    case = await store.cases.create(make_case())
    at = T0 + timedelta(hours=1)
    await store.cases.add_alerts(case.id, ["a1", "a2"], at=at)
    await store.cases.add_alerts(case.id, ["a2", "a3"], at=at)
    await store.cases.add_transactions(case.id, ["t1", "t2"], at=at)
    after = await store.cases.remove_alerts(case.id, ["a1"], at=at)
    after = await store.cases.remove_transactions(case.id, ["t2"], at=at)
    assert after.alert_ids == ("a2", "a3") and after.transaction_ids == ("t1",)
    assert await store.cases.get(case.id) == after
    found, total = await store.cases.list_(alert_id="a3")
    assert total == 1 and found[0].id == case.id


async def test_concurrent_notes_are_all_kept_in_order_of_arrival(store: Store) -> None:
    case = await store.cases.create(make_case())
    notes = [make_note(text=f"note {i}") for i in range(8)]
    await asyncio.gather(*(store.cases.add_note(case.id, n) for n in notes))
    stored = await store.cases.get_or_raise(case.id)
    assert sorted(stored.notes, key=lambda n: n.text) == sorted(notes, key=lambda n: n.text)
    later = make_note(text="later")
    again = await store.cases.add_note(case.id, later)
    assert again.notes[:-1] == stored.notes and again.notes[-1] == later


async def test_stale_status_update_is_a_conflict(store: Store) -> None:
    # Created before both updates (the factory's default time moves with every case built).
    case = await store.cases.create(make_case(created_at=T0))
    seen = case.updated_at
    moved = await store.cases.update_status(
        case.id,
        status=CaseStatus.INVESTIGATING,
        at=T0 + timedelta(hours=2),
        expected_updated_at=seen,
    )
    assert moved.status is CaseStatus.INVESTIGATING
    with pytest.raises(Conflict):
        await store.cases.update_status(
            case.id,
            status=CaseStatus.CLOSED_NO_ACTION,
            at=T0 + timedelta(hours=3),
            expected_updated_at=seen,
        )
    got = await store.cases.get_or_raise(case.id)
    assert got.status is CaseStatus.INVESTIGATING


async def test_four_eyes_needs_a_second_user(store: Store) -> None:
    case = await store.cases.create(make_case())
    pending = await store.cases.request_status(
        case.id, status=CaseStatus.CLOSED_SAR_FILED, requested_by="ana", at=T0
    )
    assert pending.pending_status is CaseStatus.CLOSED_SAR_FILED
    assert pending.status is CaseStatus.OPEN
    assert await store.cases.pending_requested_by(case.id) == "ana"
    with pytest.raises(Forbidden):
        await store.cases.approve_pending(case.id, approver="ana", at=T0)
    await store.cases.add_note(case.id, make_note())  # unrelated change keeps the request
    done = await store.cases.approve_pending(case.id, approver="bob", at=T0 + timedelta(hours=1))
    assert done.status is CaseStatus.CLOSED_SAR_FILED
    assert done.approved_by == "bob" and done.pending_status is None
    assert await store.cases.pending_requested_by(case.id) is None
    with pytest.raises(Conflict):
        await store.cases.approve_pending(case.id, approver="bob", at=T0)


async def test_list_filters_sort_and_pagination(store: Store) -> None:
    for i in range(7):
        case = await store.cases.create(
            make_case(created_at=T0 + timedelta(hours=i), tenant="t2" if i == 6 else "default")
        )
        if i % 2:
            await store.cases.assign(case.id, assignee="ana", at=case.created_at)
    page, total = await store.cases.list_(skip=1, limit=2)
    assert total == 7
    assert [c.created_at for c in page] == [T0 + timedelta(hours=5), T0 + timedelta(hours=4)]
    mine, n_mine = await store.cases.list_(assignee="ana", descending=False)
    assert n_mine == 3 and [c.created_at.hour for c in mine] == [11, 13, 15]
    _, n_tenant = await store.cases.list_(tenant="t2")
    assert n_tenant == 1
    await store.cases.request_status(
        mine[0].id, status=CaseStatus.ESCALATED, requested_by="ana", at=T0
    )
    pending, n_pending = await store.cases.list_(pending_only=True)
    assert n_pending == 1 and pending[0].id == mine[0].id
    counts = await store.cases.count_by_status()
    assert counts[CaseStatus.OPEN] == 7 and counts[CaseStatus.ESCALATED] == 0
