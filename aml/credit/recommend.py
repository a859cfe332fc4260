"""Recommendation on a credit request: approve, review carefully or reject, with reasons.

The output is advice to a human reviewer; nothing here grants credit. Fixes over the
predecessor: a score-inflation flag lowers the score and can only make the advice stricter (it
never turns a reject into a review), and a clustering opinion more than one tier away from the
rule tier, or a round-trip pattern, rules out a plain approve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aml.credit.features import KIND_INFLOW, KIND_TRANSFER_IN, classify
from aml.credit.score import CreditConfig, InflationPolicy, tier_distance
from aml.domain import CreditProfile, CreditRecommendation, CreditTier, Transaction, ensure_utc
from aml.errors import BadRequest
from aml.money import format_money

_STRICTNESS = {
    CreditRecommendation.APPROVE: 0,
    CreditRecommendation.REVIEW_CAREFULLY: 1,
    CreditRecommendation.REJECT: 2,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class InflationCheck:
    """Outcome of the score-inflation check over the days before a request."""

    flagged: bool
    recent_inflow: float  # major units, last ``burst_days``
    lookback_inflow: float  # major units, last ``lookback_days``
    transactions: int  # in the lookback
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """Advice on one request. ``effective_*`` include the inflation penalty."""

    recommendation: CreditRecommendation
    reasons: tuple[str, ...]
    effective_score: float
    effective_tier: CreditTier
    limit_minor: int
    inflation: InflationCheck


def detect_score_inflation(
    transactions: Sequence[Transaction],
    *,
    client_id: str,
    currency: str,
    as_of: datetime,
    policy: InflationPolicy | None = None,
) -> InflationCheck:
    """Flag a burst of inflow just before ``as_of``.

    Flags when the inflow of the last ``burst_days`` exceeds ``inflow_multiplier`` times the
    average inflow of a ``burst_days`` period over the last ``lookback_days`` (with the defaults:
    more than about 70 % of the month's inflow arrived in its last week) **and** exceeds
    ``baseline_multiplier`` times the client's average monthly inflow before the burst (so a
    regular monthly salary paid in the last week is not a burst). Needs at least
    ``min_transactions`` transactions in the lookback.

    Args:
        transactions: the client's transactions (any accounts).
        client_id: the client.
        currency: only transactions in this currency count.
        as_of: time of the request.
        policy: thresholds (defaults when omitted).

    Returns:
        The check, with the amounts that decided it.
    """
    policy = policy or InflationPolicy()
    as_of = ensure_utc(as_of)
    start = as_of - timedelta(days=policy.lookback_days)
    burst_start = as_of - timedelta(days=policy.burst_days)
    baseline_start = as_of - timedelta(days=policy.baseline_days)
    own = frozenset(t.account_id for t in transactions if t.client_id in (None, client_id))
    count, total, recent, before = 0, 0.0, 0.0, 0.0
    first: datetime | None = None
    for tx in transactions:
        if not (baseline_start <= tx.occurred_at < as_of) or tx.currency != currency:
            continue
        if tx.client_id is not None and tx.client_id != client_id:
            continue
        kind = classify(tx, own, client_id)
        if kind is None:
            continue
        first = tx.occurred_at if first is None else min(first, tx.occurred_at)
        inflow = tx.amount if kind in (KIND_INFLOW, KIND_TRANSFER_IN) else 0.0
        if tx.occurred_at < burst_start:
            before += inflow
        else:
            recent += inflow
        if tx.occurred_at >= start:
            count += 1
            total += inflow
    periods = policy.lookback_days / policy.burst_days
    share_rule = recent > policy.inflow_multiplier * total / periods
    # The client's usual monthly inflow before the burst (at least one month of span, so a new
    # client's first weeks are not read as a tiny baseline).
    span_days = float(policy.baseline_days - policy.burst_days)
    if first is not None:
        span_days = min(span_days, (burst_start - first).total_seconds() / 86_400.0)
    monthly = before / (max(span_days, 30.0) / 30.0)
    baseline_rule = recent > policy.baseline_multiplier * monthly
    flagged = count >= policy.min_transactions and total > 0.0 and share_rule and baseline_rule
    reason = None
    if flagged:
        reason = (
            f"possible score inflation: {recent:,.0f} {currency} inflow in the last "
            f"{policy.burst_days} days is {recent / total:.0%} of the last "
            f"{policy.lookback_days} days' {total:,.0f} and {recent / max(monthly, 1e-9):.1f}x "
            f"the usual monthly inflow; score lowered by {policy.score_penalty:.2f}"
        )
    return InflationCheck(
        flagged=flagged,
        recent_inflow=recent,
        lookback_inflow=total,
        transactions=count,
        reason=reason,
    )


def _stricter(a: CreditRecommendation, b: CreditRecommendation) -> CreditRecommendation:
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


def recommend(
    profile: CreditProfile,
    requested_minor: int,
    *,
    currency: str,
    as_of: datetime,
    transactions: Sequence[Transaction] = (),
    config: CreditConfig | None = None,
) -> Recommendation:
    """Advise on a request for ``requested_minor`` against a freshly computed ``profile``.

    Rules, on the effective score (the profile score less the inflation penalty when flagged):
    reject when the tier is E or the amount exceeds the tier limit; approve when the amount is at
    most ``approve_fraction`` of the limit and the score reaches tier B; otherwise review
    carefully. An inflation flag, a round-trip pattern or a clustering opinion more than one tier
    away turn an approve into a careful review and never soften a reject.

    Args:
        profile: the client's profile at the request time.
        requested_minor: requested amount in minor units (> 0).
        currency: currency of the request (must be the profile's).
        as_of: time of the request.
        transactions: the client's recent transactions, for the inflation check.
        config: scoring configuration (defaults when omitted).

    Returns:
        The recommendation with its reasons; a reviewer makes the decision.

    Raises:
        BadRequest: non-positive amount or a currency other than the profile's.
    """
    config = config or CreditConfig()
    if requested_minor <= 0:
        raise BadRequest("requested amount must be positive", requested_minor=requested_minor)
    if currency.upper() != profile.currency.upper():
        raise BadRequest(
            "request currency differs from the credit profile's",
            currency=currency,
            profile_currency=profile.currency,
        )
    check = detect_score_inflation(
        transactions,
        client_id=profile.client_id,
        currency=profile.currency,
        as_of=as_of,
        policy=config.inflation,
    )
    reasons: list[str] = []
    policy = config.policy(profile.currency)
    score = profile.score
    tier = profile.tier
    limit = profile.limit_minor
    if check.flagged and check.reason:
        reasons.append(check.reason)
        score = max(0.0, score - config.inflation.score_penalty)
        if policy is not None and tier is not CreditTier.E:
            tier = policy.tier_for(score)
            limit = policy.limit_minor(tier, profile.currency) if tier is not CreditTier.E else 0

    amount = format_money(requested_minor, profile.currency)
    cap = format_money(limit, profile.currency)
    if policy is None or tier is CreditTier.E or limit <= 0:
        rec = CreditRecommendation.REJECT
        reasons.append(f"tier {tier.value}: no credit available (score {score:.2f})")
    elif requested_minor > limit:
        rec = CreditRecommendation.REJECT
        reasons.append(f"requested {amount} exceeds the tier {tier.value} limit of {cap}")
    elif requested_minor <= config.approve_fraction * limit and score >= policy.min_score(
        CreditTier.B
    ):
        rec = CreditRecommendation.APPROVE
        reasons.append(
            f"requested {amount} is within {config.approve_fraction:.0%} of the tier "
            f"{tier.value} limit of {cap} and the score {score:.2f} reaches tier B"
        )
    else:
        rec = CreditRecommendation.REVIEW_CAREFULLY
        reasons.append(f"requested {amount} is within the tier {tier.value} limit of {cap}")

    if check.flagged:
        rec = _stricter(rec, CreditRecommendation.REVIEW_CAREFULLY)
    rt = profile.features.get("round_trip_score") or 0.0
    if rt >= config.round_trip_flag:
        rec = _stricter(rec, CreditRecommendation.REVIEW_CAREFULLY)
        reasons.append(f"round-trip pattern on {rt:.0%} of inflow: review carefully")
    if profile.cluster_tier is not None:
        gap = tier_distance(profile.cluster_tier, profile.tier)
        if gap > 1 or profile.needs_review:
            rec = _stricter(rec, CreditRecommendation.REVIEW_CAREFULLY)
            reasons.append(
                f"behaviour cluster suggests tier {profile.cluster_tier.value} against rule "
                f"tier {profile.tier.value}: review carefully"
            )
    reasons.append("recommendation only: a reviewer takes the decision")
    return Recommendation(
        recommendation=rec,
        reasons=tuple(reasons),
        effective_score=score,
        effective_tier=tier,
        limit_minor=limit,
        inflation=check,
    )
