"""Feature drift: population stability index (PSI) of recent traffic against a model's
training data.

The baseline is computed when the model is trained and stored with it
(``ModelRecord.params["drift_baseline"]``): for every feature, the inner edges of 10 quantile bins
of the training values and the training share in each bin. A drift run bins recent traffic on
those same edges and computes ``PSI = sum((a - e) * ln(a / e))`` with shares floored at
``EPS = 1e-6`` (an empty bin would make it infinite). Levels: warning at ``PSI >= 0.10``,
critical at ``PSI >= 0.25``.

Recent traffic means transactions strictly after the end of the model's training data, so a
baseline is never compared with itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aml.domain import ModelRecord, ensure_utc, stable_id
from aml.errors import Unprocessable
from aml.features import FeatureParams
from storage.repositories.jobs import DriftRun
from storage.store import Store
from training.dataset_build import window_frame

BINS = 10
EPS = 1e-6
WARNING = 0.10
CRITICAL = 0.25
BASELINE_KEY = "drift_baseline"


def _bin_counts(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> Any:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def baseline(frame: pd.DataFrame, *, bins: int = BINS) -> dict[str, Any]:
    """Quantile-bin edges and training shares of every column of ``frame`` (the training rows).

    Tied quantiles collapse into one edge, so a binary feature gets two bins, not ten.
    """
    if len(frame) == 0:
        raise Unprocessable("cannot build a drift baseline from no rows")
    features: dict[str, dict[str, list[float]]] = {}
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=np.float64)
        edges = np.unique(np.quantile(values, probs))
        counts = _bin_counts(values, edges)
        features[str(column)] = {
            "edges": [float(e) for e in edges],
            "expected": [float(c) / len(values) for c in counts],
        }
    return {"bins": bins, "rows": len(frame), "features": features}


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI between two share vectors over the same bins (shares floored at ``EPS``)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float) -> str:
    if value >= CRITICAL:
        return "critical"
    if value >= WARNING:
        return "warning"
    return "ok"


def feature_psi(base: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI per baseline feature of the rows of ``frame``.

    Raises:
        Unprocessable: ``frame`` has no rows.
    """
    if len(frame) == 0:
        raise Unprocessable("no recent traffic to compare with the baseline")
    out: dict[str, float] = {}
    for name, spec in base["features"].items():
        if name not in frame.columns:
            continue
        edges = np.asarray(spec["edges"], dtype=np.float64)
        counts = _bin_counts(frame[name].to_numpy(dtype=np.float64), edges)
        out[name] = psi(spec["expected"], counts / len(frame))
    return out


def drift_run(
    record: ModelRecord,
    frame: pd.DataFrame,
    *,
    window_from: datetime,
    window_until: datetime,
    computed_at: datetime,
) -> DriftRun:
    """A drift run of ``record`` over the recent rows ``frame`` (pure).

    Raises:
        Unprocessable: the model has no stored baseline, or ``frame`` is empty.
    """
    base = record.params.get(BASELINE_KEY)
    if not base:
        raise Unprocessable("the model has no drift baseline", model_id=record.id)
    values = feature_psi(base, frame)
    levels = {k: level(v) for k, v in values.items()}
    worst = (
        "critical"
        if "critical" in levels.values()
        else "warning"
        if "warning" in levels.values()
        else "ok"
    )
    computed_at = computed_at.replace(microsecond=computed_at.microsecond // 1000 * 1000)
    return DriftRun(
        id=stable_id("drift", record.id, computed_at.isoformat()),
        model_id=record.id,
        model_kind=record.kind,
        model_version=record.version,
        computed_at=computed_at,
        window_from=window_from,
        window_until=window_until,
        rows=len(frame),
        psi=values,
        level=worst,
        warning=tuple(k for k, v in levels.items() if v == "warning"),
        critical=tuple(k for k, v in levels.items() if v == "critical"),
    )


def trained_until(record: ModelRecord) -> datetime | None:
    """End of the model's training data (stored with the baseline)."""
    raw = (record.params.get(BASELINE_KEY) or {}).get("until")
    return ensure_utc(datetime.fromisoformat(str(raw))) if raw else None


async def compute_drift(
    store: Store,
    *,
    kind: str,
    now: datetime,
    window: timedelta = timedelta(days=7),
    params: FeatureParams | None = None,
    tenant: str | None = None,
) -> DriftRun:
    """PSI of the champion's features over the last ``window`` of traffic, stored.

    The window starts no earlier than the end of the model's training data.

    Raises:
        Unprocessable: no champion, no baseline, or no traffic since training.
    """
    record = await store.models.get_champion(kind)
    if record is None:
        raise Unprocessable("no champion model to check for drift", kind=kind)
    since = now - window
    until_train = trained_until(record)
    if until_train is not None and until_train >= since:
        since = until_train + timedelta(milliseconds=1)
    if since >= now:
        raise Unprocessable("no traffic after the model's training data yet", kind=kind)
    frame = await window_frame(
        store, since=since, until=now, params=params or FeatureParams(), tenant=tenant
    )
    run = drift_run(record, frame, window_from=since, window_until=now, computed_at=now)
    return await store.drift.insert(run)
