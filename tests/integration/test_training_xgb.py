"""Supervised training end to end on the shared Ray: labels from the store, Tune with ASHA,
the test split scored once, MLflow runs and registry, a candidate record; and the gate."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aml.domain import (
    AnalystDecision,
    Direction,
    ModelRecord,
    Transaction,
    TransactionType,
    stable_id,
)
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureParams
from aml.history import build_context
from serve.scoring.client import in_process_scoring
from serve.scoring.models import load_model
from storage.store import Store
from tests.factories import T0, make_alert, make_tx
from training.dataset_build import DatasetSplit, LabelledSet, build_from_store, time_split
from training.promotion import GateConfig, Promoter
from training.tracking import default_tracking_uri
from training.xgb_tune import (
    REGISTERED_MODEL,
    XGBSearch,
    fit_booster,
    predict,
    publish_xgboost,
    run_xgboost,
    save_xgboost_artifact,
)

pytestmark = pytest.mark.integration

PARAMS = FeatureParams()


def labelled_stream(
    tenant: str, n: int = 900, seed: int = 3
) -> tuple[list[Transaction], dict[str, int]]:
    """Ordinary deposits plus rare large night-time withdrawals (label 1), over 12 days, with
    some large daytime withdrawals that are legitimate (so the task is not a single cut)."""
    rng = random.Random(seed)
    txs, labels = [], {}
    for i in range(n):
        at = T0 + timedelta(minutes=rng.randrange(60 * 24 * 12))
        acct = f"savings:{rng.randrange(40)}"
        roll = rng.random()
        if roll < 0.16:
            # A large withdrawal: at night it is fraud, in the daytime it is legitimate.
            fraud = roll < 0.08
            tx = make_tx(
                tenant=tenant,
                dedupe_key=f"{tenant}|{i}",
                account_id=acct,
                type=TransactionType.WITHDRAWAL,
                direction=Direction.OUT,
                amount_minor=rng.randint(2_000, 9_000) * 1_000,
                occurred_at=at.replace(
                    hour=rng.choice([0, 1, 2, 3, 23] if fraud else [10, 11, 14, 15])
                ),
            )
            label = 1 if fraud else 0
        else:
            tx = make_tx(
                tenant=tenant,
                dedupe_key=f"{tenant}|{i}",
                account_id=acct,
                amount_minor=rng.randint(5, 30) * 1_000,
                occurred_at=at,
            )
            label = 0
        txs.append(tx)
        labels[tx.id] = label
    return txs, labels


async def seed_labels(
    store: Store, txs: list[Transaction], labels: dict[str, int], tmp: Path
) -> Path:
    """Store the stream; a few labels as analyst verdicts, the rest as a bootstrap file."""
    await store.transactions.insert_many(txs)
    verdict_ids = [t.id for t in txs[:20]]
    for tx_id in verdict_ids:
        alert = await store.alerts.create(make_alert(transaction_ids=(tx_id,)))
        verdict = AnalystDecision.CONFIRMED_FRAUD if labels[tx_id] else AnalystDecision.LEGITIMATE
        await store.alerts.decide(alert.id, decision=verdict, by="ana", at=T0)
    path = tmp / "labels.csv"
    rows = [f"{t.id},{labels[t.id]}" for t in txs[20:]]
    path.write_text("transaction_id,label\n" + "\n".join(rows) + "\n")
    return path


async def stored_split(store: Store, tmp: Path, tenant: str) -> DatasetSplit:
    txs, labels = labelled_stream(tenant)
    label_file = await seed_labels(store, txs, labels, tmp)
    data = await build_from_store(store, params=PARAMS, label_files=[label_file])
    assert len(data) == len(txs)
    return time_split(data, validation_fraction=0.25, test_fraction=0.25)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
async def test_tune_run_publishes_a_registered_candidate_logged_to_mlflow(
    store: Store, tmp_path: Path
) -> None:
    split = await stored_split(store, tmp_path, "xgb")
    lines: list[str] = []
    search = XGBSearch(
        num_samples=4, max_rounds=20, report_every=5, grace_rounds=5, cpus_per_trial=0.5
    )
    run = run_xgboost(
        split, search=search, storage_path=tmp_path / "ray", name="t", progress=lines.append
    )
    record = await publish_xgboost(run, store=store, data_dir=tmp_path, created_at=T0)

    # A trained model that separates the classes better than chance on the untouched test rows.
    assert run.test["auprc"] > 2 * split.test.labels.mean()
    assert 0.0 <= run.baseline_test["auprc"] <= 1.0
    assert sum(line.startswith("trial ") for line in lines) == 4
    assert await store.models.get(record.id) == record
    assert record.stage == "candidate" and record.features == FEATURE_NAMES
    assert record.feature_set_version == FEATURE_SET_VERSION
    model = load_model(record.artifact_uri)
    assert model.version == record.version
    scores = [float(r.score or 0.0) for r in model.score(split.test.x)]
    assert np.allclose(scores, predict(run.booster, split.test), atol=1e-6)

    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    exp = client.get_experiment_by_name("xgboost")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == record.version)
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(nested) == 4 + 1  # every trial and the baseline
    assert parent.data.params["feature_set_version"] == FEATURE_SET_VERSION
    assert parent.data.metrics["auprc"] == pytest.approx(run.test["auprc"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"dataset.json", "features.json", record.version} <= artifacts
    (version,) = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    assert version.run_id == parent.info.run_id
    assert str(tmp_path.resolve() / "mlflow" / "artifacts") in exp.artifact_location

    # Promotion moves the registry's champion alias to this version.
    await Promoter(store, data_dir=tmp_path).promote(record.id, actor="ml")
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == "1"


QUICK_CONFIG = {
    "max_depth": 3,
    "learning_rate": 0.3,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_alpha": 0.0,
    "reg_lambda": 1.0,
    "scale_pos_weight_mult": 1.0,
}


async def register_booster(
    store: Store,
    part: LabelledSet,
    tmp: Path,
    name: str,
    *,
    rounds: int,
    params: dict[str, Any] | None = None,
) -> ModelRecord:
    """A booster trained on ``part`` without Tune, saved and registered as candidate ``name``."""
    booster = fit_booster(part, QUICK_CONFIG, rounds, seed=0)
    manifest = save_xgboost_artifact(tmp / name, version=name, booster=booster)
    record = ModelRecord(
        id=stable_id("model", name),
        kind="xgboost",
        version=name,
        feature_set_version=FEATURE_SET_VERSION,
        features=FEATURE_NAMES,
        metrics={},
        artifact_uri=str(manifest),
        stage="candidate",
        created_at=T0,
        params=dict(params or {}),
    )
    return await store.models.register(record)


async def _register(
    store: Store, split: DatasetSplit, tmp: Path, name: str, shuffle: bool
) -> ModelRecord:
    """A quickly trained booster (no Tune) registered as a candidate."""
    part = split.train
    if shuffle:  # labels carrying no signal: a model no better than chance
        rng = np.random.default_rng(0)
        part = type(part)(part.frame, rng.permutation(part.labels), part.occurred_at)
    return await register_booster(store, part, tmp, name, rounds=30, params={"threshold": 0.5})


async def test_gate_promotes_only_a_candidate_that_beats_the_champion_on_the_same_rows(
    store: Store, tmp_path: Path
) -> None:
    split = await stored_split(store, tmp_path, "gate")
    weak = await _register(store, split, tmp_path, "weak", shuffle=True)
    strong = await _register(store, split, tmp_path, "strong", shuffle=False)
    promoter = Promoter(store)
    config = GateConfig(metric="auprc", margin=0.05, min_positives=3)

    first = await promoter.consider(weak.id, split.test, config=config, actor="ml")
    assert first.passed and first.reason == "no champion yet"

    better = await promoter.consider(strong.id, split.test, config=config, actor="ml")
    assert better.passed and better.champion is not None
    assert better.candidate["auprc"] >= better.champion["auprc"] + 0.05
    assert (await store.models.get_champion("xgboost")).id == strong.id  # type: ignore[union-attr]

    worse = await promoter.consider(weak.id, split.test, config=config, actor="ml")
    assert not worse.passed
    assert (await store.models.get_champion("xgboost")).id == strong.id  # type: ignore[union-attr]
    assert (await store.models.get(weak.id)).stage == "archived"  # type: ignore[union-attr]

    entries, _ = await store.audit_log.list_(target_type="model")
    assert [e.action for e in entries] == ["model.gate_rejected", "model.promote", "model.promote"]
    assert entries[1].details["previous"] == weak.id

    back = await promoter.rollback("xgboost", actor="ml")
    assert back.id == weak.id and back.stage == "champion"
    assert (await store.models.get_champion("xgboost")).id == weak.id  # type: ignore[union-attr]
    assert await store.audit_log.verify() is None


async def test_a_shadow_model_is_recorded_but_never_changes_the_decision(
    store: Store, tmp_path: Path
) -> None:
    split = await stored_split(store, tmp_path, "shadow")
    champion = await _register(store, split, tmp_path, "champ", shuffle=False)
    challenger = await _register(store, split, tmp_path, "chall", shuffle=True)
    plain = in_process_scoring(store, xgboost={"model": champion.artifact_uri})
    shadowed = in_process_scoring(
        store, xgboost={"model": champion.artifact_uri, "shadow": challenger.artifact_uri}
    )
    txs = [
        make_tx(tenant="shadow-live", account_id=f"savings:{a}", amount_minor=a, occurred_at=T0)
        for a in (10_000, 7_000_000)
    ]
    a = plain.core.score(txs, [build_context(t, []) for t in txs], decided_at=T0)
    b = shadowed.core.score(txs, [build_context(t, []) for t in txs], decided_at=T0)
    for d_plain, d_shadow in zip(a, b, strict=True):
        assert d_plain.shadow_scores == {}
        assert set(d_shadow.shadow_scores) == {"xgboost:chall"}
        assert 0.0 <= d_shadow.shadow_scores["xgboost:chall"] <= 1.0
        assert (d_shadow.score, d_shadow.alert, d_shadow.scorers) == (
            d_plain.score,
            d_plain.alert,
            d_plain.scorers,
        )
