"""Reasons behind model scores, as :class:`~aml.domain.FeatureContribution` lists.

* Anomaly: which features sit furthest from the customer's *own* baseline, by a robust z-score
  ``(x - median) / scale`` with ``scale = max(1.4826 * MAD, relative_floor * |median|,
  absolute_floor)``. The floors keep constant histories (MAD = 0, e.g. a flag that was always 0)
  from producing infinite distances.
* XGBoost: the largest SHAP values from ``Booster.predict(..., pred_contribs=True)`` rows, whose
  last column is the bias.

Contributions are ranked by absolute value; ties are broken by feature name so that the same
input always gives the same explanation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aml.domain import FeatureContribution
from aml.features import FEATURE_NAMES

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
