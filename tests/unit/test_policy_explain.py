"""Reasons given to analysts: distance from the customer's baseline, XGBoost SHAP values."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import xgboost as xgb

from aml.explain import Baseline, anomaly_contributions, xgboost_contributions
from aml.features import FEATURE_NAMES, FeatureParams, compute_features, feature_frame
from aml.history import build_context
from tests.factories import T0, make_tx

NAMES = ("amount", "tx_count_24h", "is_new_device")


def test_features_furthest_from_the_customers_own_baseline_come_first() -> None:
    history = [[10_000.0 + 500 * (i % 3), 2.0 + (i % 2), 0.0] for i in range(20)]
    baseline = Baseline.from_vectors(history, names=NAMES)
    top = anomaly_contributions([10_500.0, 9.0, 1.0], baseline, k=2)
    assert [c.feature for c in top] == ["tx_count_24h", "is_new_device"]
    assert top[0].value == 9.0
    assert top[0].contribution > top[1].contribution > 0
    # The amount sits at the customer's median: no distance, no reason.
    full = anomaly_contributions([10_500.0, 9.0, 1.0], baseline, k=5)
    assert "amount" not in [c.feature for c in full]


def test_floors_keep_constant_histories_finite_and_signs_meaningful() -> None:
    baseline = Baseline.from_vectors([[50_000.0, 0.0, 0.0]] * 10, names=NAMES)
    (amount,) = anomaly_contributions([5_000.0, 0.0, 0.0], baseline, k=1)
    # Scale floored at 10 % of the median (5,000): 45,000 below is z = -9.
    assert amount.contribution == pytest.approx(-9.0)
    (flag,) = anomaly_contributions(
        {"amount": 50_000.0, "tx_count_24h": 0.0, "is_new_device": 1.0}, baseline, k=1
    )
    assert (flag.feature, flag.contribution) == ("is_new_device", 2.0)


def test_no_baseline_means_no_anomaly_reasons() -> None:
    assert anomaly_contributions([1.0, 2.0, 3.0], Baseline.from_vectors([], names=NAMES)) == ()
    short = Baseline.from_vectors([[1.0, 1.0, 1.0]] * 2, names=NAMES)
    assert anomaly_contributions([9.0, 9.0, 9.0], short) == ()
    with pytest.raises(ValueError, match="width"):
        Baseline.from_vectors([[1.0, 2.0]], names=NAMES)


def test_baseline_from_a_customers_feature_frame_round_trips() -> None:
    history = [
        make_tx(occurred_at=T0 + timedelta(hours=i), amount_minor=10_000 + 100 * i)
        for i in range(12)
    ]
    frame = feature_frame(history, params=FeatureParams())
    baseline = Baseline.from_vectors(frame.to_numpy())
    assert baseline.names == FEATURE_NAMES
    assert Baseline.from_dict(baseline.to_dict()) == baseline
    spike = make_tx(occurred_at=T0 + timedelta(hours=12, minutes=1), amount_minor=2_000_000)
    values = compute_features(spike, build_context(spike, history), params=FeatureParams())
    top = anomaly_contributions(values, baseline, k=3)
    assert top[0].feature in {"amount", "amount_vs_avg_ratio", "amount_vs_7d_avg_ratio"}
    assert top[0].contribution > 3


def test_xgboost_contributions_from_real_pred_contribs() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 1] > 0.5).astype(int)  # only the second feature matters
    booster = xgb.train(
        {"max_depth": 2, "eta": 0.5, "objective": "binary:logistic"},
        xgb.DMatrix(x, label=y, feature_names=list(NAMES)),
        num_boost_round=10,
    )
    row = np.array([[0.1, 2.0, -0.3]])
    contribs = booster.predict(xgb.DMatrix(row, feature_names=list(NAMES)), pred_contribs=True)
    top = xgboost_contributions(contribs[0], row[0], names=NAMES, k=2)
    assert top[0].feature == "tx_count_24h"
    assert top[0].value == 2.0
    assert top[0].contribution > 0
    assert all(c.feature != "bias" for c in top)
    # Same result from the (1, n + 1) block xgboost returns for a single row.
    assert xgboost_contributions(contribs, row[0], names=NAMES, k=2) == top


def test_xgboost_contributions_rank_by_magnitude_and_check_shapes() -> None:
    top = xgboost_contributions([0.2, -0.9, 0.0, 5.0], [1.0, 2.0, 3.0], names=NAMES, k=3)
    assert [(c.feature, c.contribution) for c in top] == [("tx_count_24h", -0.9), ("amount", 0.2)]
    with pytest.raises(ValueError, match="bias"):
        xgboost_contributions([0.2, -0.9, 0.0], [1.0, 2.0, 3.0], names=NAMES)
    with pytest.raises(ValueError, match="feature values"):
        xgboost_contributions([0.2, -0.9, 0.0, 1.0], [1.0, 2.0], names=NAMES)
