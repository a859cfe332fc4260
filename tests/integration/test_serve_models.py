"""Model artifacts: round trip, externally trained models, refusal of another feature list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aml.calibration import QuantileCalibrator
from aml.features import FEATURE_NAMES
from serve.scoring.models import (
    AnomalyModel,
    ModelFeatureMismatch,
    XGBoostModel,
    load_model,
    save_anomaly_artifact,
)
from tests.factories import external_xgboost_artifact

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(3)
N_FEATURES = len(FEATURE_NAMES)


def _normal(n: int) -> np.ndarray:
    return RNG.normal(size=(n, N_FEATURES))


def test_anomaly_bundle_round_trip_scores_outliers_higher(tmp_path: Path) -> None:
    train = _normal(2000)
    est = make_pipeline(StandardScaler(), IsolationForest(n_estimators=50, random_state=0))
    est.fit(train)
    cal = QuantileCalibrator.fit(-est.score_samples(train), alert_rate=0.01, threshold=0.5)
    path = save_anomaly_artifact(tmp_path / "a.joblib", version="a1", estimator=est, calibrator=cal)

    model = load_model(str(path))

    assert isinstance(model, AnomalyModel) and model.version == "a1"
    outlier = np.full((1, N_FEATURES), 8.0)
    outlier[0, 0] = 40.0
    normal, odd = model.score(np.vstack([np.zeros((1, N_FEATURES)), outlier]))
    assert normal.available and odd.available and normal.score is not None
    assert odd.score is not None and odd.score >= 0.5 > normal.score
    # The explanation names the feature furthest from the training baseline.
    assert odd.contributions[0].feature == FEATURE_NAMES[0]


def test_externally_trained_xgboost_with_its_feature_list_is_accepted(tmp_path: Path) -> None:
    x = _normal(400)
    y = (x[:, 1] > 0.5).astype(int)
    manifest = external_xgboost_artifact(tmp_path, x, y, version="ext-7")

    model = load_model(manifest)

    assert isinstance(model, XGBoostModel)
    (res,) = model.score(x[:1])
    assert res.model_version == "ext-7" and 0.0 <= (res.score or 0.0) <= 1.0
    assert res.contributions and res.contributions[0].feature == FEATURE_NAMES[1]


def test_model_trained_on_other_features_is_refused_naming_them(tmp_path: Path) -> None:
    names = [*FEATURE_NAMES[:-1], "legacy_feature"]
    x = RNG.normal(size=(50, len(names)))
    booster = xgb.train(
        {"objective": "binary:logistic"},
        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=names),
        num_boost_round=2,
    )
    booster.save_model(str(tmp_path / "old.ubj"))

    with pytest.raises(ModelFeatureMismatch) as err:
        load_model(
            {
                "kind": "xgboost",
                "version": "old",
                "features": names,
                "path": str(tmp_path / "old.ubj"),
            }
        )

    assert "legacy_feature" in err.value.message and FEATURE_NAMES[-1] in err.value.message
    with pytest.raises(ModelFeatureMismatch, match="different order"):
        load_model(
            {
                "kind": "xgboost",
                "features": list(reversed(FEATURE_NAMES)),
                "path": str(tmp_path / "old.ubj"),
            }
        )
