"""Behavioural K-Means over credit features: a Ray Tune search, MLflow logging, a tier model.

Tune tries every ``k`` in a range and every named feature subset. Each trial scales the
features (``StandardScaler``, after a signed log of the money amounts whose tails would
otherwise decide the clusters), fits K-Means and measures:

* ``silhouette`` (on a sample, since it is quadratic in the number of clients), and
* ``stability``: mean adjusted Rand index between the fit and fits on bootstrap resamples with
  other seeds, so that a ``k`` that only fits noise loses.

The best trial by ``objective = (silhouette + stability) / 2`` is refitted and each cluster is
mapped to a tier by the mean rule-based score of its members (through the tier cut-offs). The
result is advisory: :meth:`CreditClusterModel.annotate` attaches it to a profile, and a cluster
tier more than one tier away from the rule tier sends requests to careful review.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.preprocessing import StandardScaler

from aml.credit.features import CREDIT_FEATURE_SET_VERSION, FEATURE_INDEX, FEATURE_NAMES
from aml.credit.score import TierPolicy, apply_cluster, feature_vector, is_scored
from aml.domain import CreditProfile, CreditTier, ModelRecord, ensure_utc, stable_id
from storage.store import Store
from training.tracking import default_tracking_uri as default_tracking_uri
from training.tracking import ensure_experiment, resolve_tracking_uri

EXPERIMENT = "credit-kmeans"
MONEY_FEATURES = frozenset(
    {
        "avg_monthly_deposits",
        "avg_monthly_withdrawals",
        "net_monthly_flow",
        "max_single_deposit",
        "max_single_withdrawal",
        "account_age_days",
        "days_since_last_fraud_alert",
    }
)
_BEHAVIOUR = (
    "avg_monthly_deposits",
    "deposit_consistency",
    "avg_monthly_withdrawals",
    "net_monthly_flow",
    "savings_rate",
    "transaction_frequency",
    "account_age_days",
    "loan_repayment_rate",
    "deposit_trend",
    "withdrawal_trend",
)
FEATURE_SUBSETS: dict[str, tuple[str, ...]] = {
    "all": FEATURE_NAMES,
    "behaviour": _BEHAVIOUR,
    "behaviour_transfers": (
        *_BEHAVIOUR,
        "unique_counterparties",
        "incoming_transfer_ratio",
        "outgoing_transfer_ratio",
        "round_trip_score",
    ),
}

FloatMatrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class KMeansSearch:
    """Search space and budget of the Tune job."""

    k_min: int = 3
    k_max: int = 8
    subsets: tuple[str, ...] = tuple(FEATURE_SUBSETS)
    bootstraps: int = 3
    silhouette_sample: int = 2_000
    n_init: int = 4
    seed: int = 42


def prepare(features: FloatMatrix, *, unknown_value: float = 0.5) -> FloatMatrix:
    """Model inputs from raw features (``FEATURE_NAMES`` order): unknown repayment rates take
    the scorer's neutral value; money amounts and day counts go through a signed log."""
    x = np.array(features, dtype=np.float64, copy=True)
    x[:, FEATURE_INDEX["loan_repayment_rate"]] = np.where(
        np.isnan(x[:, FEATURE_INDEX["loan_repayment_rate"]]),
        unknown_value,
        x[:, FEATURE_INDEX["loan_repayment_rate"]],
    )
    for name in MONEY_FEATURES:
        j = FEATURE_INDEX[name]
        x[:, j] = np.sign(x[:, j]) * np.log1p(np.abs(x[:, j]))
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _columns(subset: Sequence[str]) -> list[int]:
    return [FEATURE_INDEX[n] for n in subset]


def evaluate(x: FloatMatrix, *, k: int, subset: str, search: KMeansSearch) -> dict[str, float]:
    """Fit one candidate and measure silhouette and bootstrap stability (plain function)."""
    xs = StandardScaler().fit_transform(x[:, _columns(FEATURE_SUBSETS[subset])])
    base = KMeans(n_clusters=k, random_state=search.seed, n_init=search.n_init).fit(xs)
    labels = base.labels_
    sample = min(len(xs), search.silhouette_sample)
    sil = float(silhouette_score(xs, labels, sample_size=sample, random_state=search.seed))
    rng = np.random.default_rng(search.seed)
    aris = []
    for b in range(search.bootstraps):
        idx = rng.integers(0, len(xs), len(xs))
        other = KMeans(n_clusters=k, random_state=search.seed + b + 1, n_init=search.n_init)
        other.fit(xs[idx])
        aris.append(adjusted_rand_score(labels, other.predict(xs)))
    stability = float(np.mean(aris)) if aris else 1.0
    return {
        "silhouette": sil,
        "stability": stability,
        "objective": (sil + stability) / 2.0,
        "inertia": float(base.inertia_),
    }


def _trainable(params: dict[str, Any], x: FloatMatrix, search: KMeansSearch) -> None:
    from ray import tune

    tune.report(evaluate(x, k=int(params["k"]), subset=str(params["subset"]), search=search))


@dataclass
class CreditClusterModel:
    """A fitted clustering and its cluster-to-tier map."""

    feature_names: tuple[str, ...]
    scaler: StandardScaler
    kmeans: KMeans
    cluster_tiers: dict[int, CreditTier]
    cluster_mean_scores: dict[int, float]
    cluster_sizes: dict[int, int]
    metrics: dict[str, float]
    params: dict[str, Any]
    trained_at: datetime
    unknown_value: float = 0.5
    feature_set_version: str = CREDIT_FEATURE_SET_VERSION
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def version(self) -> str:
        return f"{EXPERIMENT}-{self.trained_at:%Y%m%dT%H%M%S}"

    def _inputs(self, features: FloatMatrix) -> FloatMatrix:
        x = prepare(features, unknown_value=self.unknown_value)
        return np.asarray(self.scaler.transform(x[:, _columns(self.feature_names)]))

    def predict_clusters(self, features: FloatMatrix) -> list[int]:
        """Cluster of each row of raw features (``FEATURE_NAMES`` order, NaN = unknown)."""
        return [int(c) for c in self.kmeans.predict(self._inputs(features))]

    def predict_cluster(self, features: Mapping[str, float | None]) -> int:
        """Cluster of one client's features (names as in ``CreditProfile.features``)."""
        return self.predict_clusters(np.asarray([feature_vector(features)]))[0]

    def predict_tier(self, features: Mapping[str, float | None]) -> CreditTier:
        """The tier the client's behavioural cluster suggests."""
        return self.cluster_tiers[self.predict_cluster(features)]

    def annotate(self, profile: CreditProfile) -> CreditProfile:
        """``profile`` with the cluster opinion (and the review flag when far apart)."""
        cluster = self.predict_cluster(profile.features)
        return apply_cluster(profile, cluster, self.cluster_tiers[cluster])

    def annotate_many(self, profiles: Sequence[CreditProfile]) -> list[CreditProfile]:
        """:meth:`annotate` for many profiles with one prediction call; profiles without a
        real score (too little history) are returned unchanged."""
        scored = [i for i, p in enumerate(profiles) if is_scored(p)]
        out = list(profiles)
        if not scored:
            return out
        x = np.asarray([feature_vector(profiles[i].features) for i in scored], dtype=np.float64)
        for i, cluster in zip(scored, self.predict_clusters(x), strict=True):
            out[i] = apply_cluster(profiles[i], cluster, self.cluster_tiers[cluster])
        return out

    def save(self, path: Path) -> Path:
        """Write the model with joblib."""
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @staticmethod
    def load(path: Path) -> CreditClusterModel:
        """Read a model written by :meth:`save`."""
        model = joblib.load(path)
        if not isinstance(model, CreditClusterModel):
            raise TypeError(f"{path} does not hold a credit cluster model")
        return model


def training_set(profiles: Sequence[CreditProfile]) -> tuple[FloatMatrix, FloatMatrix]:
    """Raw feature matrix and rule scores of the profiles that have a real score (clients with
    too little history are left out, as they carry no behaviour to cluster)."""
    kept = [p for p in profiles if is_scored(p)]
    x = np.asarray([feature_vector(p.features) for p in kept], dtype=np.float64)
    y = np.asarray([p.score for p in kept], dtype=np.float64)
    return x.reshape(len(kept), len(FEATURE_NAMES)), y


def fit_model(
    features: FloatMatrix,
    scores: FloatMatrix,
    *,
    k: int,
    subset: str,
    policy: TierPolicy,
    trained_at: datetime,
    search: KMeansSearch,
    metrics: Mapping[str, float] | None = None,
    unknown_value: float = 0.5,
) -> CreditClusterModel:
    """Fit the chosen configuration on all rows and map clusters to tiers by mean score."""
    names = FEATURE_SUBSETS[subset]
    x = prepare(features, unknown_value=unknown_value)[:, _columns(names)]
    scaler = StandardScaler().fit(x)
    km = KMeans(n_clusters=k, random_state=search.seed, n_init=max(10, search.n_init))
    labels = km.fit_predict(scaler.transform(x))
    means = {c: float(scores[labels == c].mean()) for c in range(k) if (labels == c).any()}
    return CreditClusterModel(
        feature_names=names,
        scaler=scaler,
        kmeans=km,
        cluster_tiers={c: policy.tier_for(m) for c, m in means.items()},
        cluster_mean_scores=means,
        cluster_sizes={c: int((labels == c).sum()) for c in range(k)},
        metrics=dict(metrics or {}),
        params={"k": k, "subset": subset, "n_clients": len(x)},
        trained_at=ensure_utc(trained_at),
        unknown_value=unknown_value,
    )


def _log_to_mlflow(model: CreditClusterModel, tracking_uri: str, data_dir: Path) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = ensure_experiment(client, EXPERIMENT, data_dir)
    run = client.create_run(exp_id, run_name=model.version)
    run_id = run.info.run_id
    stamp = int(model.trained_at.timestamp() * 1000)
    params = {
        **{k: str(v) for k, v in model.params.items()},
        "features": ",".join(model.feature_names),
        "feature_set_version": model.feature_set_version,
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in model.metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "credit_cluster.joblib"
        model.save(art)
        summary = Path(tmp) / "clusters.json"
        summary.write_text(
            json.dumps(
                {
                    str(c): {
                        "tier": model.cluster_tiers[c].value,
                        "mean_score": model.cluster_mean_scores[c],
                        "size": model.cluster_sizes[c],
                    }
                    for c in model.cluster_tiers
                },
                indent=2,
            )
        )
        trials = Path(tmp) / "trials.json"
        trials.write_text(json.dumps(model.trials, indent=2))
        for path in (art, summary, trials):
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return str(run_id)


def train_credit_clusters(
    profiles: Sequence[CreditProfile],
    *,
    trained_at: datetime,
    policy: TierPolicy | None = None,
    search: KMeansSearch | None = None,
    data_dir: Path = Path(".data"),
    tracking_uri: str | None = None,
    unknown_value: float = 0.5,
) -> tuple[CreditClusterModel, str]:
    """Search ``k`` and feature subsets with Ray Tune, refit the best and log it to MLflow.

    Args:
        profiles: current credit profiles (clients without a real score are left out).
        trained_at: the job's clock value (names the model version).
        policy: tier cut-offs used to map clusters to tiers (XAF defaults when omitted).
        search: search space and budget.
        data_dir: where Tune results and the default MLflow store live.
        tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI`` or SQLite under
            ``data_dir`` (see :mod:`training.tracking`).
        unknown_value: value of an unknown repayment rate (the scorer's neutral value).

    Returns:
        The model and its MLflow run id.

    Raises:
        ValueError: fewer clients than the largest ``k`` tried (times 5).
    """
    from ray import tune

    search = search or KMeansSearch()
    policy = policy or TierPolicy()
    features, scores = training_set(profiles)
    if len(features) < 5 * search.k_max:
        raise ValueError(
            f"need at least {5 * search.k_max} scored clients to cluster, got {len(features)}"
        )
    x = prepare(features, unknown_value=unknown_value)
    data_dir = data_dir.resolve()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trainable, x=x, search=search), {"cpu": 1}),
        param_space={
            "k": tune.grid_search(list(range(search.k_min, search.k_max + 1))),
            "subset": tune.grid_search(list(search.subsets)),
        },
        tune_config=tune.TuneConfig(metric="objective", mode="max"),
        run_config=tune.RunConfig(
            name=f"{EXPERIMENT}-{ensure_utc(trained_at):%Y%m%dT%H%M%S}",
            storage_path=str(data_dir / "ray_results"),
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result(metric="objective", mode="max")
    trials = [
        {
            "k": r.config["k"],
            "subset": r.config["subset"],
            **{m: r.metrics[m] for m in ("silhouette", "stability", "objective")},
        }
        for r in (results[i] for i in range(len(results)))
        if r.config and r.metrics and "objective" in r.metrics
    ]
    if best.config is None or best.metrics is None:
        raise RuntimeError("no K-Means trial finished")
    model = fit_model(
        features,
        scores,
        k=int(best.config["k"]),
        subset=str(best.config["subset"]),
        policy=policy,
        trained_at=trained_at,
        search=search,
        metrics={m: float(best.metrics[m]) for m in ("silhouette", "stability", "objective")},
        unknown_value=unknown_value,
    )
    model.trials = trials
    uri = tracking_uri or resolve_tracking_uri(data_dir)
    run_id = _log_to_mlflow(model, uri, data_dir)
    return model, run_id


log = logging.getLogger(__name__)

CLUSTER_MODEL_KIND = "credit_kmeans"


async def publish_clusters(
    store: Store, model: CreditClusterModel, *, models_dir: Path, run_id: str | None = None
) -> ModelRecord:
    """Save the clustering, register it and make it the champion the request path and the
    nightly batch use (clusters are advisory: there is no gate, the newest fit serves)."""
    path = model.save(models_dir / f"{model.version}.joblib")
    record = await store.models.register(
        ModelRecord(
            id=stable_id("model", CLUSTER_MODEL_KIND, model.version),
            kind=CLUSTER_MODEL_KIND,
            version=model.version,
            feature_set_version=model.feature_set_version,
            features=tuple(model.feature_names),
            metrics=dict(model.metrics),
            artifact_uri=str(path.resolve()),
            stage="candidate",
            created_at=model.trained_at,
            params={**model.params, **({"mlflow_run_id": run_id} if run_id else {})},
        )
    )
    return await store.models.set_stage(record.id, stage="champion")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> CreditClusterModel:
    # The modification time is part of the key so that a replaced artifact is read again.
    return CreditClusterModel.load(Path(path))


async def load_champion_clusters(store: Store) -> CreditClusterModel | None:
    """The champion clustering, or None when none was published or its file is unusable.

    Clusters are advisory, so an unreadable artifact is logged and scoring goes on without it.
    """
    record = await store.models.get_champion(CLUSTER_MODEL_KIND)
    if record is None:
        return None
    path = Path(record.artifact_uri.removeprefix("file://"))
    try:
        mtime = path.stat().st_mtime_ns
        return await asyncio.to_thread(_load_cached, str(path), mtime)
    except (OSError, TypeError, ValueError) as exc:
        log.warning("credit cluster model %s not usable: %s", record.version, exc)
        return None


async def train_and_publish(
    store: Store, *, tenant: str, now: datetime, data_dir: Path
) -> tuple[ModelRecord, str]:
    """Fit the clustering on the tenant's stored profiles (Ray Tune) and publish it.

    Raises:
        ValueError: too few scored profiles to cluster.
    """
    profiles: list[CreditProfile] = []
    skip = 0
    while True:
        page, total = await store.credit_profiles.list_(tenant=tenant, skip=skip, limit=5_000)
        profiles.extend(page)
        skip += len(page)
        if not page or skip >= total:
            break
    model, run_id = await asyncio.to_thread(
        train_credit_clusters, profiles, trained_at=now, data_dir=data_dir
    )
    record = await publish_clusters(store, model, models_dir=data_dir / "models", run_id=run_id)
    return record, run_id
