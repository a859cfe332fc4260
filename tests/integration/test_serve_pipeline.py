"""The scoring application on the shared local Ray, deployed from ``deploy/serve_config.yaml``.

One deployment per module (start-up is the expensive part); tests use distinct accounts so they
do not see each other's history, and re-apply the YAML with changed ``user_config`` to hot-reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import serve

from actors.factory import NAMESPACE, SHARD_NAME
from actors.ordering import BatchOrder
from aml.domain import Direction, Transaction, TransactionStatus, TransactionType, sealed
from aml.rules.config import default_rule_config
from serve.ingress.handoff import ScoringHandoff
from serve.scoring.client import ServeScoring, in_process_scoring
from serve.scoring.deploy import apply, with_user_config
from storage.store import Store
from tests.factories import T0, make_tx
from tests.integration.serve_app import shipped_config
from tests.integration.test_serve_anomaly import history
from training.fit_anomaly import fit_anomaly

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_session"),
]

APP = "scoring"
SHARDS = 2


@pytest.fixture(scope="module")
def config(module_store: Store, mongo_uri: str, ray_session: None) -> dict[str, Any]:
    cfg = shipped_config(mongo_uri, module_store.db.name, shards=SHARDS)
    # Detect a dead scorer replica quickly and keep retrying long enough for its replacement.
    for dep in cfg["applications"][0]["deployments"]:
        dep["health_check_period_s"] = 1
    cfg = with_user_config(cfg, "ScoringPipeline", {"scorer_retries": 8})
    apply(cfg)
    return cfg


@pytest.fixture
def handoff(config: dict[str, Any]) -> ServeScoring:
    client = ServeScoring.connect(APP, batch_size=64)
    _: ScoringHandoff = client  # the ingress hands off to it through this protocol
    return client


def _account() -> str:
    return f"savings:{uuid.uuid4().hex[:8]}"


def _in_process_like(config: dict[str, Any], store: Store) -> Any:
    """In-process scoring over ``store`` with the deployed pipeline's configuration."""
    pipeline_config = next(
        d["user_config"]
        for d in config["applications"][0]["deployments"]
        if d["name"] == "ScoringPipeline"
    )
    return in_process_scoring(store, shards=SHARDS, pipeline=pipeline_config)


async def _stored(store: Store, txs: list[Transaction]) -> list[Transaction]:
    await store.transactions.insert_many(txs)
    return txs


async def test_transactions_in_decisions_and_alerts_out(
    module_store: Store, handoff: ServeScoring
) -> None:
    acct = _account()
    small = [
        make_tx(account_id=acct, amount_minor=1_000, occurred_at=T0 + timedelta(hours=i))
        for i in range(3)
    ]
    big = [
        make_tx(account_id=acct, amount_minor=9_000_000, occurred_at=T0 + timedelta(hours=5 + i))
        for i in range(2)
    ]
    await _stored(module_store, [*small, *big])

    await handoff.submit([*small, *big])

    decisions = {
        d.transaction_id: d
        for d in await module_store.decisions.list_for_transactions([t.id for t in [*small, *big]])
    }
    assert len(decisions) == 5
    assert [decisions[t.id].alert for t in [*small, *big]] == [False, False, False, True, True]
    anomaly = next(s for s in decisions[big[0].id].scorers if s.scorer == "anomaly")
    assert not anomaly.available and anomaly.reason == "no model"
    alert = await module_store.alerts.get_open_for_customer(
        tenant="default", customer_key=big[0].customer_key
    )
    assert alert is not None and set(alert.transaction_ids) == {big[0].id, big[1].id}
    scored = await module_store.transactions.get_many([t.id for t in [*small, *big]])
    assert {t.status for t in scored} == {TransactionStatus.SCORED}


async def test_rule_threshold_hot_reload_changes_the_next_decisions(
    module_store: Store, handoff: ServeScoring, config: dict[str, Any]
) -> None:
    acct = _account()
    first = await _stored(module_store, [make_tx(account_id=acct, amount_minor=300_000)])
    (before,) = await handoff.score_and_store(first)
    assert "large_amount" not in {h.rule_id for h in before.rule_hits}
    pipeline = serve.get_app_handle(APP)
    pid_before = (await pipeline.info.remote())["rules"]["pid"]

    rules = default_rule_config().to_dict()
    rules["version"] = 2
    rules["thresholds"]["XAF"]["large_amount"] = 250_000
    rules["thresholds"]["XAF"]["structuring_floor"] = 240_000
    apply(with_user_config(config, "RuleScorer", {"rule_config": rules}))
    try:
        second = await _stored(
            module_store,
            [
                make_tx(
                    account_id=_account(), amount_minor=300_000, occurred_at=first[0].occurred_at
                )
            ],
        )
        (after,) = await handoff.score_and_store(second)
        assert "large_amount" in {h.rule_id for h in after.rule_hits}
        assert after.rule_config_version == 2
        info = await pipeline.info.remote()
        assert info["rules"]["pid"] == pid_before  # reconfigured in place, not restarted
    finally:
        apply(config)


async def test_killing_a_state_actor_mid_stream_loses_no_transaction(
    module_store: Store, handoff: ServeScoring
) -> None:
    accounts = [_account() for _ in range(4)]
    # 25 transactions per account within 50 minutes: from the 21st on, "rapid_transactions"
    # fires, but only if the 20 before it are still known after the crashes.
    stream = [
        make_tx(account_id=accounts[i % 4], occurred_at=T0 + timedelta(seconds=30 * i))
        for i in range(100)
    ]
    first, second = stream[:60], stream[60:]
    shards = [
        ray.get_actor(
            SHARD_NAME.format(group=module_store.db.name, index=i, count=SHARDS),
            namespace=NAMESPACE,
        )
        for i in range(SHARDS)
    ]
    await handoff.submit(await _stored(module_store, first))
    pids = [(await s.stats.remote())["pid"] for s in shards]
    for s in shards:
        ray.kill(s, no_restart=False)

    async def kill_again() -> None:
        await asyncio.sleep(0.02)
        ray.kill(shards[0], no_restart=False)

    await asyncio.gather(handoff.submit(await _stored(module_store, second)), kill_again())

    ids = [t.id for t in stream]
    decisions = {
        d.transaction_id: d for d in await module_store.decisions.list_for_transactions(ids)
    }
    assert len(decisions) == len(stream)
    pending = await module_store.transactions.count(
        {"_id": {"$in": ids}, "status": TransactionStatus.PENDING.value}
    )
    assert pending == 0
    assert [(await s.stats.remote())["pid"] for s in shards] != pids  # they really restarted
    for tx in stream[-4:]:
        assert "rapid_transactions" in {h.rule_id for h in decisions[tx.id].rule_hits}


async def test_dead_scorer_replica_is_replaced_and_the_request_recovered(
    module_store: Store, handoff: ServeScoring
) -> None:
    pipeline = serve.get_app_handle(APP)
    old_pid = (await pipeline.info.remote())["anomaly"]["pid"]
    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "AnomalyScorer" in a["name"] and a["name"].startswith("SERVE_REPLICA")
    ]
    assert replicas
    for r in replicas:
        ray.kill(ray.get_actor(r["name"], namespace=r["namespace"]), no_restart=True)
    txs = await _stored(module_store, [make_tx(account_id=_account()) for _ in range(5)])

    decisions = await handoff.score_and_store(txs)

    assert len(decisions) == 5
    for d in decisions:
        anomaly = next(s for s in d.scorers if s.scorer == "anomaly")
        assert anomaly.reason == "no model"  # answered by the new replica, not "unavailable"
    assert (await pipeline.info.remote())["anomaly"]["pid"] != old_pid


async def test_fitted_isolation_forest_is_loaded_by_reconfigure_and_scores(
    module_store: Store, handoff: ServeScoring, config: dict[str, Any], tmp_path: Path
) -> None:
    await module_store.transactions.insert_many(history("fit"))
    record = await fit_anomaly(module_store, out_dir=tmp_path, tenant="fit")
    apply(with_user_config(config, "AnomalyScorer", {"model": record.artifact_uri}))
    try:
        txs = await _stored(
            module_store,
            [
                make_tx(
                    tenant="fit",
                    account_id="savings:1",
                    amount_minor=amount,
                    occurred_at=T0 + timedelta(days=6, minutes=i),
                )
                for i, amount in enumerate((15_000, 900_000_000))
            ],
        )
        normal, odd = await handoff.score_and_store(txs)
        a_normal, a_odd = (
            next(s for s in d.scorers if s.scorer == "anomaly") for d in (normal, odd)
        )
        assert a_odd.available and a_odd.model_version == record.version
        assert a_normal.score is not None and a_odd.score is not None
        assert a_odd.score > a_normal.score
        info = await serve.get_app_handle(APP).info.remote()
        assert info["anomaly"]["model_version"] == record.version
    finally:
        apply(config)


async def test_concurrent_small_submits_share_few_pipeline_calls_and_each_is_decided_once(
    module_store: Store, config: dict[str, Any]
) -> None:
    handoff = ServeScoring.connect(APP, batch_size=64, max_in_flight=2)
    submits = [
        [make_tx(account_id=_account(), occurred_at=T0 + timedelta(minutes=i)) for i in range(5)]
        for _ in range(40)
    ]
    # The sweeper re-submitting a transaction that a fresh hand-off also carries.
    submits[-1].append(submits[0][0])
    await _stored(module_store, [t for s in submits for t in s[:5]])

    results = await asyncio.gather(*(handoff.score_and_store(s) for s in submits))

    # One call for the first submit (nothing was running), then full batches of 64: 5 calls
    # where one call per submit would have made 40.
    assert handoff.calls == 5
    for txs, decisions in zip(submits, results, strict=True):
        assert [d.transaction_id for d in decisions] == [t.id for t in txs]
    ids = [t.id for s in submits for t in s[:5]]
    assert len(await module_store.decisions.list_for_transactions(ids)) == 200
    pending = await module_store.transactions.count(
        {"_id": {"$in": ids}, "status": TransactionStatus.PENDING.value}
    )
    assert pending == 0


async def test_a_failed_batch_fails_its_submits_and_leaves_their_transactions_pending(
    module_store: Store, handoff: ServeScoring
) -> None:
    # A deployment that cannot decide: every pipeline call fails in its replica.
    failing = ServeScoring(serve.get_deployment_handle("RuleScorer", APP), batch_size=4)
    submits = [[make_tx(account_id=_account()) for _ in range(3)] for _ in range(3)]
    ids = [t.id for s in submits for t in s]
    await _stored(module_store, [t for s in submits for t in s])

    outcomes = await asyncio.gather(*(failing.submit(s) for s in submits), return_exceptions=True)

    assert all(isinstance(o, Exception) for o in outcomes)
    assert await module_store.decisions.list_for_transactions(ids) == []
    pending = await module_store.transactions.count(
        {"_id": {"$in": ids}, "status": TransactionStatus.PENDING.value}
    )
    assert pending == len(ids)
    # The sweeper's re-submission through a working hand-off decides them.
    await handoff.submit([t for s in submits for t in s])
    assert len(await module_store.decisions.list_for_transactions(ids)) == len(ids)


async def test_submitted_batches_are_written_by_the_pipeline_replica(
    module_store: Store, handoff: ServeScoring
) -> None:
    # ``submit`` (the ingress's path) brings no decision back: the replica stored them.
    txs = await _stored(module_store, [make_tx(account_id=_account()) for _ in range(5)])
    await handoff.submit(txs)
    stored = await module_store.decisions.list_for_transactions([t.id for t in txs])
    assert sorted(d.transaction_id for d in stored) == sorted(t.id for t in txs)
    scored = await module_store.transactions.count(
        {"_id": {"$in": [t.id for t in txs]}, "status": TransactionStatus.SCORED.value}
    )
    assert scored == len(txs)


async def test_serve_and_in_process_scoring_make_the_same_decisions(
    module_store: Store, store: Store, handoff: ServeScoring, config: dict[str, Any]
) -> None:
    tenant = f"parity-{uuid.uuid4().hex[:8]}"
    a, b = "savings:1", "savings:2"
    at = [T0 + timedelta(minutes=2 * i) for i in range(40)]
    stream = [
        *(
            make_tx(tenant=tenant, account_id=a, amount_minor=20_000, occurred_at=at[i])
            for i in range(24)
        ),
        *(
            make_tx(
                tenant=tenant,
                account_id=a if i % 2 else b,
                counterparty_account_id=b if i % 2 else a,
                type=TransactionType.TRANSFER,
                direction=Direction.OUT,
                amount_minor=400_000,
                occurred_at=at[24 + i],
            )
            for i in range(8)
        ),
        *(
            make_tx(
                tenant=tenant,
                account_id=b,
                agent_id="agent:9",
                type=TransactionType.WITHDRAWAL,
                direction=Direction.OUT,
                amount_minor=9_000_000,
                occurred_at=at[32 + i],
            )
            for i in range(3)
        ),
    ]
    local = _in_process_like(config, store)
    await _stored(module_store, stream)
    await _stored(store, stream)

    # Two submits, so the second batch's contexts come from the state the first one left.
    served = [d for part in (stream[:20], stream[20:]) for d in await handoff.score_and_store(part)]
    in_process = [
        d for part in (stream[:20], stream[20:]) for d in await local.score_and_store(part)
    ]

    assert {h.rule_id for d in served for h in d.rule_hits} >= {
        "rapid_transactions",
        "large_amount",
    }
    assert [dataclasses.replace(d, decided_at=T0) for d in served] == [
        dataclasses.replace(d, decided_at=T0) for d in in_process
    ]


async def test_batches_in_flight_together_are_decided_as_if_handed_over_in_turn(
    module_store: Store, store: Store, config: dict[str, Any]
) -> None:
    """Small batches of one busy account with four calls in flight: each is observed after
    the batches handed over before it (however the calls race through Serve), so the
    decisions are those of scoring the batches one after another in process."""
    tenant = f"order-{uuid.uuid4().hex[:8]}"
    account = "savings:1"
    stream = [
        make_tx(
            tenant=tenant,
            account_id=account,
            amount_minor=20_000 + 1_000 * (i % 7),
            occurred_at=T0 + timedelta(seconds=30 * i),
        )
        for i in range(49)
    ]
    parts = [stream[:1]] + [stream[i : i + 4] for i in range(1, len(stream), 4)]
    local = _in_process_like(config, store)
    await _stored(module_store, stream)
    await _stored(store, stream)
    handoff = ServeScoring.connect(APP, batch_size=4, max_in_flight=4)

    # The first alone, so the account's window is in memory (a window loaded from the store
    # would hold the whole stream whatever the order), then the rest all at once.
    served = list(await handoff.score_and_store(parts[0]))
    for decisions in await asyncio.gather(*(handoff.score_and_store(p) for p in parts[1:])):
        served.extend(decisions)
    in_process = [d for part in parts for d in await local.score_and_store(part)]

    assert handoff.calls == len(parts)
    # Every shard followed this hand-off's sequence to its end: the next batch it expects
    # from it is the one after the last (an unknown sender's would be its first).
    sender = handoff._orders.sender
    for i in range(SHARDS):
        shard = ray.get_actor(
            SHARD_NAME.format(group=module_store.db.name, index=i, count=SHARDS),
            namespace=NAMESPACE,
        )
        assert await shard.turn.remote(BatchOrder(sender, len(parts), 0))
        assert not await shard.turn.remote(BatchOrder(sender, len(parts) + 1, 0))
    assert {h.rule_id for d in served for h in d.rule_hits} >= {"rapid_transactions"}
    assert [dataclasses.replace(d, decided_at=T0) for d in served] == [
        dataclasses.replace(d, decided_at=T0) for d in in_process
    ]
    # What the decisions came to, without shipping them (a dry run: nothing is written).
    again = [t.replace(id=f"dry-{t.id}", tenant=f"{tenant}-dry") for t in stream[:8]]
    summary = await serve.get_app_handle(APP).score_summary.remote(sealed(again))
    assert summary.decided == 8
    assert sum(summary.by_risk.values()) == 8
    assert await module_store.decisions.list_for_transactions([t.id for t in again]) == []
