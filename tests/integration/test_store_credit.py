"""Storage conformance: credit profiles and credit requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aml.domain import CreditRequestStatus, CreditTier
from aml.errors import Conflict, NotFound
from storage.store import Store
from tests.factories import T0, make_credit_profile, make_credit_request

pytestmark = pytest.mark.integration


async def test_profile_round_trip_and_upsert_replaces(store: Store) -> None:
    profile = make_credit_profile(client_id="7")
    await store.credit_profiles.upsert(profile)
    assert await store.credit_profiles.get(tenant="default", client_id="7") == profile
    newer = make_credit_profile(client_id="7", tier=CreditTier.A, score=0.91, cluster_tier=None)
    await store.credit_profiles.upsert(newer)
    assert await store.credit_profiles.get(tenant="default", client_id="7") == newer
    assert await store.credit_profiles.count() == 1
    with pytest.raises(NotFound):
        await store.credit_profiles.get_or_raise(tenant="other", client_id="7")


async def test_concurrent_upserts_of_one_client_keep_one(store: Store) -> None:
    await asyncio.gather(
        *(
            store.credit_profiles.upsert(make_credit_profile(client_id="9", score=i / 10))
            for i in range(6)
        )
    )
    assert await store.credit_profiles.count() == 1


async def test_bulk_upsert_tiers_and_pagination(store: Store) -> None:
    tiers = [CreditTier.A, CreditTier.B, CreditTier.B, CreditTier.C, CreditTier.E]
    batch = [
        make_credit_profile(client_id=f"c{i}", tier=t, score=0.9 - i / 10)
        for i, t in enumerate(tiers)
    ]
    assert await store.credit_profiles.upsert_many(batch) == 5
    rerun = [make_credit_profile(client_id="c0", tier=CreditTier.D, score=0.1)]
    assert await store.credit_profiles.upsert_many([*rerun, make_credit_profile(client_id="c9")])
    assert await store.credit_profiles.count() == 6
    dist = await store.credit_profiles.tier_distribution()
    assert dist == {
        CreditTier.A: 0,
        CreditTier.B: 3,
        CreditTier.C: 1,
        CreditTier.D: 1,
        CreditTier.E: 1,
    }
    page, total = await store.credit_profiles.list_(tiers=[CreditTier.B], skip=1, limit=5)
    assert total == 3 and len(page) == 2
    assert [p.score for p in page] == sorted((p.score for p in page), reverse=True)


async def test_request_round_trip_and_pending_first(store: Store) -> None:
    made = [
        make_credit_request(submitted_at=T0 + timedelta(hours=i), client_id=str(i))
        for i in range(4)
    ]
    for r in made:
        await store.credit_requests.create(r)
    assert await store.credit_requests.get(made[0].id) == made[0]
    with pytest.raises(Conflict):
        await store.credit_requests.create(made[0])
    await store.credit_requests.decide(
        made[3].id, status=CreditRequestStatus.APPROVED, by="bob", at=T0
    )
    page, total = await store.credit_requests.list_()
    assert total == 4
    assert [r.id for r in page] == [made[2].id, made[1].id, made[0].id, made[3].id]
    pending, n = await store.credit_requests.list_(statuses=[CreditRequestStatus.PENDING_REVIEW])
    assert n == 3 and len(pending) == 3


async def test_decide_only_from_pending(store: Store) -> None:
    request = await store.credit_requests.create(make_credit_request())
    done = await store.credit_requests.decide(
        request.id, status=CreditRequestStatus.REJECTED, by="bob", at=T0, note="over limit"
    )
    assert done.status is CreditRequestStatus.REJECTED and done.decided_at == T0
    assert await store.credit_requests.get(request.id) == done
    with pytest.raises(Conflict):
        await store.credit_requests.decide(
            request.id, status=CreditRequestStatus.APPROVED, by="eve", at=T0
        )
    with pytest.raises(NotFound):
        await store.credit_requests.decide(
            "missing", status=CreditRequestStatus.APPROVED, by="eve", at=T0
        )


async def test_concurrent_decisions_have_one_winner(store: Store) -> None:
    request = await store.credit_requests.create(make_credit_request())
    results = await asyncio.gather(
        *(
            store.credit_requests.decide(
                request.id, status=CreditRequestStatus.APPROVED, by=f"u{i}", at=T0
            )
            for i in range(4)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_expire_and_approval_rate(store: Store) -> None:
    old = [make_credit_request(expires_at=T0 + timedelta(days=i)) for i in range(3)]
    for r in old:
        await store.credit_requests.create(r)
    assert await store.credit_requests.expire(now=T0 + timedelta(days=1, hours=1)) == 2
    assert await store.credit_requests.expire(now=T0 + timedelta(days=1, hours=1)) == 0
    expired = await store.credit_requests.get(old[0].id)
    assert expired is not None and expired.status is CreditRequestStatus.EXPIRED
    with pytest.raises(Conflict):
        await store.credit_requests.decide(
            old[0].id, status=CreditRequestStatus.APPROVED, by="x", at=T0
        )
    decided = [make_credit_request() for _ in range(4)]
    for i, r in enumerate(decided):
        await store.credit_requests.create(r)
        status = CreditRequestStatus.APPROVED if i < 3 else CreditRequestStatus.REJECTED
        await store.credit_requests.decide(r.id, status=status, by="x", at=T0 + timedelta(days=i))
    assert await store.credit_requests.approval_rate() == (3, 4, 0.75)
    assert await store.credit_requests.approval_rate(since=T0 + timedelta(days=2)) == (1, 2, 0.5)
    assert await store.credit_requests.approval_rate(tenant="none") == (0, 0, 0.0)
