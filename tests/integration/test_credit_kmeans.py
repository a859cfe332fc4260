"""K-Means credit tiers: Ray Tune search on a real local Ray, logged to a local MLflow store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from aml.credit.score import TIER_ORDER, CreditConfig, TierPolicy, profiles_from_columns
from aml.domain import CreditTier
from bench.credit_scale import AS_OF, SyntheticClients
from storage.store import Store
from training.credit_kmeans import (
    CLUSTER_MODEL_KIND,
    EXPERIMENT,
    CreditClusterModel,
    KMeansSearch,
    default_tracking_uri,
    load_champion_clusters,
    train_and_publish,
    train_credit_clusters,
)

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_tune_search_picks_a_model_maps_tiers_and_logs_to_mlflow(tmp_path: Path) -> None:
    cols = SyntheticClients(600, chunk_size=600, seed=3).load(0)
    profiles = profiles_from_columns(cols, tenant="t", as_of=AS_OF, config=CreditConfig())
    search = KMeansSearch(k_min=3, k_max=4, subsets=("behaviour", "all"), bootstraps=2)
    trained_at = datetime(2026, 7, 2, 3, 0, tzinfo=UTC)
    model, run_id = train_credit_clusters(
        profiles, trained_at=trained_at, search=search, data_dir=tmp_path
    )

    assert len(model.trials) == 4
    best = max(model.trials, key=lambda t: t["objective"])
    assert model.params["k"] == best["k"] and model.params["subset"] == best["subset"]
    assert 0.0 < model.metrics["stability"] <= 1.0
    assert set(model.cluster_tiers) == set(range(model.params["k"]))
    policy = TierPolicy()
    for cluster, mean in model.cluster_mean_scores.items():
        assert model.cluster_tiers[cluster] is policy.tier_for(mean)
    # Better clusters never map to worse tiers.
    ordered = sorted(model.cluster_mean_scores, key=model.cluster_mean_scores.__getitem__)
    ranks = [TIER_ORDER.index(model.cluster_tiers[c]) for c in ordered]
    assert ranks == sorted(ranks, reverse=True)

    tiers = [model.predict_tier(p.features) for p in profiles[:50]]
    assert all(isinstance(t, CreditTier) for t in tiers)
    annotated = model.annotate(profiles[0])
    assert annotated.cluster_tier is tiers[0]
    assert annotated.score == profiles[0].score and annotated.tier is profiles[0].tier

    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    run = client.get_run(run_id)
    assert run.data.params["k"] == str(model.params["k"])
    assert run.data.metrics["objective"] == pytest.approx(model.metrics["objective"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None and run.info.experiment_id == exp.experiment_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"credit_cluster.joblib", "clusters.json", "trials.json"} <= names
    local = client.download_artifacts(run_id, "credit_cluster.joblib", str(tmp_path / "dl"))
    loaded = CreditClusterModel.load(Path(local))
    assert [loaded.predict_tier(p.features) for p in profiles[:50]] == tiers


def test_too_few_clients_is_refused(tmp_path: Path) -> None:
    cols = SyntheticClients(20, chunk_size=20).load(0)
    profiles = profiles_from_columns(cols, tenant="t", as_of=AS_OF, config=CreditConfig())
    with pytest.raises(ValueError, match="scored clients"):
        train_credit_clusters(
            profiles, trained_at=AS_OF, search=KMeansSearch(k_max=8), data_dir=tmp_path
        )


async def test_published_clusters_become_the_champion_the_batch_and_requests_use(
    tmp_path: Path, store: Store
) -> None:
    cols = SyntheticClients(300, chunk_size=300, seed=5).load(0)
    profiles = profiles_from_columns(cols, tenant="t", as_of=AS_OF, config=CreditConfig())
    await store.credit_profiles.upsert_many(profiles)
    assert await load_champion_clusters(store) is None

    trained_at = datetime(2026, 7, 9, 3, 0, tzinfo=UTC)
    record, _ = await train_and_publish(store, tenant="t", now=trained_at, data_dir=tmp_path)

    champion = await store.models.get_champion(CLUSTER_MODEL_KIND)
    assert champion is not None and champion.id == record.id
    assert Path(champion.artifact_uri).exists()
    loaded = await load_champion_clusters(store)
    assert loaded is not None and loaded.version == record.version
    tier = loaded.predict_tier(profiles[0].features)
    assert loaded.annotate(profiles[0]).cluster_tier is tier
