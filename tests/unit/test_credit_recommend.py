"""Credit request recommendation and score-inflation detection."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aml.credit.features import ClientInfo
from aml.credit.recommend import detect_score_inflation, recommend
from aml.credit.score import CreditConfig, apply_cluster, score_client
from aml.domain import CreditProfile, CreditRecommendation, CreditTier, Direction, Transaction
from aml.domain import TransactionType as T
from aml.errors import BadRequest
from tests.factories import make_tx

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)


def tx(days_ago: float, amount: int, **kw: Any) -> Transaction:
    kw.setdefault("client_id", "c1")
    kw.setdefault("type", T.DEPOSIT)
    kw.setdefault("direction", Direction.IN)
    return make_tx(occurred_at=AS_OF - timedelta(days=days_ago), amount_minor=amount, **kw)


def steady() -> list[Transaction]:
    out = [tx(d, 300_000) for d in (2, 32, 62, 92, 122, 152)]
    out += [tx(d, 5_000, type=T.WITHDRAWAL, direction=Direction.OUT) for d in range(1, 180, 2)]
    out.append(tx(170, 100_000, type=T.LOAN_DISBURSEMENT))
    out.append(tx(20, 100_000, type=T.LOAN_REPAYMENT, direction=Direction.OUT))
    return out


def burst() -> list[Transaction]:
    """Quiet month, then a rush of deposits in the last days before the request."""
    return [tx(25, 10_000), tx(20, 10_000)] + [tx(d, 200_000) for d in (1, 2, 3, 4)]


def score(txs: list[Transaction]) -> CreditProfile:
    info = ClientInfo(opened_at=AS_OF - timedelta(days=800))
    return score_client(txs, tenant="t", client_id="c1", as_of=AS_OF, info=info)


def advise(p: CreditProfile, amount: int, txs: list[Transaction] = ()) -> Any:  # type: ignore[assignment]
    return recommend(p, amount, currency="XAF", as_of=AS_OF, transactions=txs)


def with_score(p: CreditProfile, value: float, tier: CreditTier, limit: int) -> CreditProfile:
    return dataclasses.replace(p, score=value, tier=tier, limit_minor=limit)


def test_small_request_of_strong_client_is_recommended_for_approval() -> None:
    p = score(steady())
    assert p.tier is CreditTier.A
    r = advise(p, 20_000, steady())
    assert r.recommendation is CreditRecommendation.APPROVE
    assert not r.inflation.flagged
    assert r.reasons[-1] == "recommendation only: a reviewer takes the decision"


def test_over_limit_and_tier_e_are_rejected_and_mid_range_reviewed() -> None:
    p = score(steady())
    assert advise(p, 60_000).recommendation is CreditRecommendation.REJECT
    assert advise(p, 40_000).recommendation is CreditRecommendation.REVIEW_CAREFULLY
    weak = with_score(p, 0.2, CreditTier.E, 0)
    r = advise(weak, 100)
    assert r.recommendation is CreditRecommendation.REJECT
    c_tier = with_score(p, 0.55, CreditTier.C, 10_000)
    # Small amount but below tier B's score: a human looks at it.
    assert advise(c_tier, 1_000).recommendation is CreditRecommendation.REVIEW_CAREFULLY


def test_inflation_check_flags_burst_before_request() -> None:
    check = detect_score_inflation(burst(), client_id="c1", currency="XAF", as_of=AS_OF)
    assert check.flagged
    assert check.recent_inflow == 800_000 and check.lookback_inflow == 820_000
    calm = detect_score_inflation(steady(), client_id="c1", currency="XAF", as_of=AS_OF)
    # The monthly salary paid two days ago is the whole month's inflow, yet the usual amount.
    assert calm.recent_inflow == calm.lookback_inflow == 300_000
    assert not calm.flagged
    few = detect_score_inflation(burst()[2:], client_id="c1", currency="XAF", as_of=AS_OF)
    assert not few.flagged  # fewer than 5 transactions in the month: not judged


def test_inflation_lowers_score_and_blocks_plain_approval() -> None:
    p = score(steady())
    r = advise(p, 20_000, steady() + burst())
    assert r.inflation.flagged
    assert r.effective_score == pytest.approx(p.score - 0.15)
    assert r.recommendation is CreditRecommendation.REVIEW_CAREFULLY
    assert any("possible score inflation" in s for s in r.reasons)


def test_inflation_never_upgrades_a_reject_to_review() -> None:
    p = score(steady())
    over_limit = advise(p, 60_000, steady() + burst())
    assert over_limit.inflation.flagged
    assert over_limit.recommendation is CreditRecommendation.REJECT
    weak = with_score(p, 0.2, CreditTier.E, 0)
    assert advise(weak, 100, burst()).recommendation is CreditRecommendation.REJECT


def test_inflation_penalty_can_drop_the_tier_and_its_limit() -> None:
    p = with_score(score(steady()), 0.70, CreditTier.B, 20_000)
    r = advise(p, 15_000, steady() + burst())
    assert r.effective_tier is CreditTier.C and r.limit_minor == 10_000
    assert r.recommendation is CreditRecommendation.REJECT  # 15,000 is over tier C's limit


def test_cluster_disagreement_turns_approve_into_review() -> None:
    p = score(steady())
    far = apply_cluster(p, 2, CreditTier.D)
    r = advise(far, 20_000)
    assert r.recommendation is CreditRecommendation.REVIEW_CAREFULLY
    assert any("cluster suggests tier D" in s for s in r.reasons)
    near = apply_cluster(p, 0, CreditTier.B)
    assert advise(near, 20_000).recommendation is CreditRecommendation.APPROVE


def test_round_trip_pattern_turns_approve_into_review() -> None:
    p = score(steady())
    looped = dataclasses.replace(p, features={**p.features, "round_trip_score": 0.5})
    assert advise(looped, 20_000).recommendation is CreditRecommendation.REVIEW_CAREFULLY


def test_bad_requests_are_refused() -> None:
    p = score(steady())
    with pytest.raises(BadRequest):
        advise(p, 0)
    with pytest.raises(BadRequest, match="currency"):
        recommend(p, 100, currency="EUR", as_of=AS_OF)


def test_inflation_policy_is_configurable() -> None:
    p = score(steady())
    lenient = CreditConfig.model_validate({"inflation": {"inflow_multiplier": 10.0}})
    r = recommend(p, 20_000, currency="XAF", as_of=AS_OF, transactions=burst(), config=lenient)
    assert not r.inflation.flagged
    assert r.recommendation is CreditRecommendation.APPROVE
