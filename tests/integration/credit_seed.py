"""Credit data builders shared by the credit workflow, API and dashboard tests: client histories
written through the real store, and a K-Means champion saved as a real artifact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from aml.credit.score import CreditConfig, TierPolicy, profiles_from_columns
from aml.domain import Direction, ModelRecord, Transaction, TransactionType, utcnow
from bench.credit_scale import SyntheticClients
from storage.store import Store
from tests.factories import make_tx
from training.credit_kmeans import KMeansSearch, fit_model, training_set


def now_ms() -> datetime:
    """Now at millisecond precision (what every MongoDB backend keeps)."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def steady_history(
    client_id: str, *, as_of: datetime, tenant: str = "default", days: int = 400
) -> list[Transaction]:
    """A salaried saver: a monthly salary, weekly spending, over more than a year."""
    acct = f"savings:{client_id}"
    out: list[Transaction] = []
    for back in range(3, days, 30):
        out.append(
            make_tx(
                tenant=tenant,
                client_id=client_id,
                account_id=acct,
                amount_minor=300_000,
                type=TransactionType.DEPOSIT,
                direction=Direction.IN,
                occurred_at=as_of - timedelta(days=back, hours=2),
            )
        )
    for back in range(1, days, 4):
        out.append(
            make_tx(
                tenant=tenant,
                client_id=client_id,
                account_id=acct,
                amount_minor=25_000,
                type=TransactionType.WITHDRAWAL,
                direction=Direction.OUT,
                occurred_at=as_of - timedelta(days=back, hours=5),
            )
        )
    return out


def thin_history(client_id: str, *, as_of: datetime, tenant: str = "default") -> list[Transaction]:
    """Two deposits: too little history for a score."""
    return [
        make_tx(
            tenant=tenant,
            client_id=client_id,
            account_id=f"savings:{client_id}",
            amount_minor=5_000,
            occurred_at=as_of - timedelta(days=d),
        )
        for d in (3, 10)
    ]


def burst(client_id: str, *, as_of: datetime, tenant: str = "default") -> list[Transaction]:
    """Large deposits in the last days before a request (score inflation)."""
    return [
        make_tx(
            tenant=tenant,
            client_id=client_id,
            account_id=f"savings:{client_id}",
            amount_minor=900_000,
            type=TransactionType.DEPOSIT,
            direction=Direction.IN,
            occurred_at=as_of - timedelta(days=d, minutes=30),
        )
        for d in (0, 1, 2, 3, 4)
    ]


async def seed_clients(store: Store, *, as_of: datetime, tenant: str = "default") -> None:
    """``good`` (steady saver), ``thin`` (two deposits) and ``inflated`` (saver plus a burst)."""
    txs = [
        *steady_history("good", as_of=as_of, tenant=tenant),
        *thin_history("thin", as_of=as_of, tenant=tenant),
        *steady_history("inflated", as_of=as_of, tenant=tenant),
        *burst("inflated", as_of=as_of, tenant=tenant),
    ]
    await store.transactions.insert_many(txs)


async def register_cluster_champion(store: Store, tmp_path: Path, *, as_of: datetime) -> Path:
    """Fit a small K-Means tier model, save it and promote it as the ``credit_kmeans``
    champion; returns the artifact path."""
    train = profiles_from_columns(
        SyntheticClients(300, chunk_size=300, seed=4).load(0),
        tenant="bench",
        as_of=as_of,
        config=CreditConfig(),
    )
    x, y = training_set(train)
    model = fit_model(
        x, y, k=4, subset="all", policy=TierPolicy(), trained_at=as_of, search=KMeansSearch()
    )
    path = model.save(tmp_path / "credit_cluster.joblib")
    record = ModelRecord(
        id=uuid.uuid4().hex,
        kind="credit_kmeans",
        version=model.version,
        feature_set_version=model.feature_set_version,
        features=model.feature_names,
        metrics={},
        artifact_uri=str(path),
        stage="candidate",
        created_at=as_of,
    )
    await store.models.register(record)
    await store.models.set_stage(record.id, stage="champion")
    return path
