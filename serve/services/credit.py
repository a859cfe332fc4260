"""Credit: profiles, on-request rescoring, credit requests decided by people, analytics.

Workflow: an analyst submits a request for a client; the client is rescored from the store at
that moment (the same ``score_client`` as the nightly batch, plus the promoted K-Means tier when
one is available), :func:`aml.credit.recommend.recommend` gives advice with reasons, and the
request waits in ``pending_review``. Nothing is ever approved by the system: a reviewer decides,
with a note, and

* never the user who submitted the request (four-eyes);
* approvals above the per-currency threshold of :class:`CreditWorkflowPolicy` need
  ``credit:approve_large`` (senior analysts);
* only a pending request can be decided; a request past ``expires_at`` is expired, lazily when it
  is read and by the periodic :func:`expire_requests`.

Every change (submission, decision, refusal, refresh, expiry) is written to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from aml.auth import Permission, can
from aml.credit.features import ClientInfo
from aml.credit.recommend import recommend
from aml.credit.score import CreditConfig, is_scored, score_client, tier_distance
from aml.domain import (
    AlertStatus,
    CreditProfile,
    CreditRequest,
    CreditRequestStatus,
    CreditTier,
    Direction,
    Transaction,
    TransactionStatus,
    ensure_utc,
    utcnow,
)
from aml.errors import BadRequest, Conflict, Forbidden, NotFound
from aml.money import format_money, to_minor
from serve.services import audit
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store
from training.credit_batch import ACCOUNT_AGE_HORIZON_DAYS

log = logging.getLogger(__name__)

MAX_NOTE = 4000
ACTIVITY_BUCKET_DAYS = 7
_PENDING = CreditRequestStatus.PENDING_REVIEW
_SKIPPED = (TransactionStatus.REJECTED, TransactionStatus.CORRECTION)
_READ_PAGE = 1_000


class CreditWorkflowPolicy(BaseModel):
    """Knobs of the request workflow (the scoring itself is configured by ``CreditConfig``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_ttl_hours: int = Field(default=7 * 24, ge=1, le=365 * 24)
    # Approvals above these amounts (major units, per currency) need ``credit:approve_large``.
    # A currency missing here always needs it: an unconfigured currency is no reason to relax.
    senior_approval_above: dict[str, Decimal] = Field(
        default_factory=lambda: {"XAF": Decimal(20_000)}
    )

    @property
    def request_ttl(self) -> timedelta:
        return timedelta(hours=self.request_ttl_hours)

    def senior_threshold_minor(self, currency: str) -> int | None:
        """Largest amount an analyst may approve, in minor units (None: every approval)."""
        limit = self.senior_approval_above.get(currency.upper())
        return None if limit is None else to_minor(limit, currency)

    def needs_senior(self, amount_minor: int, currency: str) -> bool:
        """Whether approving ``amount_minor`` needs ``credit:approve_large``."""
        threshold = self.senior_threshold_minor(currency)
        return threshold is None or amount_minor > threshold


DEFAULT_POLICY = CreditWorkflowPolicy()


class ClusterAnnotator(Protocol):
    """The promoted K-Means model as the workflow uses it."""

    def annotate(self, profile: CreditProfile) -> CreditProfile: ...


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """Money in and out of one client over ``[start, end)``, in the profile's currency."""

    start: datetime
    end: datetime
    inflow_minor: int
    outflow_minor: int
    count: int


@dataclass(frozen=True, slots=True)
class ProfileDetail:
    """A client's profile with what a reviewer needs next to it."""

    profile: CreditProfile
    activity: Sequence[ActivityBucket]
    requests: Sequence[CreditRequest]

    @property
    def tier_gap(self) -> int | None:
        """Tiers between the rule tier and the cluster tier (None without a cluster)."""
        if self.profile.cluster_tier is None:
            return None
        return tier_distance(self.profile.tier, self.profile.cluster_tier)


@dataclass(frozen=True, slots=True)
class ApprovalBucket:
    """Decisions taken in ``[start, end)``."""

    start: datetime
    end: datetime
    approved: int
    decided: int

    @property
    def rate(self) -> float:
        return self.approved / self.decided if self.decided else 0.0


@dataclass(frozen=True, slots=True)
class CreditAnalytics:
    tier_distribution: dict[CreditTier, int]
    # currency -> tier -> mean limit in minor units (tiers without profiles left out)
    average_limits_minor: dict[str, dict[CreditTier, float]]
    approval_rates: Sequence[ApprovalBucket]
    pending_count: int
    needs_review_count: int


def _ms(value: datetime) -> datetime:
    """``value`` at millisecond precision: what MongoDB keeps, so a stored request equals the
    returned one on every backend."""
    value = ensure_utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


async def cluster_model(store: Store) -> ClusterAnnotator | None:
    """The champion ``credit_kmeans`` model when one is published and its artifact is readable."""
    from training.credit_kmeans import load_champion_clusters

    return await load_champion_clusters(store)


async def _client_transactions(
    store: Store, *, tenant: str, client_id: str, since: datetime, until: datetime
) -> list[Transaction]:
    out: list[Transaction] = []
    async for chunk in store.transactions.iter_client_chunks(
        tenant, since=since, until=until, clients_per_chunk=1, client_ids=[client_id]
    ):
        out.extend(chunk.get(client_id, ()))
    return out


async def _fraud_alert_dates(
    store: Store, *, tenant: str, client_id: str, accounts: set[str], until: datetime
) -> tuple[datetime, ...]:
    """Creation times of the client's confirmed-fraud alerts (as the nightly batch counts)."""
    dates: list[datetime] = []
    for account in sorted(accounts):
        alerts, _ = await store.alerts.list_(
            tenant=tenant,
            statuses=[AlertStatus.CLOSED_FRAUD],
            customer_key=f"{tenant}|{account}",
            created_before=until,
            limit=_READ_PAGE,
        )
        dates.extend(a.created_at for a in alerts if a.client_id == client_id)
    return tuple(sorted(set(dates)))


async def _client_exists(store: Store, *, tenant: str, client_id: str) -> bool:
    if await store.credit_profiles.get(tenant=tenant, client_id=client_id) is not None:
        return True
    _, total = await store.transactions.search(tenant=tenant, client_id=client_id, limit=1)
    return total > 0


async def rescore(
    store: Store,
    *,
    tenant: str,
    client_id: str,
    as_of: datetime,
    config: CreditConfig | None = None,
    currency: str | None = None,
) -> tuple[CreditProfile, list[Transaction]]:
    """Score one client from the store at ``as_of``, exactly as the nightly batch would.

    Reads the same horizon as the batch (``max(window, 365 days)``) and the client's
    confirmed-fraud alerts, and attaches the champion cluster tier when there is one.

    Returns:
        The fresh profile (not stored) and the transactions it was computed from.

    Raises:
        NotFound: the client has neither transactions nor a profile in ``tenant``.
    """
    config = config or CreditConfig()
    as_of = ensure_utc(as_of)
    horizon = max(config.window_days, ACCOUNT_AGE_HORIZON_DAYS)
    txs = await _client_transactions(
        store,
        tenant=tenant,
        client_id=client_id,
        since=as_of - timedelta(days=horizon),
        until=as_of,
    )
    if not txs and not await _client_exists(store, tenant=tenant, client_id=client_id):
        raise NotFound("client not found", tenant=tenant, client_id=client_id)
    dates = await _fraud_alert_dates(
        store,
        tenant=tenant,
        client_id=client_id,
        accounts={t.account_id for t in txs},
        until=as_of,
    )
    profile = score_client(
        txs,
        tenant=tenant,
        client_id=client_id,
        as_of=as_of,
        config=config,
        info=ClientInfo(fraud_alert_dates=dates) if dates else None,
        currency=currency,
    )
    model = await cluster_model(store)
    if model is not None and is_scored(profile):
        profile = model.annotate(profile)
    return profile, txs


def _clean_id(value: str, name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise BadRequest(f"{name} is required", field=name)
    return text


def _currency(value: str) -> str:
    code = (value or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise BadRequest("currency must be a 3-letter ISO 4217 code", field="currency")
    return code


# -- profiles ---------------------------------------------------------------------------------


async def list_profiles(
    store: Store,
    *,
    actor: Actor,
    tenant: str | None = None,
    tiers: Sequence[CreditTier] | None = None,
    needs_review: bool | None = None,
    skip: int = 0,
    limit: int = 50,
) -> Page[CreditProfile]:
    """Profiles, best score first, optionally only some tiers or only those needing review."""
    actor.require(Permission.CREDIT_READ)
    check_window(skip, limit)
    items, total = await store.credit_profiles.list_(
        tenant=tenant,
        tiers=list(tiers) if tiers else None,
        needs_review=needs_review,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


def activity_buckets(
    transactions: Sequence[Transaction],
    *,
    currency: str,
    end: datetime,
    days: int,
    bucket_days: int = ACTIVITY_BUCKET_DAYS,
) -> list[ActivityBucket]:
    """Inflow, outflow and count per ``bucket_days`` over the ``days`` before ``end``, oldest
    first (attempts and corrections left out, other currencies too)."""
    end = ensure_utc(end)
    start = end - timedelta(days=days)
    n = -(-days // bucket_days)
    inflow, outflow, count = [0] * n, [0] * n, [0] * n
    for tx in transactions:
        if tx.status in _SKIPPED or tx.currency != currency or not start <= tx.occurred_at < end:
            continue
        # Buckets are counted back from ``end`` so that the newest one is always whole.
        back = int((end - tx.occurred_at) / timedelta(days=bucket_days))
        i = n - 1 - back
        count[i] += 1
        if tx.direction is Direction.IN:
            inflow[i] += tx.amount_minor
        elif tx.direction is Direction.OUT:
            outflow[i] += tx.amount_minor
    return [
        ActivityBucket(
            start=max(start, end - timedelta(days=bucket_days * (n - i))),
            end=end - timedelta(days=bucket_days * (n - 1 - i)),
            inflow_minor=inflow[i],
            outflow_minor=outflow[i],
            count=count[i],
        )
        for i in range(n)
    ]


async def get_profile(store: Store, *, actor: Actor, tenant: str, client_id: str) -> ProfileDetail:
    """A client's stored profile, its activity over the scoring window (ending at the time it
    was computed, so the chart shows what the score saw) and its latest requests.

    Raises:
        NotFound: no profile for the client.
    """
    actor.require(Permission.CREDIT_READ)
    profile = await store.credit_profiles.get_or_raise(tenant=tenant, client_id=client_id)
    end = profile.computed_at
    txs = await _client_transactions(
        store,
        tenant=tenant,
        client_id=client_id,
        since=end - timedelta(days=profile.window_days),
        until=end,
    )
    requests, _ = await store.credit_requests.list_(tenant=tenant, client_id=client_id, limit=20)
    return ProfileDetail(
        profile=profile,
        activity=activity_buckets(
            txs, currency=profile.currency, end=end, days=profile.window_days
        ),
        requests=requests,
    )


async def refresh_profile(
    store: Store,
    *,
    actor: Actor,
    tenant: str,
    client_id: str,
    config: CreditConfig | None = None,
    now: datetime | None = None,
) -> CreditProfile:
    """Rescore a client now and store the profile (in the stored profile's currency, else the
    client's dominant one). Audited.

    Raises:
        NotFound: unknown client.
    """
    actor.require(Permission.CREDIT_REQUEST)
    tenant = _clean_id(tenant, "tenant")
    client_id = _clean_id(client_id, "client_id")
    now = _ms(now or utcnow())
    previous = await store.credit_profiles.get(tenant=tenant, client_id=client_id)
    profile, _ = await rescore(
        store,
        tenant=tenant,
        client_id=client_id,
        as_of=now,
        config=config,
        currency=previous.currency if previous else None,
    )
    await store.credit_profiles.upsert(profile)
    await audit.record(
        store,
        actor=actor,
        action="credit_profile.refresh",
        target_type="credit_profile",
        target_id=f"{tenant}|{client_id}",
        details={
            "score": profile.score,
            "tier": profile.tier.value,
            "previous_tier": previous.tier.value if previous else None,
            "cluster_tier": profile.cluster_tier.value if profile.cluster_tier else None,
        },
    )
    return profile


# -- requests ---------------------------------------------------------------------------------


async def submit_request(
    store: Store,
    *,
    actor: Actor,
    tenant: str,
    client_id: str,
    amount_minor: int,
    currency: str,
    config: CreditConfig | None = None,
    policy: CreditWorkflowPolicy | None = None,
    now: datetime | None = None,
) -> CreditRequest:
    """Rescore the client, get a recommendation and queue the request for review.

    The stored snapshot (score, tier, limit) is the one the recommendation was made on: the
    fresh profile, less the inflation penalty when a burst of deposits was flagged. The fresh
    profile also replaces the client's stored one.

    Raises:
        BadRequest: missing client, non-positive amount, malformed currency.
        NotFound: the client has no transactions and no profile in ``tenant``.
    """
    actor.require(Permission.CREDIT_REQUEST)
    tenant = _clean_id(tenant, "tenant")
    client_id = _clean_id(client_id, "client_id")
    currency = _currency(currency)
    if amount_minor <= 0:
        raise BadRequest("the requested amount must be positive", field="amount")
    policy = policy or DEFAULT_POLICY
    now = _ms(now or utcnow())
    profile, txs = await rescore(
        store, tenant=tenant, client_id=client_id, as_of=now, config=config, currency=currency
    )
    advice = recommend(
        profile, amount_minor, currency=currency, as_of=now, transactions=txs, config=config
    )
    await store.credit_profiles.upsert(profile)
    request = await store.credit_requests.create(
        CreditRequest(
            id=uuid.uuid4().hex,
            tenant=tenant,
            client_id=client_id,
            amount_minor=amount_minor,
            currency=currency,
            status=_PENDING,
            recommendation=advice.recommendation,
            reasons=advice.reasons,
            score_at_request=advice.effective_score,
            tier_at_request=advice.effective_tier,
            limit_at_request_minor=advice.limit_minor,
            inflation_flag=advice.inflation.flagged,
            submitted_by=actor.username,
            submitted_at=now,
            expires_at=now + policy.request_ttl,
        )
    )
    await audit.record(
        store,
        actor=actor,
        action="credit_request.submit",
        target_type="credit_request",
        target_id=request.id,
        details={
            "tenant": tenant,
            "client_id": client_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "recommendation": advice.recommendation.value,
            "score": advice.effective_score,
            "tier": advice.effective_tier.value,
            "limit_minor": advice.limit_minor,
            "inflation_flag": advice.inflation.flagged,
            "cluster_tier": profile.cluster_tier.value if profile.cluster_tier else None,
        },
    )
    return request


async def expire_requests(store: Store, now: datetime | None = None) -> int:
    """Periodic job (also run before every read): expire pending requests past ``expires_at``.

    Returns:
        How many requests were expired; they are named in one system audit entry.
    """
    now = ensure_utc(now or utcnow())
    overdue: list[str] = []
    skip = 0
    while True:
        # Pending requests are the short head of the list (pending first), so this stays small.
        page, total = await store.credit_requests.list_(
            statuses=[_PENDING], skip=skip, limit=_READ_PAGE
        )
        overdue.extend(r.id for r in page if r.expires_at < now)
        skip += len(page)
        if not page or skip >= total:
            break
    if not overdue:
        return 0
    expired = await store.credit_requests.expire(now=now)
    if expired:
        await audit.record(
            store,
            actor=None,
            action="credit_request.expire",
            target_type="credit_request",
            target_id=overdue[0] if len(overdue) == 1 else None,
            details={"count": expired, "request_ids": overdue},
        )
    return expired


async def run_expiry(store: Store, *, every: timedelta = timedelta(minutes=5)) -> None:
    """Run :func:`expire_requests` every ``every`` until cancelled (started by the dashboard);
    a failed round, e.g. while the store is down, is logged and the loop goes on."""
    while True:
        try:
            await expire_requests(store)
        except Exception:  # the loop must outlive a store outage
            log.exception("expiring credit requests failed")
        await asyncio.sleep(every.total_seconds())


async def get_request(
    store: Store, *, actor: Actor, request_id: str, now: datetime | None = None
) -> CreditRequest:
    """One request (expired first if its time is up).

    Raises:
        NotFound: no such request.
    """
    actor.require(Permission.CREDIT_READ)
    request = await store.credit_requests.get_or_raise(request_id)
    if request.status is _PENDING and request.expires_at < ensure_utc(now or utcnow()):
        await expire_requests(store, now)
        request = await store.credit_requests.get_or_raise(request_id)
    return request


async def list_requests(
    store: Store,
    *,
    actor: Actor,
    tenant: str | None = None,
    client_id: str | None = None,
    statuses: Sequence[CreditRequestStatus] | None = None,
    skip: int = 0,
    limit: int = 50,
    now: datetime | None = None,
) -> Page[CreditRequest]:
    """Requests, pending first then newest first (overdue ones expired before listing)."""
    actor.require(Permission.CREDIT_READ)
    check_window(skip, limit)
    await expire_requests(store, now)
    items, total = await store.credit_requests.list_(
        tenant=tenant,
        client_id=client_id or None,
        statuses=list(statuses) if statuses else None,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


async def _refuse(actor: Actor, store: Store, request: CreditRequest, reason: str) -> None:
    await audit.record(
        store,
        actor=actor,
        action="credit_request.decide_refused",
        target_type="credit_request",
        target_id=request.id,
        details={"reason": reason, "amount_minor": request.amount_minor},
    )


async def decide_request(
    store: Store,
    *,
    actor: Actor,
    request_id: str,
    approve: bool,
    note: str,
    policy: CreditWorkflowPolicy | None = None,
    now: datetime | None = None,
) -> CreditRequest:
    """Approve or reject a pending request, with a note.

    Raises:
        BadRequest: no note.
        NotFound: no such request.
        Conflict: the request is expired or already decided.
        Forbidden: the actor submitted the request (four-eyes), or the approval is above the
            currency's threshold and the actor lacks ``credit:approve_large``.
    """
    actor.require(Permission.CREDIT_DECIDE)
    text = (note or "").strip()
    if not text:
        raise BadRequest("a decision needs a note saying why", field="note")
    if len(text) > MAX_NOTE:
        raise BadRequest(f"note is longer than {MAX_NOTE} characters", field="note")
    policy = policy or DEFAULT_POLICY
    now = _ms(now or utcnow())
    request = await get_request(store, actor=actor, request_id=request_id, now=now)
    if request.status is CreditRequestStatus.EXPIRED:
        raise Conflict(
            "credit request expired without a decision; submit a new one",
            request_id=request_id,
            expired_at=request.expires_at.isoformat(),
        )
    if request.status is not _PENDING:
        raise Conflict(
            f"credit request was already {request.status.value}",
            request_id=request_id,
            decided_by=request.decided_by,
        )
    if request.submitted_by == actor.username:
        await _refuse(actor, store, request, "submitter cannot decide")
        raise Forbidden(
            "four-eyes: you submitted this request, so another reviewer must decide it",
            request_id=request_id,
        )
    if approve and policy.needs_senior(request.amount_minor, request.currency):
        if not can(actor.role, Permission.CREDIT_APPROVE_LARGE):
            await _refuse(actor, store, request, "amount needs a senior analyst")
            threshold = policy.senior_threshold_minor(request.currency)
            above = (
                f"above {format_money(threshold, request.currency)}"
                if threshold is not None
                else f"in {request.currency}"
            )
            raise Forbidden(
                f"approving {format_money(request.amount_minor, request.currency)} needs a "
                f"senior analyst (approvals {above})",
                request_id=request_id,
                permission=Permission.CREDIT_APPROVE_LARGE.value,
            )
    status = CreditRequestStatus.APPROVED if approve else CreditRequestStatus.REJECTED
    decided = await store.credit_requests.decide(
        request_id, status=status, by=actor.username, at=now, note=text
    )
    await audit.record(
        store,
        actor=actor,
        action="credit_request.approve" if approve else "credit_request.reject",
        target_type="credit_request",
        target_id=request_id,
        details={
            "note": text,
            "submitted_by": request.submitted_by,
            "recommendation": request.recommendation.value,
            "amount_minor": request.amount_minor,
            "currency": request.currency,
            "client_id": request.client_id,
        },
    )
    return decided


# -- analytics --------------------------------------------------------------------------------


async def _average_limits(store: Store, tenant: str | None) -> dict[str, dict[CreditTier, float]]:
    sums: dict[str, dict[CreditTier, list[int]]] = {}
    skip = 0
    while True:
        page, total = await store.credit_profiles.list_(tenant=tenant, skip=skip, limit=_READ_PAGE)
        for p in page:
            acc = sums.setdefault(p.currency, {}).setdefault(p.tier, [0, 0])
            acc[0] += p.limit_minor
            acc[1] += 1
        skip += len(page)
        if not page or skip >= total:
            break
    return {
        cur: {t: tiers[t][0] / tiers[t][1] for t in CreditTier if t in tiers}
        for cur, tiers in sorted(sums.items())
    }


async def approval_rates(
    store: Store, *, tenant: str | None, now: datetime, buckets: int, bucket: timedelta
) -> list[ApprovalBucket]:
    """Approved and decided requests per period, oldest first, ending at ``now``."""
    now = ensure_utc(now)
    edges = [now - bucket * (buckets - i) for i in range(buckets)] + [now]
    # The store counts decisions since a date; a period is the difference of two such counts.
    cumulative = [await store.credit_requests.approval_rate(since=e, tenant=tenant) for e in edges]
    return [
        ApprovalBucket(
            start=edges[i],
            end=edges[i + 1],
            approved=cumulative[i][0] - cumulative[i + 1][0],
            decided=cumulative[i][1] - cumulative[i + 1][1],
        )
        for i in range(buckets)
    ]


async def analytics(
    store: Store,
    *,
    actor: Actor,
    tenant: str | None = None,
    now: datetime | None = None,
    weeks: int = 12,
) -> CreditAnalytics:
    """Tier distribution, mean limit per tier and currency, weekly approval rates, the number of
    pending requests and of profiles flagged for review."""
    actor.require(Permission.CREDIT_READ)
    if not 1 <= weeks <= 104:
        raise BadRequest("weeks must be between 1 and 104", field="weeks")
    now = ensure_utc(now or utcnow())
    await expire_requests(store, now)
    _, pending = await store.credit_requests.list_(tenant=tenant, statuses=[_PENDING], limit=1)
    _, review = await store.credit_profiles.list_(tenant=tenant, needs_review=True, limit=1)
    return CreditAnalytics(
        tier_distribution=await store.credit_profiles.tier_distribution(tenant=tenant),
        average_limits_minor=await _average_limits(store, tenant),
        approval_rates=await approval_rates(
            store, tenant=tenant, now=now, buckets=weeks, bucket=timedelta(days=7)
        ),
        pending_count=pending,
        needs_review_count=review,
    )
