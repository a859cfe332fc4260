"""Fit a first Isolation Forest from stored history (before any labels exist).

Features come from the frame path (:func:`aml.features.feature_frame`), the same definitions the
scorers compute online. The calibrator is fitted on the training scores so that the configured
alert rate holds on traffic like the training data: an anomaly model alone must not flood the
analysts. The result is an artifact file that ``AnomalyScorer`` loads (``user_config.model``) and
a ``ModelRecord`` registered as a candidate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from aml.calibration import QuantileCalibrator
from aml.domain import ModelRecord, Transaction, TransactionStatus, utcnow
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FeatureParams, feature_frame
from serve.scoring.models import ANOMALY, save_anomaly_artifact
from storage.store import Store
from training.candidates import candidate_record

MIN_TRAINING_ROWS = 200
_MONEY = frozenset({TransactionStatus.PENDING, TransactionStatus.SCORED})


@dataclass(frozen=True)
class AnomalyFitConfig:
    """Knobs of the fit.

    Attributes:
        alert_rate: share of training-like traffic whose calibrated score reaches
            ``threshold`` (the policy's alert threshold).
        threshold: the policy's alert threshold.
        n_estimators, max_samples: Isolation Forest size (``max_samples`` 256 is the
            original paper's default and keeps fitting fast on 2 cores).
        random_state: seed, so a refit on the same data gives the same model.
        limit: most transactions read from the store (the newest are used).
    """

    alert_rate: float = 0.005
    threshold: float = 0.5
    n_estimators: int = 200
    max_samples: int = 256
    random_state: int = 0
    limit: int = 300_000


def fit_isolation_forest(
    txs: list[Transaction], *, params: FeatureParams, config: AnomalyFitConfig
) -> tuple[Pipeline, QuantileCalibrator, dict[str, float]]:
    """Fit scaler + Isolation Forest and the calibrator on ``txs`` (pure, no I/O).

    Raises:
        Unprocessable: fewer than ``MIN_TRAINING_ROWS`` money movements to learn from.
    """
    movements = [t for t in txs if t.status in _MONEY]
    if len(movements) < MIN_TRAINING_ROWS:
        raise Unprocessable(
            f"need at least {MIN_TRAINING_ROWS} stored transactions to fit an anomaly model, "
            f"found {len(movements)}",
            found=len(movements),
        )
    frame = feature_frame(movements, params=params)
    x = frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    estimator = Pipeline(
        [
            ("scaler", StandardScaler()),
            (
                "forest",
                IsolationForest(
                    n_estimators=config.n_estimators,
                    max_samples=min(config.max_samples, len(x)),
                    random_state=config.random_state,
                ),
            ),
        ]
    )
    estimator.fit(x)
    raw = -estimator.score_samples(x)
    calibrator = QuantileCalibrator.fit(
        raw, alert_rate=config.alert_rate, threshold=config.threshold
    )
    alerting = float(np.mean(calibrator.transform(raw) >= config.threshold))
    metrics = {
        "n_train": float(len(x)),
        "train_alert_rate": alerting,
        "target_alert_rate": config.alert_rate,
        "raw_score_cut": float(calibrator.cut),
    }
    return estimator, calibrator, metrics


async def fit_anomaly(
    store: Store,
    *,
    out_dir: Path,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    params: FeatureParams | None = None,
    config: AnomalyFitConfig | None = None,
    created_at: datetime | None = None,
) -> ModelRecord:
    """Fit an anomaly model on stored transactions, save the artifact, register the record.

    Args:
        store: where the history is read and the ``ModelRecord`` registered.
        out_dir: directory of the artifact file.
        tenant, since, until: which transactions to learn from (all by default).
        params: feature parameters (must match the scorers' ``features`` user_config).
        config: fit knobs.
        created_at: clock value for the version and record (default: now).

    Returns:
        The registered candidate record; ``artifact_uri`` is the path to put in the
        ``AnomalyScorer``'s ``user_config.model``.

    Raises:
        Unprocessable: not enough history to learn from.
    """
    params = params or FeatureParams()
    config = config or AnomalyFitConfig()
    created_at = created_at or utcnow()
    # The store keeps milliseconds; the returned record must equal the stored one.
    created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
    txs, _total = await store.transactions.search(
        tenant=tenant, since=since, until=until, limit=config.limit
    )
    estimator, calibrator, metrics = fit_isolation_forest(txs, params=params, config=config)
    digest = hashlib.blake2b("".join(sorted(t.id for t in txs)).encode(), digest_size=4).hexdigest()
    version = f"anomaly-{created_at:%Y%m%d%H%M%S}-{digest}"
    path = save_anomaly_artifact(
        out_dir / f"{version}.joblib", version=version, estimator=estimator, calibrator=calibrator
    )
    fit_params: dict[str, Any] = {
        "alert_rate": config.alert_rate,
        "threshold": config.threshold,
        "n_estimators": config.n_estimators,
        "max_samples": config.max_samples,
        "random_state": config.random_state,
        "timezone": params.timezone,
    }
    record = candidate_record(
        ANOMALY, version, path, metrics=metrics, params=fit_params, created_at=created_at
    )
    return await store.models.register(record)
