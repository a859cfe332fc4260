"""Isolation Forest on Ray Tune: trees, sample size, contamination and feature subsets.

A model must take the full ``FEATURE_NAMES`` vector (the scorer feeds it, and ``load_model``
refuses any other list), so a feature subset is a column-selecting first step inside the
estimator pipeline: ``ColumnSelector -> StandardScaler -> IsolationForest``.

Selection: by validation AUPRC of the raw anomaly score where the later, held-out rows carry
labels of both classes; otherwise by *stability*, the mean Spearman rank correlation between the
fit's scores and those of refits on bootstrap resamples (a configuration whose ranking changes
with the sample is fitting noise). ``contamination`` only moves scikit-learn's own decision
offset; the score the product uses is calibrated with :class:`aml.calibration.QuantileCalibrator`
on the training scores so that the configured alert rate holds.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from aml.calibration import QuantileCalibrator
from aml.domain import ModelRecord, stable_id
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from serve.scoring.models import ANOMALY, save_anomaly_artifact
from storage.store import Store
from training.candidates import candidate_record
from training.drift import BASELINE_KEY, baseline
from training.tracking import Tracker

EXPERIMENT = "anomaly"
REGISTERED_MODEL = "fineract-aml-anomaly"
Matrix = npt.NDArray[np.float64]
Progress = Callable[[str], None]

_TIME = ("hour_sin", "hour_cos", "day_of_week", "is_weekend", "is_night")
_AMOUNT_VELOCITY = (
    "amount_log",
    "tx_count_1h",
    "tx_count_24h",
    "total_amount_24h",
    "amount_vs_avg_ratio",
    "amount_vs_7d_avg_ratio",
    "amount_vs_max_7d",
    "tx_velocity_trend",
    "unique_counterparties_24h",
    "inflow_24h",
    "outflow_24h",
    "minutes_since_last_tx",
)
FEATURE_SUBSETS: dict[str, tuple[str, ...]] = {
    "all": FEATURE_NAMES,
    "no_time": tuple(f for f in FEATURE_NAMES if f not in _TIME),
    "amount_velocity": _AMOUNT_VELOCITY,
}


class ColumnSelector(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Keeps the given column positions of a ``FEATURE_NAMES`` matrix."""

    def __init__(self, columns: tuple[int, ...] = ()) -> None:
        self.columns = columns

    def fit(self, x: Matrix, y: Any = None) -> ColumnSelector:
        return self

    def transform(self, x: Matrix) -> Matrix:
        return np.asarray(x)[:, list(self.columns)] if self.columns else np.asarray(x)


def make_estimator(config: Mapping[str, Any], *, seed: int, n_rows: int) -> Pipeline:
    """The pipeline of one configuration (``subset``, ``n_estimators``, ``max_samples``,
    ``contamination``)."""
    names = FEATURE_SUBSETS[str(config["subset"])]
    columns = tuple(FEATURE_NAMES.index(n) for n in names)
    contamination = config.get("contamination", "auto")
    return Pipeline(
        [
            ("select", ColumnSelector(columns)),
            ("scaler", StandardScaler()),
            (
                "forest",
                IsolationForest(
                    n_estimators=int(config["n_estimators"]),
                    max_samples=min(int(config["max_samples"]), n_rows),
                    contamination=contamination
                    if contamination == "auto"
                    else float(contamination),
                    random_state=seed,
                ),
            ),
        ]
    )


def raw_scores(estimator: Pipeline, x: Matrix) -> Matrix:
    """Higher = more anomalous (``-score_samples``)."""
    return -np.asarray(estimator.score_samples(x), dtype=np.float64)


def stability(
    config: Mapping[str, Any], x: Matrix, *, seed: int, bootstraps: int = 3, sample: int = 2000
) -> float:
    """Mean Spearman correlation of scores between the fit and bootstrap refits."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    probe = x[rng.choice(len(x), size=min(sample, len(x)), replace=False)]
    base = raw_scores(make_estimator(config, seed=seed, n_rows=len(x)).fit(x), probe)
    corr = []
    for b in range(bootstraps):
        idx = rng.integers(0, len(x), len(x))
        other = make_estimator(config, seed=seed + b + 1, n_rows=len(x)).fit(x[idx])
        rho = spearmanr(base, raw_scores(other, probe)).statistic
        corr.append(float(rho) if np.isfinite(rho) else 0.0)
    return float(np.mean(corr))


def evaluate(config: Mapping[str, Any], data: Mapping[str, Any], *, seed: int) -> dict[str, float]:
    """One trial: AUPRC on labelled held-out rows when possible, else stability."""
    from sklearn.metrics import average_precision_score

    x = data["x_train"]
    y_val = data.get("y_val")
    if y_val is not None and len(np.unique(y_val)) == 2:
        est = make_estimator(config, seed=seed, n_rows=len(x)).fit(x)
        ap = float(average_precision_score(y_val, raw_scores(est, data["x_val"])))
        return {"objective": ap, "auprc": ap}
    st = stability(config, x, seed=seed)
    return {"objective": st, "stability": st}


def _trainable(
    config: dict[str, Any], data: Mapping[str, Any], seed: int
) -> None:  # pragma: no cover
    from ray import tune

    tune.report(evaluate(config, data, seed=seed))


@dataclass(frozen=True, kw_only=True)
class AnomalySearch:
    n_estimators: tuple[int, ...] = (100, 200)
    max_samples: tuple[int, ...] = (128, 256, 512)
    contamination: tuple[str | float, ...] = ("auto",)
    subsets: tuple[str, ...] = tuple(FEATURE_SUBSETS)
    cpus_per_trial: float = 1.0
    seed: int = 0
    alert_rate: float = 0.005
    threshold: float = 0.5


@dataclass
class AnomalyRun:
    estimator: Pipeline
    calibrator: QuantileCalibrator
    config: dict[str, Any]
    selected_by: str
    metrics: dict[str, float]
    trials: list[dict[str, Any]]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    tune_seconds: float
    dataset: dict[str, Any] = field(default_factory=dict)
    drift_baseline: dict[str, Any] = field(default_factory=dict)


def run_anomaly(
    x_train: Matrix,
    *,
    search: AnomalySearch,
    storage_path: Path,
    name: str,
    x_val: Matrix | None = None,
    y_val: npt.NDArray[np.int64] | None = None,
    progress: Progress | None = None,
    trained_until: str | None = None,
) -> AnomalyRun:
    """Grid-search the configurations on Tune, refit the best, calibrate it (no writes but
    Tune's results under ``storage_path``).

    Raises:
        Unprocessable: fewer than 200 training rows.
    """
    from ray import tune

    if len(x_train) < 200:
        raise Unprocessable("need at least 200 rows to fit an anomaly model", rows=len(x_train))
    say = progress or (lambda _m: None)
    data: dict[str, Any] = {"x_train": x_train, "x_val": x_val, "y_val": y_val}
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_trainable, data=data, seed=search.seed),
            {"cpu": search.cpus_per_trial},
        ),
        param_space={
            "n_estimators": tune.grid_search(list(search.n_estimators)),
            "max_samples": tune.grid_search(list(search.max_samples)),
            "contamination": tune.grid_search(list(search.contamination)),
            "subset": tune.grid_search(list(search.subsets)),
        },
        tune_config=tune.TuneConfig(metric="objective", mode="max"),
        run_config=tune.RunConfig(name=name, storage_path=str(storage_path), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    seconds = time.perf_counter() - started
    trials = []
    for i in range(len(results)):
        r = results[i]
        if r.config and r.metrics and "objective" in r.metrics:
            trials.append({**r.config, "objective": float(r.metrics["objective"])})
            say(f"trial {i}: {r.config} objective {r.metrics['objective']:.4f}")
    if not trials:
        raise RuntimeError("no anomaly trial finished")
    best = max(trials, key=lambda t: t["objective"])
    config = {k: best[k] for k in ("n_estimators", "max_samples", "contamination", "subset")}
    selected_by = "auprc" if y_val is not None and len(np.unique(y_val)) == 2 else "stability"
    estimator = make_estimator(config, seed=search.seed, n_rows=len(x_train)).fit(x_train)
    train_raw = raw_scores(estimator, x_train)
    calibrator = QuantileCalibrator.fit(
        train_raw, alert_rate=search.alert_rate, threshold=search.threshold
    )
    metrics = {
        selected_by: float(best["objective"]),
        "train_alert_rate": float(np.mean(calibrator.transform(train_raw) >= search.threshold)),
        "target_alert_rate": search.alert_rate,
        "n_train": float(len(x_train)),
        "tune_seconds": seconds,
    }
    say(f"best {config} by {selected_by}: {best['objective']:.4f}")
    std = x_train.std(axis=0)
    import pandas as pd

    frame = pd.DataFrame(x_train, columns=list(FEATURE_NAMES))
    return AnomalyRun(
        estimator=estimator,
        calibrator=calibrator,
        config=config,
        selected_by=selected_by,
        metrics=metrics,
        trials=trials,
        center=tuple(float(v) for v in x_train.mean(axis=0)),
        scale=tuple(float(v) if v > 0 else 1.0 for v in std),
        tune_seconds=seconds,
        drift_baseline={**baseline(frame), "until": trained_until},
    )


async def publish_anomaly(
    run: AnomalyRun,
    *,
    store: Store,
    data_dir: Path,
    created_at: datetime,
    tracking_uri: str | None = None,
) -> ModelRecord:
    """Save the artifact, log it (and the trials as nested runs) to MLflow, register it in the
    MLflow registry and store a candidate record."""
    created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
    digest = stable_id(json.dumps(run.config, sort_keys=True), run.metrics.get("n_train"))[:8]
    version = f"anomaly-{created_at:%Y%m%dT%H%M%S}-{digest}"
    path = save_anomaly_artifact(
        data_dir / "models" / f"{version}.joblib",
        version=version,
        estimator=run.estimator,
        calibrator=run.calibrator,
        # The scaler sees a column subset: the explanation baseline must cover every feature.
        extra={"center": list(run.center), "scale": list(run.scale)},
    )
    tracker = Tracker.open(data_dir, EXPERIMENT, tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        features = Path(tmp) / "features.json"
        features.write_text(
            json.dumps({"feature_set_version": FEATURE_SET_VERSION, "features": FEATURE_NAMES})
        )
        calibration = Path(tmp) / "calibration.json"
        calibration.write_text(json.dumps(run.calibrator.to_dict()))
        parent = tracker.log_run(
            run_name=version,
            params={**run.config, "selected_by": run.selected_by},
            metrics=run.metrics,
            tags={"kind": ANOMALY, "feature_set_version": FEATURE_SET_VERSION},
            artifacts=[path, features, calibration],
            at=created_at,
            finish=False,
        )
    for i, trial in enumerate(run.trials):
        tracker.log_run(
            run_name=f"trial-{i}",
            params={k: v for k, v in trial.items() if k != "objective"},
            metrics={"objective": trial["objective"]},
            parent_run_id=parent,
            at=created_at,
        )
    tracker.client.set_terminated(parent)
    source = f"{tracker.artifact_uri(parent)}/{path.name}"
    registry_version = tracker.register(REGISTERED_MODEL, run_id=parent, source=source)
    record = candidate_record(
        ANOMALY,
        version,
        path,
        metrics=run.metrics,
        created_at=created_at,
        params={
            **run.config,
            "selected_by": run.selected_by,
            "threshold": run.calibrator.threshold,
            "mlflow_run_id": parent,
            "registered_model": REGISTERED_MODEL,
            "registry_version": registry_version,
            BASELINE_KEY: run.drift_baseline,
        },
    )
    return await store.models.register(record)
