"""Credit workflow on the real store: nightly batch → profiles → request → recommendation →
four-eyes decision → audit trail; expiry; profile detail; analytics."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from aml.credit.score import COMPONENT_NAMES, ROUND_TRIP_COMPONENT
from aml.domain import (
    CreditRecommendation,
    CreditRequestStatus,
    CreditTier,
    Direction,
    Role,
    TransactionStatus,
    TransactionType,
)
from aml.errors import BadRequest, Conflict, Forbidden, NotFound
from serve.services import Actor, credit, users
from serve.services.credit import CreditWorkflowPolicy
from storage.store import Store
from tests.factories import make_tx
from tests.integration.credit_seed import (
    now_ms,
    register_cluster_champion,
    seed_clients,
    steady_history,
)
from tests.ui.seed import PASSWORD, Team, seed_team
from training.credit_batch import BatchProgress, score_all_from_store

pytestmark = pytest.mark.integration

# Analysts may approve up to 8,000 XAF; the steady client's tier B limit is 20,000 XAF.
POLICY = CreditWorkflowPolicy(senior_approval_above={"XAF": Decimal(8_000)})


async def _second_analyst(store: Store, team: Team) -> Actor:
    bob = await users.create(
        store, actor=team.actor(Role.ADMIN), username="bob", password=PASSWORD, role=Role.ANALYST
    )
    return Actor(user=bob, ip="10.0.0.2")


async def _actions(store: Store, target_id: str) -> list[str]:
    entries, _ = await store.audit_log.list_(target_id=target_id, limit=100)
    return [e.action for e in reversed(entries)]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
async def test_batch_then_request_then_four_eyes_decisions_all_audited(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    ana, sam = team.actor(Role.ANALYST), team.actor(Role.SENIOR_ANALYST)
    bob = await _second_analyst(store, team)
    await seed_clients(store, as_of=as_of)
    extra = [steady_history(f"c{i}", as_of=as_of) for i in range(3)]
    await store.transactions.insert_many([t for h in extra for t in h])

    seen: list[BatchProgress] = []
    profiles = await score_all_from_store(
        store,
        tenant="default",
        as_of=as_of,
        chunk_size=2,
        clients_per_read=3,
        progress=seen.append,
    )
    ids = sorted(p.client_id for p in profiles)
    assert ids == ["c0", "c1", "c2", "good", "inflated", "thin"]
    # Six clients read three at a time, two per Ray task: four tasks over the whole job.
    assert seen[-1].chunks_total == 4 and [s.chunks_done for s in seen] == [1, 2, 3, 4]
    assert seen[-1].clients_done == 6
    stored = await store.credit_profiles.get(tenant="default", client_id="good")
    assert stored is not None and stored.tier is CreditTier.B and stored.limit_minor == 20_000

    # The on-request path gives the nightly profile for the same instant.
    fresh, _ = await credit.rescore(store, tenant="default", client_id="good", as_of=as_of)
    assert fresh == stored

    small = await credit.submit_request(
        store,
        actor=ana,
        tenant="default",
        client_id="good",
        amount_minor=5_000,
        currency="xaf",
        policy=POLICY,
    )
    assert small.status is CreditRequestStatus.PENDING_REVIEW
    assert small.recommendation is CreditRecommendation.APPROVE
    assert small.tier_at_request is CreditTier.B and small.limit_at_request_minor == 20_000
    assert not small.inflation_flag
    assert any("reviewer takes the decision" in r for r in small.reasons)
    assert small.expires_at - small.submitted_at == POLICY.request_ttl
    assert await store.credit_requests.get(small.id) == small

    with pytest.raises(Forbidden, match="four-eyes"):
        await credit.decide_request(
            store, actor=ana, request_id=small.id, approve=True, note="mine", policy=POLICY
        )
    approved = await credit.decide_request(
        store, actor=bob, request_id=small.id, approve=True, note="salary covers it", policy=POLICY
    )
    assert approved.status is CreditRequestStatus.APPROVED and approved.decided_by == "bob"
    assert approved.decision_note == "salary covers it"

    large = await credit.submit_request(
        store,
        actor=ana,
        tenant="default",
        client_id="good",
        amount_minor=9_000,
        currency="XAF",
        policy=POLICY,
    )
    with pytest.raises(Forbidden, match="needs a senior analyst"):
        await credit.decide_request(
            store, actor=bob, request_id=large.id, approve=True, note="ok", policy=POLICY
        )
    pending = await store.credit_requests.get(large.id)
    assert pending is not None and pending.status is CreditRequestStatus.PENDING_REVIEW
    decided = await credit.decide_request(
        store, actor=sam, request_id=large.id, approve=True, note="checked payslips", policy=POLICY
    )
    assert decided.status is CreditRequestStatus.APPROVED and decided.decided_by == "sam"
    with pytest.raises(Conflict, match="already approved"):
        await credit.decide_request(
            store, actor=bob, request_id=large.id, approve=False, note="late", policy=POLICY
        )

    assert await _actions(store, small.id) == [
        "credit_request.submit",
        "credit_request.decide_refused",
        "credit_request.approve",
    ]
    assert await _actions(store, large.id) == [
        "credit_request.submit",
        "credit_request.decide_refused",
        "credit_request.approve",
    ]
    refusal, _ = await store.audit_log.list_(
        target_id=large.id, action="credit_request.decide_refused"
    )
    assert refusal[0].actor == "bob" and "senior" in refusal[0].details["reason"]
    assert await store.audit_log.verify() is None


async def test_analyst_may_reject_a_large_request_and_a_note_is_required(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    bob = await _second_analyst(store, team)
    await seed_clients(store, as_of=as_of)
    req = await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=50_000,
        currency="XAF",
        policy=POLICY,
    )
    assert req.recommendation is CreditRecommendation.REJECT
    assert any("exceeds the tier B limit" in r for r in req.reasons)
    with pytest.raises(BadRequest, match="note"):
        await credit.decide_request(store, actor=bob, request_id=req.id, approve=False, note=" ")
    rejected = await credit.decide_request(
        store, actor=bob, request_id=req.id, approve=False, note="above limit", policy=POLICY
    )
    assert rejected.status is CreditRequestStatus.REJECTED


async def test_inflation_and_thin_history_shape_the_recommendation(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    ana = team.actor(Role.ANALYST)
    await seed_clients(store, as_of=as_of)
    inflated = await credit.submit_request(
        store,
        actor=ana,
        tenant="default",
        client_id="inflated",
        amount_minor=500,
        currency="XAF",
    )
    assert inflated.inflation_flag
    assert inflated.recommendation is not CreditRecommendation.APPROVE
    assert any(r.startswith("possible score inflation") for r in inflated.reasons)
    thin = await credit.submit_request(
        store, actor=ana, tenant="default", client_id="thin", amount_minor=500, currency="XAF"
    )
    assert thin.recommendation is CreditRecommendation.REJECT
    assert thin.tier_at_request is CreditTier.E and thin.limit_at_request_minor == 0
    # Submitting also refreshes the stored profile.
    profile = await store.credit_profiles.get(tenant="default", client_id="thin")
    assert profile is not None and profile.tier is CreditTier.E


async def test_unknown_client_bad_input_and_roles_are_refused(store: Store) -> None:
    team = await seed_team(store)
    ana = team.actor(Role.ANALYST)
    await seed_clients(store, as_of=now_ms())
    audited = await store.audit_log.count()
    with pytest.raises(NotFound, match="client not found"):
        await credit.submit_request(
            store, actor=ana, tenant="default", client_id="ghost", amount_minor=1, currency="XAF"
        )
    with pytest.raises(NotFound):  # the client exists only in another tenant
        await credit.submit_request(
            store, actor=ana, tenant="other", client_id="good", amount_minor=1, currency="XAF"
        )
    with pytest.raises(BadRequest, match="positive"):
        await credit.submit_request(
            store, actor=ana, tenant="default", client_id="good", amount_minor=0, currency="XAF"
        )
    with pytest.raises(BadRequest, match="currency"):
        await credit.submit_request(
            store, actor=ana, tenant="default", client_id="good", amount_minor=1, currency="X1"
        )
    with pytest.raises(Forbidden):
        await credit.submit_request(
            store,
            actor=team.actor(Role.ML_ENGINEER),
            tenant="default",
            client_id="good",
            amount_minor=1,
            currency="XAF",
        )
    page = await credit.list_requests(store, actor=team.actor(Role.ML_ENGINEER))
    assert page.total == 0
    assert await store.audit_log.count() == audited  # nothing happened, nothing audited


async def test_expired_requests_cannot_be_decided(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    ana, sam = team.actor(Role.ANALYST), team.actor(Role.SENIOR_ANALYST)
    await seed_clients(store, as_of=as_of)
    past = as_of - timedelta(days=8)
    old = await credit.submit_request(
        store,
        actor=ana,
        tenant="default",
        client_id="good",
        amount_minor=1_000,
        currency="XAF",
        now=past,
    )
    other = await credit.submit_request(
        store,
        actor=ana,
        tenant="default",
        client_id="good",
        amount_minor=1_000,
        currency="XAF",
        now=past + timedelta(minutes=1),
    )
    live = await credit.submit_request(
        store, actor=ana, tenant="default", client_id="good", amount_minor=1_000, currency="XAF"
    )
    # Lazily, on read: deciding an overdue request expires it and says so.
    with pytest.raises(Conflict, match="expired"):
        await credit.decide_request(store, actor=sam, request_id=old.id, approve=True, note="ok")
    assert (await store.credit_requests.get(old.id)).status is CreditRequestStatus.EXPIRED  # type: ignore[union-attr]
    assert (await store.credit_requests.get(other.id)).status is CreditRequestStatus.EXPIRED  # type: ignore[union-attr]
    entries, _ = await store.audit_log.list_(action="credit_request.expire")
    assert entries[0].actor == "system" and set(entries[0].details["request_ids"]) == {
        old.id,
        other.id,
    }
    # The periodic job expires the live one once its time is up, and nothing twice.
    assert await credit.expire_requests(store, as_of) == 0
    assert await credit.expire_requests(store, live.expires_at + timedelta(seconds=1)) == 1
    page = await credit.list_requests(
        store, actor=ana, statuses=[CreditRequestStatus.PENDING_REVIEW]
    )
    assert page.total == 0


async def test_cluster_champion_is_attached_to_the_fresh_profile(
    store: Store, tmp_path: Path
) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    await seed_clients(store, as_of=as_of)
    without = await credit.refresh_profile(
        store, actor=team.actor(Role.ANALYST), tenant="default", client_id="good"
    )
    assert without.cluster_tier is None
    await register_cluster_champion(store, tmp_path, as_of=as_of)
    req = await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=1_000,
        currency="XAF",
    )
    profile = await store.credit_profiles.get(tenant="default", client_id="good")
    assert profile is not None and profile.cluster_tier is not None
    entries, _ = await store.audit_log.list_(target_id=req.id)
    assert entries[0].details["cluster_tier"] == profile.cluster_tier.value
    detail = await credit.get_profile(
        store, actor=team.actor(Role.ML_ENGINEER), tenant="default", client_id="good"
    )
    assert detail.tier_gap == abs(
        "ABCDE".index(profile.tier.value) - "ABCDE".index(profile.cluster_tier.value)
    )


async def test_profile_detail_shows_activity_components_and_requests(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    await seed_clients(store, as_of=as_of)
    # A rejected attempt is not activity.
    await store.transactions.insert_many(
        [
            make_tx(
                client_id="good",
                account_id="savings:good",
                type=TransactionType.DEPOSIT,
                status=TransactionStatus.REJECTED,
                amount_minor=10**9,
                occurred_at=as_of - timedelta(days=1),
            )
        ]
    )
    profile = await credit.refresh_profile(
        store, actor=team.actor(Role.ANALYST), tenant="default", client_id="good", now=as_of
    )
    assert set(profile.components) == {*COMPONENT_NAMES, ROUND_TRIP_COMPONENT}
    await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=2_000,
        currency="XAF",
    )
    detail = await credit.get_profile(
        store, actor=team.actor(Role.ANALYST), tenant="default", client_id="good"
    )
    assert len(detail.activity) == 26  # 180 days in weeks counted back from the profile time
    assert detail.activity[-1].end == detail.profile.computed_at
    end = detail.profile.computed_at
    in_window = [
        t
        for t in steady_history("good", as_of=as_of)
        if end - timedelta(days=180) <= t.occurred_at < end
    ]
    assert sum(b.count for b in detail.activity) == len(in_window)
    assert sum(b.inflow_minor for b in detail.activity) == sum(
        t.amount_minor for t in in_window if t.direction is Direction.IN
    )
    assert sum(b.outflow_minor for b in detail.activity) == sum(
        t.amount_minor for t in in_window if t.direction is Direction.OUT
    )
    assert [r.amount_minor for r in detail.requests] == [2_000]
    with pytest.raises(NotFound):
        await credit.get_profile(
            store, actor=team.actor(Role.ANALYST), tenant="default", client_id="ghost"
        )


async def test_analytics_counts_tiers_limits_rates_and_pending(store: Store) -> None:
    as_of = now_ms()
    team = await seed_team(store)
    ana, sam = team.actor(Role.ANALYST), team.actor(Role.SENIOR_ANALYST)
    await seed_clients(store, as_of=as_of)
    for cid in ("good", "thin", "inflated"):
        await credit.refresh_profile(store, actor=ana, tenant="default", client_id=cid)
    reqs = [
        await credit.submit_request(
            store, actor=ana, tenant="default", client_id="good", amount_minor=a, currency="XAF"
        )
        for a in (1_000, 2_000, 3_000, 4_000)
    ]
    await credit.decide_request(store, actor=sam, request_id=reqs[0].id, approve=True, note="ok")
    await credit.decide_request(store, actor=sam, request_id=reqs[1].id, approve=True, note="ok")
    await credit.decide_request(store, actor=sam, request_id=reqs[2].id, approve=False, note="no")
    data = await credit.analytics(
        store, actor=team.actor(Role.ML_ENGINEER), tenant="default", weeks=4
    )
    assert sum(data.tier_distribution.values()) == 3
    assert data.tier_distribution[CreditTier.B] == 1 and data.tier_distribution[CreditTier.E] == 1
    assert data.average_limits_minor["XAF"][CreditTier.B] == 20_000
    assert data.average_limits_minor["XAF"][CreditTier.E] == 0
    assert data.pending_count == 1
    assert len(data.approval_rates) == 4
    assert [(b.approved, b.decided) for b in data.approval_rates] == [(0, 0)] * 3 + [(2, 3)]
    assert data.approval_rates[-1].rate == pytest.approx(2 / 3)
    other = await credit.analytics(store, actor=ana, tenant="elsewhere", weeks=1)
    assert sum(other.tier_distribution.values()) == 0 and other.pending_count == 0


async def test_expiry_loop_expires_overdue_requests_until_cancelled(store: Store) -> None:
    team = await seed_team(store)
    await seed_clients(store, as_of=now_ms())
    overdue = await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=1_000,
        currency="XAF",
        now=now_ms() - timedelta(days=30),
    )
    loop = asyncio.create_task(credit.run_expiry(store, every=timedelta(milliseconds=50)))
    try:
        for _ in range(100):
            stored = await store.credit_requests.get(overdue.id)
            if stored is not None and stored.status is CreditRequestStatus.EXPIRED:
                break
            await asyncio.sleep(0.05)
        assert stored is not None and stored.status is CreditRequestStatus.EXPIRED
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert loop.cancelled()
