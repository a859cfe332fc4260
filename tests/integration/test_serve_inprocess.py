"""The in-process scoring hand-off (no Ray): transactions in, decisions and alerts out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aml.domain import AlertStatus, TransactionStatus
from serve.ingress.handoff import ScoringHandoff
from serve.scoring.client import in_process_scoring
from storage.store import Store
from tests.factories import T0, make_tx

pytestmark = pytest.mark.integration


async def test_every_transaction_gets_a_decision_and_risky_ones_one_grouped_alert(
    store: Store,
) -> None:
    normal = [make_tx(amount_minor=1_000, occurred_at=T0 + timedelta(hours=i)) for i in range(5)]
    big = [
        make_tx(amount_minor=9_000_000, occurred_at=T0 + timedelta(hours=10 + i)) for i in range(2)
    ]
    await store.transactions.insert_many([*normal, *big])
    handoff: ScoringHandoff = in_process_scoring(store)  # what the ingress hands off to

    await handoff.submit([*normal, *big])

    decisions = await store.decisions.list_for_transactions([t.id for t in [*normal, *big]])
    assert len(decisions) == 7
    by_tx = {d.transaction_id: d for d in decisions}
    assert not any(by_tx[t.id].alert for t in normal)
    assert all(by_tx[t.id].alert for t in big)
    assert "large_amount" in {h.rule_id for h in by_tx[big[0].id].rule_hits}
    # Before any model is trained the decision says so instead of scoring 0.
    models = {s.scorer: s for s in by_tx[big[0].id].scorers if s.scorer != "rules"}
    assert {s.reason for s in models.values()} == {"no model"}
    assert all(s.score is None for s in models.values())
    alert = await store.alerts.get_open_for_customer(
        tenant="default", customer_key=big[0].customer_key
    )
    assert alert is not None and alert.status is AlertStatus.OPEN
    assert set(alert.transaction_ids) == {big[0].id, big[1].id}
    assert await store.transactions.count({"status": TransactionStatus.SCORED.value}) == 7


async def test_resubmission_is_idempotent_and_attempts_are_not_scored(store: Store) -> None:
    big = make_tx(amount_minor=9_000_000)
    failed = make_tx(amount_minor=9_000_000, status=TransactionStatus.REJECTED)
    await store.transactions.insert_many([big, failed])
    handoff = in_process_scoring(store)

    await handoff.submit([big, failed])
    await handoff.submit([big])  # the sweeper re-submits after a lost acknowledgement

    assert await store.decisions.count() == 1
    assert await store.alerts.count() == 1
    alert = await store.alerts.get_open_for_customer(
        tenant="default", customer_key=big.customer_key
    )
    assert alert is not None and alert.transaction_ids == (big.id,)
    got = await store.transactions.get(failed.id)
    assert got is not None and got.status is TransactionStatus.REJECTED


async def test_history_stored_earlier_counts_after_a_cold_start(store: Store) -> None:
    # Twenty small deposits an hour ago, already scored by a process that has since stopped.
    earlier = [
        make_tx(amount_minor=1_000, occurred_at=T0 + timedelta(minutes=i)) for i in range(20)
    ]
    await store.transactions.insert_many(earlier)
    tx = make_tx(amount_minor=1_000, occurred_at=T0 + timedelta(minutes=25))
    await store.transactions.insert_many([tx])

    (decision,) = await in_process_scoring(store).score_and_store([tx])

    assert "rapid_transactions" in {h.rule_id for h in decision.rule_hits}
