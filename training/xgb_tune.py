"""Supervised XGBoost: Ray Tune search with ASHA over boosting rounds, one test evaluation,
a logistic-regression baseline, MLflow logging and registration.

Every trial trains on the time-ordered training split with ``nthread=1`` and reports validation
AUPRC every ``report_every`` rounds; ASHA stops the weak trials early. The best trial is retrained
with its best round count and evaluated exactly once on the test split (AUPRC, ROC-AUC and the
minority-class F1 at the threshold that maximises F1 on validation). A scaled, class-balanced
logistic regression trained on the same split in the same run says what the boosting buys.

:func:`run_xgboost` is the pure part (arrays in, models and numbers out; used by the bench with
extra columns); :func:`publish_xgboost` writes the artifact ``serve.scoring.models.load_model``
reads, logs the trials (nested runs) and the final model to MLflow, registers it in the MLflow
model registry and stores a candidate :class:`~aml.domain.ModelRecord`.
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

from aml.domain import ModelRecord, stable_id
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from serve.scoring.models import XGBOOST
from storage.store import Store
from training.candidates import candidate_record
from training.dataset_build import DatasetSplit, LabelledSet
from training.drift import BASELINE_KEY, baseline
from training.tracking import Tracker

EXPERIMENT = "xgboost"
REGISTERED_MODEL = "fineract-aml-xgboost"
METRIC = "val_auprc"

Progress = Callable[[str], None]
Vector = npt.NDArray[np.float64]


# --- evaluation ------------------------------------------------------------------------------


def best_f1_threshold(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The score threshold maximising minority-class F1 on ``(y, scores)`` (validation)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(np.asarray(y), np.asarray(scores))
    if len(thresholds) == 0:
        return 0.5
    p, r = precision[:-1], recall[:-1]
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(
    y: npt.ArrayLike, scores: npt.ArrayLike, *, threshold: float
) -> dict[str, float]:
    """AUPRC, ROC-AUC and minority-class precision/recall/F1 at ``threshold``.

    AUPRC and ROC-AUC are NaN when ``y`` holds a single class (they are undefined there).
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    yy = np.asarray(y).astype(int)
    ss = np.asarray(scores, dtype=np.float64)
    pred = (ss >= threshold).astype(int)
    both = len(np.unique(yy)) == 2
    tp = int(((pred == 1) & (yy == 1)).sum())
    return {
        "auprc": float(average_precision_score(yy, ss)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(yy, ss)) if both else float("nan"),
        "f1": float(f1_score(yy, pred, zero_division=0)),
        "precision": tp / max(int(pred.sum()), 1),
        "recall": tp / max(int(yy.sum()), 1),
        "threshold": float(threshold),
        "positives": float(yy.sum()),
        "rows": float(len(yy)),
    }


# --- search ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class XGBSearch:
    """Budget and search space bounds of the Tune job.

    Attributes:
        num_samples: trials.
        max_rounds: most boosting rounds of a trial (ASHA's ``max_t``).
        report_every: rounds between validation reports (ASHA's time unit).
        grace_rounds: rounds every trial gets before ASHA may stop it.
        cpus_per_trial: Ray resource request per trial (the trial itself uses one thread).
        seed: seed of the search and of every booster.
    """

    num_samples: int = 16
    max_rounds: int = 300
    report_every: int = 10
    grace_rounds: int = 30
    cpus_per_trial: float = 1.0
    seed: int = 0


def search_space(search: XGBSearch) -> dict[str, Any]:
    """Tune distributions of the XGBoost hyper-parameters."""
    from ray import tune

    return {
        "max_depth": tune.randint(2, 9),
        "learning_rate": tune.loguniform(0.01, 0.3),
        "n_estimators": tune.qrandint(
            max(search.report_every, search.grace_rounds), search.max_rounds, search.report_every
        ),
        "min_child_weight": tune.loguniform(0.5, 20.0),
        "subsample": tune.uniform(0.5, 1.0),
        "colsample_bytree": tune.uniform(0.5, 1.0),
        "reg_alpha": tune.loguniform(1e-3, 10.0),
        "reg_lambda": tune.loguniform(1e-2, 10.0),
        # Multiplies neg/pos: the full ratio over-weights positives at 1:2000 imbalance.
        "scale_pos_weight_mult": tune.loguniform(0.05, 1.0),
    }


def booster_params(config: Mapping[str, Any], y_train: npt.ArrayLike, seed: int) -> dict[str, Any]:
    """XGBoost training parameters of a Tune config (one thread: Tune runs trials in parallel)."""
    y = np.asarray(y_train)
    pos = max(int(y.sum()), 1)
    neg = max(len(y) - pos, 1)
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "nthread": 1,
        "seed": seed,
        "max_depth": int(config["max_depth"]),
        "eta": float(config["learning_rate"]),
        "min_child_weight": float(config["min_child_weight"]),
        "subsample": float(config["subsample"]),
        "colsample_bytree": float(config["colsample_bytree"]),
        "alpha": float(config["reg_alpha"]),
        "lambda": float(config["reg_lambda"]),
        "scale_pos_weight": neg / pos * float(config["scale_pos_weight_mult"]),
    }


def _trainable(
    config: dict[str, Any], data: Mapping[str, Any], search: XGBSearch
) -> None:  # pragma: no cover - runs inside Tune workers
    import xgboost as xgb
    from ray import tune
    from sklearn.metrics import average_precision_score

    names = list(data["columns"])
    dtrain = xgb.DMatrix(data["x_train"], label=data["y_train"], feature_names=names)
    dval = xgb.DMatrix(data["x_val"], feature_names=names)
    params = booster_params(config, data["y_train"], search.seed)
    booster = None
    rounds = 0
    total = int(config["n_estimators"])
    while rounds < total:
        step = min(search.report_every, total - rounds)
        booster = xgb.train(params, dtrain, num_boost_round=step, xgb_model=booster)
        rounds += step
        ap = float(average_precision_score(data["y_val"], booster.predict(dval)))
        tune.report({METRIC: ap, "rounds": rounds})


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    config: dict[str, Any]
    best_val_auprc: float
    best_rounds: int
    rounds_run: int


@dataclass
class XGBRun:
    """Everything one training run produced (before anything is written)."""

    booster: Any
    columns: tuple[str, ...]
    best_config: dict[str, Any]
    best_rounds: int
    threshold: float
    validation: dict[str, float]
    test: dict[str, float]
    baseline_test: dict[str, float]
    baseline_validation: dict[str, float]
    trials: list[TrialSummary]
    tune_seconds: float
    dataset: dict[str, Any] = field(default_factory=dict)
    drift_baseline: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for the registry and MLflow (test metrics unprefixed: the gate's)."""
        out = {k: v for k, v in self.test.items() if k not in ("positives", "rows")}
        out |= {f"val_{k}": v for k, v in self.validation.items() if k in ("auprc", "f1")}
        out |= {f"baseline_{k}": v for k, v in self.baseline_test.items() if k in _HEADLINE}
        out |= {"tune_seconds": self.tune_seconds, "trials": float(len(self.trials))}
        return out


_HEADLINE = ("auprc", "roc_auc", "f1")


def _require_both_classes(part: LabelledSet, name: str) -> None:
    if len(np.unique(part.labels)) < 2:
        raise Unprocessable(
            f"the {name} split needs both labels to tune on AUPRC "
            f"(rows {len(part)}, positives {int(part.labels.sum())})",
            split=name,
        )


def tune_search(
    split: DatasetSplit,
    *,
    search: XGBSearch,
    storage_path: Path,
    name: str,
    progress: Progress | None = None,
) -> tuple[list[TrialSummary], float]:
    """Run the Tune search; return every trial's summary and the wall time in seconds."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    data = {
        "x_train": split.train.x,
        "y_train": split.train.labels,
        "x_val": split.validation.x,
        "y_val": split.validation.labels,
        "columns": tuple(split.train.frame.columns),
    }
    say = progress or (lambda _msg: None)

    class _Report(tune.Callback):
        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **_: Any
        ) -> None:
            result = trial.last_result or {}
            say(
                f"trial {trial.trial_id}: rounds {result.get('rounds')} "
                f"val AUPRC {result.get(METRIC, float('nan')):.4f}"
            )

    scheduler = ASHAScheduler(
        time_attr="rounds",
        max_t=search.max_rounds,
        grace_period=search.grace_rounds,
        reduction_factor=3,
    )
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_trainable, data=data, search=search),
            {"cpu": search.cpus_per_trial},
        ),
        param_space=search_space(search),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=search.num_samples,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=search.seed),
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage_path), verbose=0, callbacks=[_Report()]
        ),
    )
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    trials: list[TrialSummary] = []
    for i in range(len(results)):
        r = results[i]
        df = r.metrics_dataframe
        if r.config is None or df is None or METRIC not in df or df.empty:
            continue
        best = int(df[METRIC].to_numpy().argmax())
        trials.append(
            TrialSummary(
                trial_id=str(r.metrics.get("trial_id", i)) if r.metrics else str(i),
                config=dict(r.config),
                best_val_auprc=float(df[METRIC].iloc[best]),
                best_rounds=int(df["rounds"].iloc[best]),
                rounds_run=int(df["rounds"].max()),
            )
        )
    if not trials:
        raise RuntimeError("no XGBoost trial reported a result")
    return trials, elapsed


def fit_booster(part: LabelledSet, config: Mapping[str, Any], rounds: int, seed: int) -> Any:
    """Train one booster on ``part`` with a Tune config for ``rounds`` rounds."""
    import xgboost as xgb

    dtrain = xgb.DMatrix(part.x, label=part.labels, feature_names=list(part.frame.columns))
    return xgb.train(booster_params(config, part.labels, seed), dtrain, num_boost_round=rounds)


def predict(booster: Any, part: LabelledSet) -> Vector:
    import xgboost as xgb

    dm = xgb.DMatrix(part.x, feature_names=list(part.frame.columns))
    return np.asarray(booster.predict(dm), dtype=np.float64)


def fit_baseline(split: DatasetSplit) -> tuple[dict[str, float], dict[str, float]]:
    """StandardScaler + class-balanced logistic regression: (validation, test) metrics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000)
    )
    model.fit(split.train.x, split.train.labels)
    val = model.predict_proba(split.validation.x)[:, 1]
    threshold = best_f1_threshold(split.validation.labels, val)
    test = model.predict_proba(split.test.x)[:, 1]
    return (
        classification_metrics(split.validation.labels, val, threshold=threshold),
        classification_metrics(split.test.labels, test, threshold=threshold),
    )


def run_xgboost(
    split: DatasetSplit,
    *,
    search: XGBSearch,
    storage_path: Path,
    name: str,
    progress: Progress | None = None,
) -> XGBRun:
    """Tune, retrain the best trial, evaluate once on test, fit the baseline (no writes but
    Tune's own results under ``storage_path``).

    Raises:
        Unprocessable: the training or validation split lacks one of the classes.
    """
    _require_both_classes(split.train, "train")
    _require_both_classes(split.validation, "validation")
    say = progress or (lambda _msg: None)
    trials, seconds = tune_search(
        split, search=search, storage_path=storage_path, name=name, progress=say
    )
    best = max(trials, key=lambda t: t.best_val_auprc)
    say(f"best trial {best.trial_id}: val AUPRC {best.best_val_auprc:.4f} at {best.best_rounds}")
    booster = fit_booster(split.train, best.config, best.best_rounds, search.seed)
    val_scores = predict(booster, split.validation)
    threshold = best_f1_threshold(split.validation.labels, val_scores)
    validation = classification_metrics(split.validation.labels, val_scores, threshold=threshold)
    test = classification_metrics(
        split.test.labels, predict(booster, split.test), threshold=threshold
    )
    baseline_val, baseline_test = fit_baseline(split)
    say(
        f"test AUPRC {test['auprc']:.4f} F1 {test['f1']:.4f} "
        f"(baseline AUPRC {baseline_test['auprc']:.4f} F1 {baseline_test['f1']:.4f})"
    )
    return XGBRun(
        booster=booster,
        columns=tuple(split.train.frame.columns),
        best_config=best.config,
        best_rounds=best.best_rounds,
        threshold=threshold,
        validation=validation,
        test=test,
        baseline_test=baseline_test,
        baseline_validation=baseline_val,
        trials=trials,
        tune_seconds=seconds,
        dataset=split.summary(),
        drift_baseline={
            **baseline(split.train.frame),
            "until": split.test.occurred_at.max().isoformat(),
        },
    )


# --- publishing ------------------------------------------------------------------------------


def save_xgboost_artifact(directory: Path, *, version: str, booster: Any) -> Path:
    """Write the booster and its manifest (the form ``load_model`` reads); return the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / "model.json"))
    manifest = {
        "kind": XGBOOST,
        "version": version,
        "features": list(FEATURE_NAMES),
        "feature_set_version": FEATURE_SET_VERSION,
        "path": "model.json",
    }
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


async def publish_xgboost(
    run: XGBRun,
    *,
    store: Store,
    data_dir: Path,
    created_at: datetime,
    tracking_uri: str | None = None,
) -> ModelRecord:
    """Save the artifact, log trials and model to MLflow, register it, store the record.

    Raises:
        Unprocessable: the model was trained on other columns than ``FEATURE_NAMES``.
    """
    if run.columns != FEATURE_NAMES:
        raise Unprocessable("only models over FEATURE_NAMES can be published", columns=run.columns)
    created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
    digest = stable_id(json.dumps(run.dataset, sort_keys=True, default=str))[:8]
    version = f"xgboost-{created_at:%Y%m%dT%H%M%S}-{digest}"
    manifest = save_xgboost_artifact(
        data_dir / "models" / version, version=version, booster=run.booster
    )

    tracker = Tracker.open(data_dir, EXPERIMENT, tracking_uri=tracking_uri)
    params = {
        **run.best_config,
        "best_rounds": run.best_rounds,
        "threshold": run.threshold,
        "feature_set_version": FEATURE_SET_VERSION,
        "features": ",".join(FEATURE_NAMES),
    }
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "dataset.json"
        summary.write_text(json.dumps(run.dataset, indent=2, default=str))
        features = Path(tmp) / "features.json"
        features.write_text(
            json.dumps(
                {"feature_set_version": FEATURE_SET_VERSION, "features": list(FEATURE_NAMES)}
            )
        )
        parent = tracker.log_run(
            run_name=version,
            params=params,
            metrics=_finite(run.metrics()),
            tags={"kind": XGBOOST, "feature_set_version": FEATURE_SET_VERSION},
            artifacts=[manifest.parent, summary, features],
            at=created_at,
            finish=False,
        )
    for trial in run.trials:
        tracker.log_run(
            run_name=f"trial-{trial.trial_id}",
            params=trial.config,
            metrics={
                "best_val_auprc": trial.best_val_auprc,
                "best_rounds": trial.best_rounds,
                "rounds_run": trial.rounds_run,
            },
            parent_run_id=parent,
            at=created_at,
        )
    tracker.log_run(
        run_name="baseline-logistic-regression",
        params={"model": "StandardScaler+LogisticRegression", "class_weight": "balanced"},
        metrics=_finite({f"test_{k}": v for k, v in run.baseline_test.items()}),
        parent_run_id=parent,
        at=created_at,
    )
    tracker.client.set_terminated(parent)
    source = f"{tracker.artifact_uri(parent)}/{manifest.parent.name}"
    registry_version = tracker.register(
        REGISTERED_MODEL, run_id=parent, source=source, tags={"version": version}
    )
    record = candidate_record(
        XGBOOST,
        version,
        manifest,
        metrics=_finite(run.metrics()),
        created_at=created_at,
        params={
            **run.best_config,
            "best_rounds": run.best_rounds,
            "threshold": run.threshold,
            "mlflow_run_id": parent,
            "registered_model": REGISTERED_MODEL,
            "registry_version": registry_version,
            "dataset": run.dataset,
            BASELINE_KEY: run.drift_baseline,
        },
    )
    return await store.models.register(record)
