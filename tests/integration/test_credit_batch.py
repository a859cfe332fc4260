"""Nightly credit batch on a real local Ray and the real embedded store."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from aml.credit.features import ClientInfo, CreditColumns, columns_from_transactions
from aml.credit.score import (
    CreditConfig,
    TierPolicy,
    is_scored,
    profiles_from_columns,
    score_client,
    tier_distance,
)
from aml.domain import (
    Alert,
    AlertStatus,
    CreditTier,
    Direction,
    RiskLevel,
    Transaction,
    TransactionType,
)
from bench.credit_scale import SyntheticClients
from storage.store import Store
from tests.factories import make_tx
from training.credit_batch import BatchProgress, score_all, score_all_from_store
from training.credit_kmeans import KMeansSearch, fit_model, training_set

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)


def client_history(cid: str, rng: random.Random) -> list[Transaction]:
    """A few months of mixed behaviour for one client (its own accounts, contacts, loans)."""
    acct = f"savings:{cid}"
    out: list[Transaction] = []
    income = rng.choice([50_000, 150_000, 400_000])
    for _ in range(rng.randint(2, 40)):
        days = rng.uniform(0.1, 200)
        kind = rng.random()
        common = {
            "tenant": "t1",
            "client_id": cid,
            "account_id": acct,
            "occurred_at": AS_OF - timedelta(days=days),
            "country_code": rng.choice(["CM", "CM", "CM", "GA"]),
        }
        if kind < 0.35:
            out.append(make_tx(amount_minor=income, type=TransactionType.DEPOSIT, **common))
        elif kind < 0.5:
            out.append(
                make_tx(
                    amount_minor=rng.randint(1_000, income),
                    type=TransactionType.TRANSFER,
                    direction=Direction.IN,
                    counterparty_account_id=f"savings:friend{rng.randint(0, 3)}",
                    **common,
                )
            )
        elif kind < 0.9:
            out.append(
                make_tx(
                    amount_minor=rng.randint(1_000, income // 2),
                    type=rng.choice([TransactionType.WITHDRAWAL, TransactionType.TRANSFER]),
                    direction=Direction.OUT,
                    counterparty_account_id=f"savings:friend{rng.randint(0, 3)}",
                    **common,
                )
            )
        else:
            out.append(
                make_tx(amount_minor=income, type=TransactionType.LOAN_DISBURSEMENT, **common)
            )
    return out


def population(n: int, seed: int = 5) -> dict[str, list[Transaction]]:
    rng = random.Random(seed)
    return {f"c{i}": client_history(f"c{i}", rng) for i in range(n)}


def test_batch_gives_the_same_profiles_as_the_request_path() -> None:
    clients = population(30)
    info = {"c3": ClientInfo(opened_at=AS_OF - timedelta(days=1000))}
    seen: list[BatchProgress] = []
    profiles = score_all(
        clients, tenant="t1", as_of=AS_OF, info=info, chunk_size=7, progress=seen.append
    )
    assert [p.chunks_done for p in seen] == [1, 2, 3, 4, 5]
    assert seen[-1].chunks_total == 5 and seen[-1].clients_done == 30
    by_id = {p.client_id: p for p in profiles}
    assert sorted(by_id) == sorted(clients)
    for cid, txs in clients.items():
        single = score_client(txs, tenant="t1", client_id=cid, as_of=AS_OF, info=info.get(cid))
        assert by_id[cid] == single
    assert len({p.tier for p in profiles}) >= 3


@dataclass(frozen=True)
class TwoChunks:
    """A loader whose chunks are built inside the tasks."""

    clients: dict[str, list[Transaction]]

    def chunk_keys(self) -> Sequence[Hashable]:
        return [0, 1]

    def load(self, key: Hashable) -> CreditColumns:
        ids = sorted(self.clients)[int(key) :: 2]  # type: ignore[call-overload]
        return columns_from_transactions({c: self.clients[c] for c in ids}, as_of=AS_OF)


def test_loader_source_scores_every_chunk() -> None:
    clients = population(12, seed=9)
    profiles = score_all(TwoChunks(clients), tenant="t1", as_of=AS_OF)
    assert sorted(p.client_id for p in profiles) == sorted(clients)


async def test_nightly_job_reads_the_store_and_stores_profiles(store: Store) -> None:
    clients = population(15, seed=11)
    await store.transactions.insert_many([t for txs in clients.values() for t in txs])
    # Another tenant's client must not be scored under t1.
    await store.transactions.insert_many([make_tx(tenant="t2", client_id="x", occurred_at=AS_OF)])
    fraud_at = AS_OF - timedelta(days=20)
    await store.alerts.create(
        Alert(
            id="al1",
            tenant="t1",
            customer_key="t1|savings:c1",
            account_id="savings:c1",
            client_id="c1",
            status=AlertStatus.CLOSED_FRAUD,
            risk_level=RiskLevel.HIGH,
            score=0.9,
            transaction_ids=(),
            rule_ids=("r",),
            created_at=fraud_at,
            updated_at=fraud_at,
            sla_due_at=fraud_at + timedelta(days=1),
        )
    )
    config = CreditConfig()
    profiles = await score_all_from_store(store, tenant="t1", as_of=AS_OF, config=config)
    assert sorted(p.client_id for p in profiles) == sorted(c for c, t in clients.items() if t)

    stored = await store.credit_profiles.get(tenant="t1", client_id="c1")
    assert stored is not None
    assert stored.features["total_fraud_alerts"] == 1.0
    assert stored.features["days_since_last_fraud_alert"] == pytest.approx(20.0)
    expected = score_client(
        clients["c1"],
        tenant="t1",
        client_id="c1",
        as_of=AS_OF,
        info=ClientInfo(fraud_alert_dates=[fraud_at]),
    )
    assert stored.score == pytest.approx(expected.score)
    assert stored.tier is expected.tier
    dist = await store.credit_profiles.tier_distribution(tenant="t1")
    assert sum(dist.values()) == len(profiles)
    assert await store.credit_profiles.get(tenant="t2", client_id="x") is None
    assert set(dist) == set(CreditTier)


def test_batch_attaches_cluster_tiers_and_flags_disagreement() -> None:
    train = profiles_from_columns(
        SyntheticClients(400, chunk_size=400, seed=4).load(0),
        tenant="t1",
        as_of=AS_OF,
        config=CreditConfig(),
    )
    x, y = training_set(train)
    model = fit_model(
        x,
        y,
        k=5,
        subset="all",
        policy=TierPolicy(),
        trained_at=AS_OF,
        search=KMeansSearch(),
    )
    clients = population(25, seed=13)
    profiles = score_all(clients, tenant="t1", as_of=AS_OF, chunk_size=10, cluster_model=model)
    scored = [p for p in profiles if is_scored(p)]
    assert scored and all(p.cluster_tier is not None for p in scored)
    assert all(p.cluster_tier is None for p in profiles if not is_scored(p))
    for p in scored:
        assert p.cluster_tier is model.predict_tier(p.features)
        assert p.needs_review == (tier_distance(p.tier, p.cluster_tier) > 1)
