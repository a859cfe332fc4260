"""A model's results as arrays (``ResultBlock``): the same results as built one by one, and the
scores read from them alone."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from aml.domain import FeatureContribution, ScorerResult
from aml.features import FEATURE_NAMES
from serve.scoring.models import TOP_K, XGBOOST, ResultBlock, XGBoostModel, load_model
from serve.scoring.pipeline import ModelScorer, results_of, shadow_key
from tests.factories import external_xgboost_artifact
from training.promotion import model_scores

NAMES = tuple(f"f{i}" for i in range(9))


def _expected(values: np.ndarray, weights: np.ndarray, scores: np.ndarray) -> list[ScorerResult]:
    """Row by row: the features by decreasing |weight|, the first TOP_K, zero weights left out."""
    out = []
    for row, (vs, ws) in enumerate(zip(values, weights, strict=True)):
        ranked = sorted(range(len(ws)), key=lambda i: -abs(ws[i]))[:TOP_K]
        out.append(
            ScorerResult(
                scorer="anomaly",
                available=True,
                score=float(scores[row]),
                model_version="m1",
                contributions=tuple(
                    FeatureContribution(
                        feature=NAMES[i], value=float(vs[i]), contribution=float(ws[i])
                    )
                    for i in ranked
                    if ws[i] != 0.0
                ),
            )
        )
    return out


def _block(rows: int, seed: int = 5) -> tuple[ResultBlock, list[ScorerResult]]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, len(NAMES)))
    weights = rng.normal(size=(rows, len(NAMES)))
    # Rows whose largest weights are partly or wholly zero: those contributions are left out.
    weights[::3, :] = 0.0
    if rows > 1:
        weights[1, 4] = 9.0
        weights[1, [0, 1, 2, 3, 5, 6, 7, 8]] = 0.0
    scores = rng.uniform(size=rows)
    block = ResultBlock.of("anomaly", "m1", NAMES, scores, values, weights)
    return block, _expected(values, weights, scores)


def test_results_are_those_built_one_by_one() -> None:
    block, expected = _block(50)
    assert len(block) == 50
    assert block.results() == expected
    assert results_of(block) == expected
    assert block.results()[1].contributions == (
        FeatureContribution(
            feature="f4", value=expected[1].contributions[0].value, contribution=9.0
        ),
    )
    assert block.results()[0].contributions == ()


def test_a_slice_gives_the_results_of_its_rows() -> None:
    block, expected = _block(40)
    assert block.slice(0, 17).results() == expected[:17]
    assert block.slice(17, 40).results() == expected[17:]
    assert block.slice(40, 40).results() == []


def test_it_crosses_a_process_boundary_as_arrays() -> None:
    block, expected = _block(64)
    data = pickle.dumps(block, protocol=5)
    back = pickle.loads(data)
    assert isinstance(back, ResultBlock) and back.results() == expected


@pytest.mark.parametrize("n_features", [0, 1, 2])
def test_fewer_features_than_top_k(n_features: int) -> None:
    values = np.ones((3, n_features))
    weights = np.arange(3 * n_features, dtype=np.float64).reshape(3, n_features) + 1.0
    block = ResultBlock.of("xgboost", "x1", NAMES[:n_features], np.full(3, 0.5), values, weights)
    results = block.results()
    assert [len(r.contributions) for r in results] == [n_features] * 3
    assert all(r.score == 0.5 and r.scorer == "xgboost" for r in results)


def test_results_of_passes_results_through() -> None:
    shared = [ScorerResult(scorer="xgboost", available=False, reason="no model")] * 3
    assert results_of(shared) is shared


def _booster_model(tmp_path: Path) -> tuple[XGBoostModel, Path, np.ndarray]:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, len(FEATURE_NAMES)))
    artifact = external_xgboost_artifact(
        tmp_path, x, (x[:, 2] > 0.3).astype(int), version="c1", rounds=5
    )
    model = load_model(artifact)
    assert isinstance(model, XGBoostModel)
    return model, artifact, x[:40]


def test_challenger_and_promotion_scores_are_the_models_scores(tmp_path: Path) -> None:
    # Both read the scores alone (no result objects): the same numbers the model's results carry.
    model, artifact, x = _booster_model(tmp_path)
    scores = [r.score for r in model.score(x)]
    scorer = ModelScorer(XGBOOST, shadow=model)
    assert scorer.shadow_scores(x) == [{shadow_key(XGBOOST, "c1"): s} for s in scores]
    assert model_scores(str(artifact), x).tolist() == scores
    assert model_scores(str(artifact), x[:0]).tolist() == []
