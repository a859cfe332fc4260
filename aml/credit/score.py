"""Rule-based credit score, tiers and limits.

The score is the weighted sum of seven components in [0, 1] (the predecessor's formula), less a
penalty proportional to ``round_trip_score`` (money that comes in and goes straight back to the
same counterparty inflates deposits without being income). Tiers and limits are configured per
currency; a client with too little history, or in a currency without a tier table, gets tier E
and no credit, with a reason saying why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aml.credit.features import (
    FEATURE_INDEX,
    WINDOW_DAYS,
    ClientInfo,
    CreditColumns,
    CreditFeatures,
    FeatureMatrix,
    columns_from_transactions,
    feature_matrix,
    row_features,
)
from aml.domain import CreditProfile, CreditTier, Transaction, ensure_utc
from aml.errors import ConfigError
from aml.money import to_minor

COMPONENT_NAMES: tuple[str, ...] = (
    "deposit_consistency",
    "net_flow",
    "savings_rate",
    "tx_frequency",
    "account_age",
    "repayment_rate",
    "fraud_history",
)
ROUND_TRIP_COMPONENT = "round_trip_penalty"  # stored with the components, as a deduction
TIER_ORDER: tuple[CreditTier, ...] = (
    CreditTier.A,
    CreditTier.B,
    CreditTier.C,
    CreditTier.D,
    CreditTier.E,
)
_WEIGHT_TOLERANCE = 1e-9
INSUFFICIENT_HISTORY = "insufficient history"


class CreditWeights(BaseModel):
    """Weights of the seven components; each ≥ 0 and together exactly 1 (within 1e-9)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deposit_consistency: float = Field(default=0.20, ge=0.0)
    net_flow: float = Field(default=0.20, ge=0.0)
    savings_rate: float = Field(default=0.15, ge=0.0)
    tx_frequency: float = Field(default=0.10, ge=0.0)
    account_age: float = Field(default=0.10, ge=0.0)
    repayment_rate: float = Field(default=0.15, ge=0.0)
    fraud_history: float = Field(default=0.10, ge=0.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = sum(self.as_tuple())
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise ValueError(f"credit weights must sum to 1, got {total:.12g}")
        return self

    def as_tuple(self) -> tuple[float, ...]:
        """Weights in :data:`COMPONENT_NAMES` order."""
        return tuple(float(getattr(self, name)) for name in COMPONENT_NAMES)


class TierPolicy(BaseModel):
    """Tier cut-offs, limits (major units) and net-flow scale of one currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    net_flow_scale: Decimal = Field(default=Decimal(50_000), gt=0)
    min_score_a: float = Field(default=0.80, ge=0.0, le=1.0)
    min_score_b: float = Field(default=0.65, ge=0.0, le=1.0)
    min_score_c: float = Field(default=0.50, ge=0.0, le=1.0)
    min_score_d: float = Field(default=0.35, ge=0.0, le=1.0)
    limit_a: Decimal = Field(default=Decimal(50_000), ge=0)
    limit_b: Decimal = Field(default=Decimal(20_000), ge=0)
    limit_c: Decimal = Field(default=Decimal(10_000), ge=0)
    limit_d: Decimal = Field(default=Decimal(1_000), ge=0)
    limit_e: Decimal = Field(default=Decimal(0), ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        cuts = (self.min_score_a, self.min_score_b, self.min_score_c, self.min_score_d)
        if any(hi <= lo for hi, lo in itertools.pairwise(cuts)):
            raise ValueError(f"tier cut-offs must decrease strictly from A to D, got {cuts}")
        limits = (self.limit_a, self.limit_b, self.limit_c, self.limit_d, self.limit_e)
        if any(hi < lo for hi, lo in itertools.pairwise(limits)):
            raise ValueError("tier limits must not increase from A to E")
        return self

    def min_score(self, tier: CreditTier) -> float:
        """Lowest score of ``tier`` (0 for E)."""
        if tier is CreditTier.E:
            return 0.0
        return float(getattr(self, f"min_score_{tier.value.lower()}"))

    def tier_for(self, score: float) -> CreditTier:
        """The best tier whose cut-off ``score`` reaches."""
        for tier in TIER_ORDER[:-1]:
            if score >= self.min_score(tier):
                return tier
        return CreditTier.E

    def limit_minor(self, tier: CreditTier, currency: str) -> int:
        """Credit limit of ``tier`` in minor units of ``currency``."""
        limit: Decimal = getattr(self, f"limit_{tier.value.lower()}")
        return to_minor(limit, currency)


class InflationPolicy(BaseModel):
    """Score-inflation check: a burst of deposits just before a credit request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback_days: int = Field(default=30, ge=7, le=365)
    burst_days: int = Field(default=7, ge=1, le=30)
    min_transactions: int = Field(default=5, ge=1)
    inflow_multiplier: float = Field(default=3.0, gt=1.0)
    # A monthly salary landing in the last week is not a burst: the recent inflow must also
    # exceed this multiple of the client's own average monthly inflow before the burst.
    baseline_days: int = Field(default=180, ge=30, le=730)
    baseline_multiplier: float = Field(default=2.0, gt=0.0)
    score_penalty: float = Field(default=0.15, ge=0.0, le=1.0)


class CreditConfig(BaseModel):
    """Everything the credit score, tiers and recommendation depend on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: CreditWeights = CreditWeights()
    window_days: int = Field(default=WINDOW_DAYS, ge=30, le=730)
    min_transactions: int = Field(default=5, ge=0)
    tiers: dict[str, TierPolicy] = Field(default_factory=lambda: {"XAF": TierPolicy()})
    default_currency: str = Field(default="XAF", min_length=3, max_length=3)
    # Neutral component value when the repayment rate cannot be known (no loan in the window):
    # half-way, i.e. neither rewarded nor punished for having had no loan.
    repayment_unknown_component: float = Field(default=0.5, ge=0.0, le=1.0)
    round_trip_penalty: float = Field(default=0.25, ge=0.0, le=1.0)
    round_trip_flag: float = Field(default=0.30, gt=0.0, le=1.0)
    approve_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    inflation: InflationPolicy = InflationPolicy()

    def policy(self, currency: str) -> TierPolicy | None:
        """Tier table of ``currency`` (None when the currency is not configured)."""
        return self.tiers.get(currency.upper())

    @classmethod
    def from_file(cls, path: Path) -> CreditConfig:
        """Load a configuration from a YAML or JSON file.

        Raises:
            ConfigError: naming the file and every offending field.
        """
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read credit configuration {path}: {exc}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            parts = [
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigError(
                f"invalid credit configuration {path}: " + "; ".join(parts), file=str(path)
            ) from None


@dataclass(frozen=True, slots=True)
class ScoreMatrix:
    """Scores of a chunk: ``components[i, j]`` is ``COMPONENT_NAMES[j]`` of client ``i``."""

    components: npt.NDArray[np.float64]
    round_trip_penalty: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]


def score_matrix(
    features: npt.NDArray[np.float64], currencies: Sequence[str], config: CreditConfig
) -> ScoreMatrix:
    """Components and scores for every row of a feature matrix (NaN = unknown feature).

    Args:
        features: ``(n, 20)`` in ``FEATURE_NAMES`` order.
        currencies: each row's currency (selects the net-flow scale).
        config: weights and per-currency policies.

    Returns:
        Components, the round-trip deduction and the score clamped to [0, 1].
    """
    f = features

    def col(name: str) -> npt.NDArray[np.float64]:
        return f[:, FEATURE_INDEX[name]]

    fallback = TierPolicy().net_flow_scale
    scale = np.array(
        [
            float((config.policy(c) or TierPolicy(net_flow_scale=fallback)).net_flow_scale)
            for c in currencies
        ],
        dtype=np.float64,
    )
    z = np.clip(col("net_monthly_flow") / scale, -50.0, 50.0)
    repayment = col("loan_repayment_rate")
    alerts = col("total_fraud_alerts")
    comps = np.column_stack(
        [
            col("deposit_consistency"),
            1.0 / (1.0 + np.exp(-z)),
            col("savings_rate"),
            np.minimum(col("transaction_frequency") / 30.0, 1.0),
            np.minimum(col("account_age_days") / 365.0, 1.0),
            np.where(np.isnan(repayment), config.repayment_unknown_component, repayment),
            np.maximum(0.0, 1.0 - 0.2 * alerts)
            * np.minimum(col("days_since_last_fraud_alert") / 365.0, 1.0),
        ]
    )
    comps = np.clip(comps, 0.0, 1.0)
    weights = np.asarray(config.weights.as_tuple(), dtype=np.float64)
    penalty = config.round_trip_penalty * col("round_trip_score")
    # Column by column rather than a matrix product: BLAS sums in an order that depends on the
    # number of rows, and a client's score must not depend on the size of its chunk.
    weighted = np.zeros(comps.shape[0], dtype=np.float64)
    for j in range(comps.shape[1]):
        weighted = weighted + comps[:, j] * weights[j]
    score = np.clip(weighted - penalty, 0.0, 1.0)
    return ScoreMatrix(components=comps, round_trip_penalty=penalty, score=score)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def build_profile(
    features: CreditFeatures,
    components: Sequence[float],
    round_trip_penalty: float,
    score: float,
    *,
    tenant: str,
    config: CreditConfig,
) -> CreditProfile:
    """Turn one client's features and score into a :class:`CreditProfile` with reasons."""
    values = features.values
    comp_map = {name: float(v) for name, v in zip(COMPONENT_NAMES, components, strict=True)}
    comp_map[ROUND_TRIP_COMPONENT] = -float(round_trip_penalty)
    reasons: list[str] = []
    policy = config.policy(features.currency)
    final = float(score)
    if features.transaction_count < config.min_transactions:
        reasons.append(
            f"{INSUFFICIENT_HISTORY}: {features.transaction_count} transactions in the last "
            f"{features.window_days} days (minimum {config.min_transactions})"
        )
        tier, final = CreditTier.E, 0.0
    elif policy is None:
        reasons.append(f"no tier table configured for currency {features.currency}")
        tier = CreditTier.E
    else:
        tier = policy.tier_for(final)
        cut = policy.min_score(tier)
        reasons.append(f"score {_fmt(final)} gives tier {tier.value} (cut-off {_fmt(cut)})")
    scored = policy is not None and features.transaction_count >= config.min_transactions
    limit = policy.limit_minor(tier, features.currency) if scored and policy is not None else 0

    for name, why in features.unknown.items():
        if name == "loan_repayment_rate":
            reasons.append(
                f"repayment rate unknown ({why}); neutral component "
                f"{_fmt(config.repayment_unknown_component)} used"
            )
        else:
            reasons.append(f"{name} unknown ({why})")
    rt = values.get("round_trip_score") or 0.0
    if rt >= config.round_trip_flag:
        reasons.append(
            f"round-trip pattern: {rt:.0%} of inflow went back to the same counterparty within "
            f"48 h (score lowered by {_fmt(round_trip_penalty)})"
        )
    alerts = int(values.get("total_fraud_alerts") or 0)
    if alerts:
        days = values.get("days_since_last_fraud_alert") or 0.0
        reasons.append(f"{alerts} confirmed fraud alert(s), the last {days:.0f} days ago")
    if scored:
        weighted = sorted(
            COMPONENT_NAMES,
            key=lambda n: comp_map[n] * getattr(config.weights, n) - getattr(config.weights, n),
        )
        weakest = [n for n in weighted[:2] if comp_map[n] < 0.5]
        if weakest:
            reasons.append(
                "weakest components: " + ", ".join(f"{n} {_fmt(comp_map[n])}" for n in weakest)
            )
    return CreditProfile(
        tenant=tenant,
        client_id=features.client_id,
        score=final,
        tier=tier,
        limit_minor=int(limit),
        currency=features.currency,
        components=comp_map,
        features=dict(values),
        computed_at=features.as_of,
        window_days=features.window_days,
        reasons=tuple(reasons),
    )


def profiles_from_columns(
    cols: CreditColumns, *, tenant: str, as_of: datetime, config: CreditConfig
) -> list[CreditProfile]:
    """Features, scores and profiles for every client of a chunk (the batch path)."""
    as_of = ensure_utc(as_of)
    matrix: FeatureMatrix = feature_matrix(cols, window_days=config.window_days)
    scores = score_matrix(matrix.values, cols.currencies, config)
    out: list[CreditProfile] = []
    for i, cid in enumerate(cols.client_ids):
        feats = row_features(
            matrix,
            i,
            client_id=cid,
            currency=cols.currencies[i],
            as_of=as_of,
            window_days=config.window_days,
        )
        out.append(
            build_profile(
                feats,
                scores.components[i].tolist(),
                float(scores.round_trip_penalty[i]),
                float(scores.score[i]),
                tenant=tenant,
                config=config,
            )
        )
    return out


def score_client(
    transactions: Sequence[Transaction],
    *,
    tenant: str,
    client_id: str,
    as_of: datetime,
    config: CreditConfig | None = None,
    info: ClientInfo | None = None,
    currency: str | None = None,
) -> CreditProfile:
    """Credit profile of one client at ``as_of`` (the on-request path).

    Args:
        transactions: the client's transactions over any of its accounts.
        tenant: the client's tenant.
        client_id: the client.
        as_of: end of the window; the clock value passed in.
        config: scoring configuration (defaults when omitted).
        info: account opening date and confirmed-fraud alert dates.
        currency: currency to profile; default: the client's dominant currency.

    Returns:
        The profile: score, tier, limit, components, features and reasons.
    """
    config = config or CreditConfig()
    cols = columns_from_transactions(
        {client_id: transactions},
        as_of=as_of,
        info={client_id: info} if info is not None else None,
        currencies={client_id: currency} if currency else None,
        default_currency=config.default_currency,
        window_days=config.window_days,
    )
    return profiles_from_columns(cols, tenant=tenant, as_of=as_of, config=config)[0]


def is_scored(profile: CreditProfile) -> bool:
    """False when the profile's tier E comes from too little history rather than a score."""
    return not any(r.startswith(INSUFFICIENT_HISTORY) for r in profile.reasons)


def tier_distance(a: CreditTier, b: CreditTier) -> int:
    """Number of tiers between ``a`` and ``b``."""
    return abs(TIER_ORDER.index(a) - TIER_ORDER.index(b))


def apply_cluster(
    profile: CreditProfile, cluster_id: int, cluster_tier: CreditTier, *, max_gap: int = 1
) -> CreditProfile:
    """Attach a clustering opinion; more than ``max_gap`` tiers apart flags the profile for
    review (the rule-based score, tier and limit stay as they are)."""
    gap = tier_distance(profile.tier, cluster_tier)
    reasons = profile.reasons
    needs_review = gap > max_gap
    if needs_review:
        reasons = (
            *reasons,
            f"cluster suggests tier {cluster_tier.value}, {gap} tiers from rule tier "
            f"{profile.tier.value}: review",
        )
    return replace(
        profile,
        cluster_id=int(cluster_id),
        cluster_tier=cluster_tier,
        needs_review=needs_review,
        reasons=reasons,
    )


def feature_vector(features: Mapping[str, float | None]) -> list[float]:
    """Features in ``FEATURE_NAMES`` order, NaN for unknown values."""
    return [math.nan if (v := features.get(name)) is None else float(v) for name in FEATURE_INDEX]
