"""Reasons behind model scores, as :class:`~aml.domain.FeatureContribution` lists.

* Anomaly: which features sit furthest from the customer's *own* baseline, by a robust z-score
  ``(x - median) / scale`` with ``scale = max(1.4826 * MAD, relative_floor * |median|,
  absolute_floor)``. The floors keep constant histories (MAD = 0, e.g. a flag that was always 0)
  from producing infinite distances.
* XGBoost: the largest SHAP values from ``Booster.predict(..., pred_contribs=True)`` rows, whose
  last column is the bias.

Contributions are ranked by absolute value; ties are broken by feature name so that the same
input always gives the same explanation.

:func:`customer_anomaly_explanation` builds the customer's baseline where it is cheap: only for
alerting decisions, from the account's stored history, with the same point-in-time context and
feature functions scoring uses.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from aml.domain import (
    FeatureContribution,
    ScorerResult,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from aml.features import FEATURE_NAMES, FeatureParams, feature_vector
from aml.history import MAX_LOOKBACK, HistoryContext
from aml.policy import ANOMALY
from aml.summaries import SummaryCache

MAD_TO_SIGMA = 1.4826  # makes the MAD a consistent estimator of a normal's standard deviation


def _top(items: list[FeatureContribution], k: int) -> tuple[FeatureContribution, ...]:
    ranked = sorted(
        (c for c in items if c.contribution != 0.0 and math.isfinite(c.contribution)),
        key=lambda c: (-abs(c.contribution), c.feature),
    )
    return tuple(ranked[: max(k, 0)])


@dataclass(frozen=True, slots=True)
class Baseline:
    """Robust per-feature statistics of one customer's recent feature vectors.

    Attributes:
        names: feature names, in the order of ``medians`` and ``scales``.
        medians: per-feature median.
        scales: per-feature robust scale (floored, always > 0).
        n: number of history vectors behind the statistics.
    """

    names: tuple[str, ...]
    medians: tuple[float, ...]
    scales: tuple[float, ...]
    n: int

    @classmethod
    def from_vectors(
        cls,
        vectors: Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]],
        *,
        names: Sequence[str] = FEATURE_NAMES,
        absolute_floor: float = 0.5,
        relative_floor: float = 0.1,
        floors: Mapping[str, float] | None = None,
    ) -> Baseline:
        """Statistics from the customer's history feature vectors (one row per transaction).

        Args:
            vectors: history feature vectors, columns in ``names`` order.
            names: feature names of the columns.
            absolute_floor: smallest scale any feature may have.
            relative_floor: smallest scale as a fraction of ``|median|`` (amount-like features).
            floors: per-feature absolute floors overriding ``absolute_floor``.

        Raises:
            ValueError: when the vectors' width does not match ``names``.
        """
        matrix = np.asarray(vectors, dtype=np.float64)
        if matrix.size == 0:
            return cls(tuple(names), (), (), 0)
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ValueError(f"expected vectors of width {len(names)}, got shape {matrix.shape}")
        medians = np.median(matrix, axis=0)
        mads = np.median(np.abs(matrix - medians), axis=0) * MAD_TO_SIGMA
        per_feature = np.array(
            [(floors or {}).get(name, absolute_floor) for name in names], dtype=np.float64
        )
        scales = np.maximum.reduce([mads, relative_floor * np.abs(medians), per_feature])
        return cls(
            names=tuple(names),
            medians=tuple(float(v) for v in medians),
            scales=tuple(float(v) for v in scales),
            n=int(matrix.shape[0]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain representation (for caching next to per-customer state)."""
        return {
            "names": list(self.names),
            "medians": list(self.medians),
            "scales": list(self.scales),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            names=tuple(str(v) for v in data["names"]),
            medians=tuple(float(v) for v in data["medians"]),
            scales=tuple(float(v) for v in data["scales"]),
            n=int(data["n"]),
        )


def anomaly_contributions(
    vector: Sequence[float] | Mapping[str, float],
    baseline: Baseline,
    *,
    k: int = 5,
    min_history: int = 3,
) -> tuple[FeatureContribution, ...]:
    """Top-``k`` features furthest from the customer's baseline (signed robust z-scores).

    Args:
        vector: the transaction's features, as a ``FEATURE_NAMES``-ordered sequence or a mapping.
        baseline: the customer's history statistics.
        k: how many contributions to return.
        min_history: with fewer history vectors there is no baseline to speak of: returns ``()``.

    Returns:
        Contributions with ``value`` = the feature value and ``contribution`` = its z-score.
    """
    if baseline.n < min_history or not baseline.medians:
        return ()
    if isinstance(vector, Mapping):
        values = [float(vector[name]) for name in baseline.names]
    else:
        values = [float(v) for v in vector]
        if len(values) != len(baseline.names):
            raise ValueError(f"expected {len(baseline.names)} features, got {len(values)}")
    items = [
        FeatureContribution(feature=name, value=x, contribution=(x - med) / scale)
        for name, x, med, scale in zip(
            baseline.names, values, baseline.medians, baseline.scales, strict=True
        )
    ]
    return _top(items, k)


def xgboost_contributions(
    contribs: Sequence[float] | npt.NDArray[np.floating[Any]],
    values: Sequence[float] | npt.NDArray[np.floating[Any]],
    *,
    names: Sequence[str] = FEATURE_NAMES,
    k: int = 5,
) -> tuple[FeatureContribution, ...]:
    """Top-``k`` SHAP contributions of one row of ``pred_contribs`` output.

    Args:
        contribs: one row of ``Booster.predict(dmatrix, pred_contribs=True)`` (shape
            ``(len(names) + 1,)`` or ``(1, len(names) + 1)``); the last column is the bias and is
            not a reason.
        values: the row's feature values, in ``names`` order.
        names: feature names of the model's columns.
        k: how many contributions to return.

    Raises:
        ValueError: when the shapes do not match ``names``.
    """
    row = np.asarray(contribs, dtype=np.float64)
    if row.ndim == 2 and row.shape[0] == 1:
        row = row[0]
    feature_values = np.asarray(values, dtype=np.float64).ravel()
    if row.ndim != 1 or row.size != len(names) + 1:
        raise ValueError(
            f"expected one contributions row of {len(names) + 1} columns (features + bias), "
            f"got shape {np.shape(contribs)}"
        )
    if feature_values.size != len(names):
        raise ValueError(f"expected {len(names)} feature values, got {feature_values.size}")
    items = [
        FeatureContribution(feature=name, value=float(x), contribution=float(c))
        for name, x, c in zip(names, feature_values, row[:-1], strict=True)
    ]
    return _top(items, k)


# The features a customer's baseline can be built for: those computed from the transaction
# itself and the account's own window (``HistoryContext.account``) only. The baseline is rebuilt
# from the account's stored history, which holds the movements touching the account but not the
# counterparty's or the agent's own windows, so a feature reading those would be computed from
# partial data for every history row. Today no feature reads them (rules do); a new feature that
# does must stay out of this list (a unit test recomputes every listed feature with other
# counterparty and agent windows and requires the same value).
ACCOUNT_HISTORY_FEATURES: tuple[str, ...] = (
    # The transaction itself.
    "amount",
    "amount_log",
    "is_deposit",
    "is_withdrawal",
    "is_transfer",
    "hour_sin",
    "hour_cos",
    "day_of_week",
    "is_weekend",
    "is_night",
    "is_round_hundred",
    "is_round_thousand",
    # The account's last hour / 24 hours.
    "tx_count_1h",
    "tx_count_24h",
    "total_amount_1h",
    "total_amount_24h",
    "avg_amount_24h",
    "max_amount_24h",
    "amount_vs_avg_ratio",
    "unique_counterparties_24h",
    "same_type_ratio_24h",
    "is_new_ip_for_account",
    "unique_ips_24h",
    "is_new_device",
    # The account's 7 days.
    "tx_count_7d",
    "total_amount_7d",
    "avg_amount_7d",
    "max_amount_7d",
    "unique_counterparties_7d",
    "amount_vs_7d_avg_ratio",
    "tx_velocity_trend",
    "receiver_diversity_7d",
    "geo_distance_from_usual",
    "has_loan_disbursement_7d",
    # The actor, as recorded on the transaction.
    "is_agent",
    "is_merchant",
    "kyc_level_norm",
    "is_new_kyc",
    # Direction-aware, from the account's window.
    "is_incoming",
    "inflow_24h",
    "outflow_24h",
    "net_flow_24h",
    "unique_senders_7d",
    "unique_receivers_7d",
    "minutes_since_last_tx",
    "minutes_since_loan_disbursement",
    "amount_vs_max_7d",
)

_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in ACCOUNT_HISTORY_FEATURES)

CUSTOMER_BASELINE = "vs this customer's own baseline"
POPULATION_BASELINE = "vs population"
BASELINE_LOOKBACK = timedelta(days=30)
MAX_BASELINE_HISTORY = 200
MIN_BASELINE_HISTORY = 5
# History items (the rows' 7-day windows added up) one explanation reads at most: 200 rows of an
# account with about seven movements a day, a few milliseconds.
MAX_BASELINE_WORK = 10_000
# Windows of this many records and more go through a summary cache (shorter: read directly).
_KEEP_SUMMARIES_FROM = 16
_DAY = timedelta(days=1)
_NOT_MONEY = frozenset({TransactionStatus.REJECTED, TransactionStatus.CORRECTION})


@dataclass(frozen=True, slots=True)
class CustomerExplanation:
    """Anomaly reasons for one transaction against its customer's own history.

    Attributes:
        contributions: top features furthest from the customer's baseline (robust z-scores);
            empty when the customer has no baseline (see ``own_baseline``).
        usual: the customer's median of every feature in ``contributions``.
        history: earlier transactions of the account behind the baseline.
        days: whole days the baseline spans (from its oldest transaction to this one).
        own_baseline: whether ``history`` reached the minimum; when False the population
            explanation stays and ``basis`` says why.
        min_history: the minimum that applied.
    """

    contributions: tuple[FeatureContribution, ...]
    usual: Mapping[str, float] = field(default_factory=dict)
    history: int = 0
    days: int = 0
    own_baseline: bool = False
    min_history: int = MIN_BASELINE_HISTORY

    @property
    def basis(self) -> str:
        """What the contributions are measured against, in words an analyst reads."""
        if self.own_baseline:
            noun = "transaction" if self.history == 1 else "transactions"
            span = "day" if self.days == 1 else "days"
            return f"{CUSTOMER_BASELINE} (median of {self.history} {noun} over {self.days} {span})"
        return (
            f"{POPULATION_BASELINE}: this customer has {self.history} earlier transactions, "
            f"{self.min_history} are needed for an own baseline"
        )


def contributions_basis(result: ScorerResult) -> str:
    """What a scorer's contributions are measured against, for display next to them.

    Anomaly contributions are distances from a baseline: the customer's own once an alert was
    explained against it (the result's ``reason`` says so), the training population otherwise.
    Other scorers' contributions are their own attributions: ``""``.
    """
    if result.scorer != ANOMALY:
        return ""
    reason = result.reason or ""
    if reason.startswith((CUSTOMER_BASELINE, POPULATION_BASELINE)):
        return reason
    return POPULATION_BASELINE


def _order(tx: Transaction) -> tuple[datetime, str]:
    return (tx.occurred_at, tx.id)


def customer_anomaly_explanation(
    tx: Transaction,
    candidates: Sequence[Transaction],
    *,
    params: FeatureParams,
    complete_from: datetime | None = None,
    lookback: timedelta = BASELINE_LOOKBACK,
    max_history: int = MAX_BASELINE_HISTORY,
    min_history: int = MIN_BASELINE_HISTORY,
    max_work: int = MAX_BASELINE_WORK,
    k: int = 5,
) -> CustomerExplanation:
    """The features of ``tx`` furthest from its customer's own baseline.

    The baseline is the robust statistics (:class:`Baseline`) of the point-in-time feature
    vectors of the account's own earlier transactions in ``[tx - lookback, tx)``, at most the
    ``max_history`` most recent. Every vector, the transaction's own included, is computed by
    :func:`aml.features.feature_vector` over the account history
    :func:`aml.history.build_context` would give it, as scoring does, over
    :data:`ACCOUNT_HISTORY_FEATURES` (the rows one after another, their window summaries kept
    from one to the next: :mod:`aml.summaries`).

    Args:
        tx: the alerting transaction.
        candidates: the account's movements (as owner or counterparty) around ``tx``: any
            superset in any order; later transactions, other accounts and ``tx`` itself are
            left out as scoring leaves them out.
        params: feature parameters scoring used.
        complete_from: ``candidates`` hold every movement of the account from this instant on.
            A history transaction whose 7-day window reaches further back would get understated
            window features, so it is not part of the baseline. ``None``: complete.
        lookback: how far back the baseline reaches.
        max_history: most recent history transactions used at most.
        max_work: history items read at most, every row's window counted: the most recent rows
            whose windows fit are used.
        min_history: fewer history transactions than this are no baseline: the result has no
            contributions and ``own_baseline`` False.
        k: how many contributions to return.

    Returns:
        The contributions, the customer's usual values of those features and the history size.
    """
    acct, tenant = tx.account_id, tx.tenant
    # By id first: a transaction both in the batch and in the store is one transaction.
    unique = {
        o.id: o
        for o in candidates
        if o.tenant == tenant and acct in (o.account_id, o.counterparty_account_id)
    }
    pool = sorted(unique.values(), key=_order)
    keys = [_order(o) for o in pool]
    end = bisect.bisect_left(keys, _order(tx))
    oldest = tx.occurred_at - lookback
    # Only the account's own money movements describe its behaviour: a counterparty-side
    # record's features are computed for the other account.
    rows = [
        i
        for i in range(end)
        if pool[i].account_id == acct
        and pool[i].occurred_at >= oldest
        and pool[i].status not in _NOT_MONEY
        and pool[i].type is not TransactionType.REVERSAL
        and (complete_from is None or pool[i].occurred_at - MAX_LOOKBACK >= complete_from)
    ]
    rows = rows[-max_history:] if max_history > 0 else []
    starts = {
        i: bisect.bisect_left(keys, ((tx if i == end else pool[i]).occurred_at - MAX_LOOKBACK, ""))
        for i in (*rows, end)
    }
    # A row costs its 7-day window: the newest rows whose windows fit the budget, so a busy
    # account gets a shorter baseline instead of an explanation that costs a second.
    work = end - starts[end]
    for n, i in enumerate(reversed(rows)):
        work += i - starts[i]
        if work > max_work:
            rows = rows[len(rows) - n :]
            break
    if len(rows) < min_history:
        return CustomerExplanation((), history=len(rows), min_history=min_history)

    # The rows are the account's own transactions in time order, each window continuing the
    # previous one's: their summaries are kept from one to the next, as a rule replica keeps them.
    summaries = SummaryCache(min_items=_KEEP_SUMMARIES_FROM)

    def vector(i: int, item: Transaction) -> list[float]:
        # What build_context(item, pool[starts[i]:i]) gives the features: the pool holds only
        # the account's movements, deduplicated, in point-in-time order, and starts[i] is where
        # the item's 7-day window opens (features read nothing else of a context).
        ctx = HistoryContext(account=pool[starts[i] : i])
        full = feature_vector(item, ctx, params=params, summaries=summaries)
        return [full[c] for c in _COLUMNS]

    history = [vector(i, pool[i]) for i in rows]
    baseline = Baseline.from_vectors(history, names=ACCOUNT_HISTORY_FEATURES)
    top = anomaly_contributions(vector(end, tx), baseline, k=k, min_history=min_history)
    medians = dict(zip(baseline.names, baseline.medians, strict=True))
    span = tx.occurred_at - pool[rows[0]].occurred_at
    return CustomerExplanation(
        top,
        usual={c.feature: medians[c.feature] for c in top},
        history=len(rows),
        days=max(1, math.ceil(span / _DAY)),
        own_baseline=True,
        min_history=min_history,
    )
