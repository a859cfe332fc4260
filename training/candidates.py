"""The model record every trainer of the transaction feature set registers as a candidate."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aml.domain import ModelRecord, stable_id
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION


def candidate_record(
    kind: str,
    version: str,
    artifact: Path,
    *,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    created_at: datetime,
) -> ModelRecord:
    """A candidate of ``kind`` trained on the current feature set, ready for registration.

    Args:
        kind: Scorer kind (``anomaly``, ``xgboost``); with ``version`` it makes the stable id.
        version: Model version.
        artifact: Saved artifact; recorded as an absolute path so any process can load it.
        metrics: Evaluation metrics.
        params: Training parameters, threshold and tracking references.
        created_at: When it was trained.

    Returns:
        The record in stage ``candidate``.
    """
    return ModelRecord(
        id=stable_id("model", kind, version),
        kind=kind,
        version=version,
        feature_set_version=FEATURE_SET_VERSION,
        features=FEATURE_NAMES,
        metrics=metrics,
        artifact_uri=str(artifact.resolve()),
        stage="candidate",
        created_at=created_at,
        params=params,
    )
