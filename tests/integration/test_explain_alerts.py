"""Alerting decisions explained against the customer's own baseline, through ``persist``."""

from __future__ import annotations

import logging
import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from aml.domain import (
    Decision,
    Direction,
    FeatureContribution,
    ScorerResult,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from aml.explain import CUSTOMER_BASELINE, MIN_BASELINE_HISTORY, POPULATION_BASELINE
from aml.features import FeatureParams
from aml.policy import PolicyConfig, decide
from aml.rules.engine import RuleEvaluation
from serve.scoring.explain_alerts import explain_alerts
from serve.scoring.pipeline import persist
from storage.repositories.base import epoch_ms
from storage.store import Store
from tests.factories import T0, make_tx


async def test_recent_touching_reads_both_sides_of_many_accounts_newest_first(
    store: Store,
) -> None:
    own = [make_tx(account_id="savings:1", occurred_at=T0 + timedelta(hours=i)) for i in range(3)]
    incoming = make_tx(
        account_id="savings:9",
        counterparty_account_id="savings:2",
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        occurred_at=T0 + timedelta(hours=5),
    )
    other_tenant = make_tx(tenant="other", account_id="savings:1", occurred_at=T0)
    rejected = make_tx(
        account_id="savings:1",
        occurred_at=T0 + timedelta(hours=1, minutes=30),
        status=TransactionStatus.REJECTED,
    )
    too_old = make_tx(account_id="savings:2", occurred_at=T0 - timedelta(days=2))
    await store.transactions.insert_many([*own, incoming, other_tenant, rejected, too_old])

    got = await store.transactions.recent_touching(
        [("default", "savings:1"), ("default", "savings:2")],
        since=T0 - timedelta(days=1),
        until=T0 + timedelta(hours=5),
        limit=10,
    )
    assert [t.id for t in got] == [incoming.id, own[2].id, own[1].id, own[0].id]

    newest = await store.transactions.recent_touching(
        [("default", "savings:1"), ("default", "savings:2")],
        since=T0 - timedelta(days=1),
        until=T0 + timedelta(hours=5),
        limit=2,
    )
    assert [t.id for t in newest] == [incoming.id, own[2].id]


PARAMS = FeatureParams()
NO_RULES = RuleEvaluation(score=0.0, hits=(), config_version=1)
POPULATION = (FeatureContribution(feature="hour_cos", value=0.97, contribution=2.4),)
AT = datetime(2026, 3, 1, tzinfo=UTC)


def deposits(account: str, n: int, *, every: timedelta = timedelta(hours=7)) -> list[Transaction]:
    rng = random.Random(account)
    return [
        make_tx(
            account_id=account,
            occurred_at=T0 + every * i,
            amount_minor=100 + rng.randint(-10, 10),
        )
        for i in range(n)
    ]


def next_deposit(history: list[Transaction], amount_minor: int) -> Transaction:
    last = history[-1]
    return make_tx(
        account_id=last.account_id,
        occurred_at=last.occurred_at + timedelta(hours=7),
        amount_minor=amount_minor,
    )


def decided(tx: Transaction, anomaly_score: float) -> Decision:
    result = ScorerResult(
        scorer="anomaly",
        available=True,
        score=anomaly_score,
        model_version="if-1",
        contributions=POPULATION,
    )
    return decide(
        tx, NO_RULES, [result], config=PolicyConfig(weights={"anomaly": 1.0}), decided_at=AT
    )


def anomaly_of(decision: Decision | None) -> ScorerResult:
    assert decision is not None
    return next(s for s in decision.scorers if s.scorer == "anomaly")


async def test_persisted_alert_is_explained_against_the_customers_own_baseline(
    store: Store,
) -> None:
    usual = deposits("savings:601", 80)
    spike = next_deposit(usual, 5_000)
    newcomer = deposits("savings:602", 2)
    newcomer_spike = next_deposit(newcomer, 5_000)
    quiet = deposits("savings:603", 30)
    normal = next_deposit(quiet, 100)
    batch = [spike, newcomer_spike, normal]
    await store.transactions.insert_many([*usual, *newcomer, *quiet, *batch])
    decisions = [decided(spike, 0.97), decided(newcomer_spike, 0.95), decided(normal, 0.1)]
    assert [d.alert for d in decisions] == [True, True, False]

    result = await persist(store, batch, decisions, params=PARAMS)

    assert result.decisions == 3 and result.scored == 3
    stored = await store.decisions.get_by_transaction(spike.id)
    anomaly = anomaly_of(stored)
    assert anomaly.reason == f"{CUSTOMER_BASELINE} (median of 80 transactions over 24 days)"
    assert anomaly.contributions[0].feature == "amount"
    assert anomaly.contributions[0].value == 5_000.0
    assert anomaly.contributions[0].contribution > 100
    assert stored is not None
    assert f"anomaly score 0.97 {anomaly.reason} [amount=5000 (+" in stored.explanation
    named = re.search(r"amount=5000 \(\+[\d.]+, ([\d.]+)x the usual ([\d.]+)\)", stored.explanation)
    assert named is not None
    assert 90 <= float(named[2]) <= 110 and float(named[1]) == pytest.approx(
        5000 / float(named[2]), abs=0.05
    )
    assert "hour_cos" not in stored.explanation
    assert stored.score == decisions[0].score and stored.alert

    # Two earlier transactions are no baseline: the population reasons stay, marked as such.
    kept = await store.decisions.get_by_transaction(newcomer_spike.id)
    assert anomaly_of(kept).contributions == POPULATION
    assert anomaly_of(kept).reason == (
        f"{POPULATION_BASELINE}: this customer has 2 earlier transactions, "
        f"{MIN_BASELINE_HISTORY} are needed for an own baseline"
    )
    assert kept is not None and f"anomaly score 0.95 {anomaly_of(kept).reason}" in kept.explanation

    # A decision that does not alert is stored exactly as the scorers made it.
    assert await store.decisions.get_by_transaction(normal.id) == decisions[2]
    alerts = [await store.alerts.get_or_raise(a) for a in result.alerts]
    assert {t for a in alerts for t in a.transaction_ids} == {spike.id, newcomer_spike.id}


async def test_each_alerted_account_reads_its_own_capped_history(store: Store) -> None:
    busy = deposits("savings:611", 120)  # every 7 hours for 35 days
    busy_spike = next_deposit(busy, 5_000)
    t = busy_spike.occurred_at
    # A quiet customer whose whole history is older than the busy one's last 100 movements.
    quiet = [
        make_tx(account_id="savings:612", occurred_at=t - timedelta(days=29, hours=-2 * i))
        for i in range(6)
    ]
    quiet_spike = make_tx(account_id="savings:612", occurred_at=t, amount_minor=5_000)
    batch = [busy_spike, quiet_spike]
    await store.transactions.insert_many([*busy, *quiet, *batch])
    decisions = [decided(busy_spike, 0.97), decided(quiet_spike, 0.97)]

    explained = await explain_alerts(store, batch, decisions, PARAMS, per_account=50)

    # A busy account's cap never crowds the quiet one out: it gets its baseline of 6.
    assert anomaly_of(explained[1]).reason == (
        f"{CUSTOMER_BASELINE} (median of 6 transactions over 29 days)"
    )
    # The busy account reads its own 50 (the spike and 49 earlier); only those whose 7-day window
    # was read too form its baseline: 7 h apart, the 24 newest.
    assert anomaly_of(explained[0]).reason == (
        f"{CUSTOMER_BASELINE} (median of 24 transactions over 7 days)"
    )


async def test_an_alert_storm_explains_the_highest_alerts_and_marks_the_rest(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """More alerting decisions in one batch than ``max_explained``: the highest scores get their
    customer's baseline (ties: the earliest in the batch), the rest keep the population's reasons
    with a basis that says why; nothing else about them changes."""
    histories = [deposits(f"savings:{650 + i}", 20) for i in range(5)]
    batch = [next_deposit(h, 5_000) for h in histories]
    await store.transactions.insert_many([t for h in histories for t in h] + batch)
    scores = [0.91, 0.99, 0.95, 0.99, 0.93]
    decisions = [decided(tx, s) for tx, s in zip(batch, scores, strict=True)]

    with caplog.at_level(logging.INFO, logger="serve.scoring.explain_alerts"):
        explained = await explain_alerts(store, batch, decisions, PARAMS, max_explained=3)

    own = [(anomaly_of(d).reason or "").startswith(CUSTOMER_BASELINE) for d in explained]
    assert own == [False, True, True, True, False]
    for d in (explained[0], explained[4]):
        anomaly = anomaly_of(d)
        assert anomaly.contributions == POPULATION
        assert anomaly.reason == (
            f"{POPULATION_BASELINE}: this customer's own baseline was not computed "
            "(5 alerts in one scoring batch, the 3 highest were explained against theirs)"
        )
        assert f"anomaly score {d.score:.2f} {anomaly.reason}" in d.explanation
    assert [(d.score, d.alert, d.risk_level) for d in explained] == [
        (d.score, d.alert, d.risk_level) for d in decisions
    ]
    assert "5 alerting decisions in one batch" in caplog.text


async def test_a_failed_history_read_still_persists_the_decision_as_scored(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    usual = deposits("savings:621", 30)
    spike = next_deposit(usual, 5_000)
    await store.transactions.insert_many([*usual, spike])
    # A record this build cannot read (say, written by a newer version) among the history.
    await store.transactions.col.insert_one(
        {
            "_id": "unreadable",
            "tenant": "default",
            "dedupe_key": "unreadable",
            "account_id": "savings:621",
            "type": "teleport",
            "status": "pending",
            "occurred_at": spike.occurred_at - timedelta(hours=1),
            "occurred_ms": epoch_ms(spike.occurred_at - timedelta(hours=1)),
        }
    )
    decision = decided(spike, 0.97)

    with caplog.at_level(logging.WARNING, logger="serve.scoring.explain_alerts"):
        result = await persist(store, [spike], [decision], params=PARAMS)

    assert (result.decisions, result.scored, len(result.alerts)) == (1, 1, 1)
    assert await store.decisions.get_by_transaction(spike.id) == decision
    assert "could not be read" in caplog.text


async def test_a_batch_larger_than_a_write_slice_is_stored_and_marked_whole(store: Store) -> None:
    from serve.scoring.pipeline import PERSIST_CHUNK

    batch = deposits("savings:631", PERSIST_CHUNK * 2 + 5)
    await store.transactions.insert_many(batch)
    decisions = [decided(tx, 0.1) for tx in batch]

    result = await persist(store, batch, decisions, params=PARAMS)

    assert (result.decisions, result.scored) == (len(batch), len(batch))
    assert await store.decisions.count({"_id": {"$in": [t.id for t in batch]}}) == len(batch)
    again = await persist(store, batch, decisions, params=PARAMS)  # a retried hand-off
    assert (again.decisions, again.scored) == (0, 0)
