"""Credit score, tiers, limits and profile reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aml.credit.features import ClientInfo
from aml.credit.score import (
    COMPONENT_NAMES,
    ROUND_TRIP_COMPONENT,
    CreditConfig,
    CreditWeights,
    TierPolicy,
    apply_cluster,
    score_client,
)
from aml.domain import CreditTier, Direction, Transaction, TransactionType
from aml.errors import ConfigError
from tests.factories import make_tx

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
OLD = ClientInfo(opened_at=AS_OF - timedelta(days=800))


def tx(days_ago: float, amount: int, **kw: Any) -> Transaction:
    kw.setdefault("client_id", "c1")
    kw.setdefault("type", TransactionType.DEPOSIT)
    kw.setdefault("direction", Direction.IN)
    return make_tx(occurred_at=AS_OF - timedelta(days=days_ago), amount_minor=amount, **kw)


def saver(currency: str = "XAF", scale: int = 1) -> list[Transaction]:
    """Regular monthly income, frequent small spending, a loan repaid in full."""
    out = [tx(d, 300_000 * scale, currency=currency) for d in (2, 32, 62, 92, 122, 152)]
    out += [
        tx(
            d,
            5_000 * scale,
            currency=currency,
            type=TransactionType.WITHDRAWAL,
            direction=Direction.OUT,
        )
        for d in range(1, 180, 2)
    ]
    out.append(tx(170, 100_000 * scale, currency=currency, type=TransactionType.LOAN_DISBURSEMENT))
    out.append(
        tx(
            20,
            100_000 * scale,
            currency=currency,
            type=TransactionType.LOAN_REPAYMENT,
            direction=Direction.OUT,
        )
    )
    return out


def profile(txs: list[Transaction], config: CreditConfig | None = None, **kw: Any) -> Any:
    kw.setdefault("info", OLD)
    return score_client(txs, tenant="t", client_id="c1", as_of=AS_OF, config=config, **kw)


def test_weights_must_sum_to_one_and_be_non_negative() -> None:
    CreditWeights()  # defaults are valid
    with pytest.raises(ValidationError, match="sum to 1"):
        CreditWeights(net_flow=0.25)
    with pytest.raises(ValidationError):
        CreditWeights(net_flow=-0.1, deposit_consistency=0.5)
    ok = CreditWeights(deposit_consistency=0.2 + 1e-10)
    assert ok.deposit_consistency > 0.2


def test_tier_policy_rejects_unordered_cutoffs_and_limits() -> None:
    with pytest.raises(ValidationError, match="cut-offs"):
        TierPolicy(min_score_b=0.85)
    with pytest.raises(ValidationError, match="limits"):
        TierPolicy(limit_e=Decimal(5_000))


def test_regular_saver_gets_tier_a_and_its_limit() -> None:
    p = profile(saver())
    assert p.tier is CreditTier.A
    assert p.score >= 0.80
    assert p.limit_minor == 50_000
    assert p.currency == "XAF"
    assert set(COMPONENT_NAMES) <= set(p.components)
    assert p.components["repayment_rate"] == 1.0
    assert p.features["loan_repayment_rate"] == 1.0
    assert p.computed_at == AS_OF
    assert any("tier A" in r for r in p.reasons)


def test_score_is_weighted_sum_of_components() -> None:
    p = profile(saver()[:40])
    w = CreditWeights()
    expected = sum(p.components[n] * getattr(w, n) for n in COMPONENT_NAMES)
    expected += p.components[ROUND_TRIP_COMPONENT]
    assert p.score == pytest.approx(max(0.0, min(1.0, expected)))


def test_fewer_than_min_transactions_is_tier_e_with_reason() -> None:
    p = profile(saver()[:4])
    assert p.tier is CreditTier.E
    assert p.limit_minor == 0
    assert p.score == 0.0
    assert any("insufficient history: 4 transactions" in r for r in p.reasons)
    relaxed = profile(saver()[:4], CreditConfig(min_transactions=3))
    assert relaxed.score > 0.0


def test_unknown_repayment_uses_documented_neutral_value() -> None:
    no_loan = [t for t in saver() if "loan" not in t.type.value]
    p = profile(no_loan)
    assert p.features["loan_repayment_rate"] is None
    assert p.components["repayment_rate"] == 0.5
    assert any("repayment rate unknown" in r for r in p.reasons)
    harsh = profile(no_loan, CreditConfig(repayment_unknown_component=0.0))
    assert harsh.score == pytest.approx(p.score - 0.5 * 0.15)


def test_round_trips_lower_the_score_and_are_reported() -> None:
    base = saver()
    looped = [*base]
    for d in (10, 40, 70):
        looped.append(tx(d, 400_000, counterparty_account_id="savings:X"))
        looped.append(
            tx(
                d - 0.5,
                400_000,
                type=TransactionType.TRANSFER,
                direction=Direction.OUT,
                counterparty_account_id="savings:X",
            )
        )
    clean, dirty = profile(base), profile(looped)
    assert dirty.features["round_trip_score"] == pytest.approx(1_200_000 / 3_000_000)
    assert dirty.components[ROUND_TRIP_COMPONENT] == pytest.approx(-0.25 * 0.4)
    assert dirty.score < clean.score - 0.09
    assert any("round-trip pattern" in r for r in dirty.reasons)


def test_confirmed_fraud_lowers_score() -> None:
    recent = ClientInfo(opened_at=OLD.opened_at, fraud_alert_dates=[AS_OF - timedelta(days=30)])
    clean, flagged = profile(saver()), profile(saver(), info=recent)
    assert flagged.components["fraud_history"] == pytest.approx(0.8 * 30 / 365)
    assert flagged.score < clean.score
    assert any("1 confirmed fraud alert" in r for r in flagged.reasons)


def test_tiers_limits_and_net_flow_scale_per_currency() -> None:
    eur = TierPolicy(
        net_flow_scale=Decimal(100),
        limit_a=Decimal("750.50"),
        limit_b=Decimal(300),
        limit_c=Decimal(150),
        limit_d=Decimal(20),
    )
    config = CreditConfig(tiers={"XAF": TierPolicy(), "EUR": eur})
    p = profile(saver("EUR"), config)
    assert p.currency == "EUR"
    assert p.tier is CreditTier.A
    assert p.limit_minor == 75_050  # cents
    usd = profile(saver("USD"), config)
    assert usd.tier is CreditTier.E and usd.limit_minor == 0
    assert any("no tier table configured for currency USD" in r for r in usd.reasons)


def test_cluster_more_than_one_tier_away_flags_review() -> None:
    p = profile(saver())
    near = apply_cluster(p, 3, CreditTier.B)
    assert not near.needs_review and near.cluster_tier is CreditTier.B
    far = apply_cluster(p, 1, CreditTier.C)
    assert far.needs_review and far.tier is p.tier and far.limit_minor == p.limit_minor
    assert "review" in far.reasons[-1]


def test_config_file_errors_name_the_file_and_field(tmp_path: Path) -> None:
    good = tmp_path / "credit.yaml"
    good.write_text("min_transactions: 8\ntiers:\n  XAF:\n    limit_a: 75000\n")
    config = CreditConfig.from_file(good)
    assert config.min_transactions == 8
    assert config.policy("xaf") is not None
    assert config.tiers["XAF"].limit_minor(CreditTier.A, "XAF") == 75_000
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights:\n  net_flow: 0.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*weights.*sum to 1"):
        CreditConfig.from_file(bad)


_TYPES = st.sampled_from(list(TransactionType))
_DIRS = st.sampled_from(list(Direction))


@st.composite
def histories(draw: st.DrawFn) -> list[Transaction]:
    n = draw(st.integers(0, 25))
    out = []
    for _ in range(n):
        out.append(
            tx(
                draw(st.floats(-5, 400)),
                draw(st.integers(0, 10**9)),
                type=draw(_TYPES),
                direction=draw(_DIRS),
                counterparty_account_id=draw(st.sampled_from([None, "savings:a", "savings:b"])),
                country_code=draw(st.sampled_from([None, "CM", "GA", "NG", "FR", "US", "DE"])),
            )
        )
    return out


@settings(max_examples=80, deadline=None)
@given(histories(), st.booleans())
def test_any_history_gives_a_bounded_score_and_a_consistent_tier(
    txs: list[Transaction], opened: bool
) -> None:
    p = profile(txs, info=OLD if opened else None)
    assert 0.0 <= p.score <= 1.0
    assert all(0.0 <= p.components[n] <= 1.0 for n in COMPONENT_NAMES)
    for name, value in p.features.items():
        assert value is None or math.isfinite(value), name
    policy = TierPolicy()
    if p.tier is not CreditTier.E:
        assert p.tier is policy.tier_for(p.score)
        assert p.limit_minor == policy.limit_minor(p.tier, "XAF")
    else:
        assert p.limit_minor == 0
