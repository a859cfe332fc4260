"""Fitting the first Isolation Forest from stored history and scoring with it in-process."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from aml.domain import Transaction
from serve.scoring.client import in_process_scoring
from storage.store import Store
from tests.factories import T0, make_tx
from training.fit_anomaly import AnomalyFitConfig, fit_anomaly

pytestmark = pytest.mark.integration


def history(tenant: str, n: int = 600, seed: int = 5) -> list[Transaction]:
    """Ordinary traffic: 30 customers, modest amounts, daytime, a few hours apart."""
    rng = random.Random(seed)
    return [
        make_tx(
            tenant=tenant,
            account_id=f"savings:{rng.randrange(30)}",
            amount_minor=rng.randint(5, 30) * 1_000,
            occurred_at=T0 + timedelta(hours=rng.uniform(0, 24 * 6)),
        )
        for _ in range(n)
    ]


async def test_fitted_model_keeps_the_alert_rate_and_flags_an_outlier(
    store: Store, tmp_path: Path
) -> None:
    await store.transactions.insert_many(history("fit"))
    record = await fit_anomaly(
        store, out_dir=tmp_path, tenant="fit", config=AnomalyFitConfig(alert_rate=0.02)
    )

    assert record.kind == "anomaly" and record.stage == "candidate"
    assert Path(record.artifact_uri).exists()
    assert abs(record.metrics["train_alert_rate"] - 0.02) < 0.01
    assert await store.models.get(record.id) == record

    handoff = in_process_scoring(store, anomaly={"model": record.artifact_uri})
    normal = make_tx(
        tenant="fit",
        account_id="savings:3",
        amount_minor=12_000,
        occurred_at=T0 + timedelta(days=6, hours=1),
    )
    outlier = make_tx(
        tenant="fit",
        account_id="savings:4",
        amount_minor=2_000_000_000,
        occurred_at=T0 + timedelta(days=6, hours=2),
    )
    await store.transactions.insert_many([normal, outlier])
    d_normal, d_outlier = await handoff.score_and_store([normal, outlier])

    a_normal = next(s for s in d_normal.scorers if s.scorer == "anomaly")
    a_outlier = next(s for s in d_outlier.scorers if s.scorer == "anomaly")
    assert a_outlier.available and a_outlier.model_version == record.version
    assert a_outlier.score is not None and a_normal.score is not None
    assert a_outlier.score > a_normal.score
    # The explanation names what is far from the baseline: the amount.
    assert any("amount" in c.feature for c in a_outlier.contributions)
