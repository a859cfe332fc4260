"""The fast Isolation Forest scorer returns exactly scikit-learn's ``score_samples``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from serve.scoring.forest import ForestScorer, score_samples_of
from training.anomaly_tune import ColumnSelector

RNG = np.random.default_rng(7)
TRAIN = RNG.normal(size=(600, 12))
# Rows inside and far outside the training cloud, and a duplicate of a training row.
PROBE = np.vstack([RNG.normal(size=(200, 12)), RNG.normal(6.0, 3.0, size=(20, 12)), TRAIN[:1]])


def _forest(**kwargs: Any) -> IsolationForest:
    return IsolationForest(n_estimators=40, max_samples=64, random_state=3, **kwargs)


@pytest.mark.parametrize(
    "estimator",
    [
        pytest.param(_forest(), id="forest"),
        pytest.param(_forest(max_features=0.5), id="forest-feature-subsets"),
        pytest.param(
            Pipeline([("scaler", StandardScaler()), ("forest", _forest())]), id="pipeline"
        ),
        pytest.param(
            Pipeline(
                [
                    ("select", ColumnSelector((0, 3, 5, 7, 11))),
                    ("scaler", StandardScaler()),
                    ("forest", _forest()),
                ]
            ),
            id="pipeline-columns",
        ),
    ],
)
def test_scores_equal_scikit_learns_bit_for_bit(estimator: Any) -> None:
    estimator.fit(TRAIN)
    fast = score_samples_of(estimator)
    assert isinstance(fast, ForestScorer)
    for rows in (PROBE, PROBE[:1]):
        expected = estimator.score_samples(rows)
        got = fast(rows)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected)
    assert fast(PROBE[:0]).shape == (0,)  # scikit-learn refuses an empty batch


def test_a_forest_fitted_on_one_row_scores_like_scikit_learn() -> None:
    forest = IsolationForest(n_estimators=5, random_state=1).fit(TRAIN[:1])
    assert np.array_equal(score_samples_of(forest)(PROBE), forest.score_samples(PROBE))


def test_a_wrong_width_is_refused() -> None:
    fast = score_samples_of(_forest().fit(TRAIN))
    with pytest.raises(ValueError, match="12"):
        fast(PROBE[:, :5])


class _OtherDetector:
    """Any estimator with ``score_samples`` that is not an Isolation Forest."""

    def fit(self, x: Any, y: Any = None) -> _OtherDetector:
        return self

    def score_samples(self, x: Any) -> Any:
        return -np.abs(np.asarray(x)).sum(axis=1)


def test_other_estimators_keep_their_own_method() -> None:
    other = _OtherDetector()
    assert score_samples_of(other) == other.score_samples
    wrapped = Pipeline([("scaler", StandardScaler()), ("detector", other)]).fit(TRAIN)
    assert score_samples_of(wrapped) == wrapped.score_samples
