"""Public data adapters produce well-formed domain transactions."""

from __future__ import annotations

from aml.domain import Direction, TransactionType
from training.datasets import load_amlsim, load_paysim


def test_paysim_rows_map_to_directed_transactions() -> None:
    rows = list(load_paysim(limit=2000))
    assert len(rows) == 2000
    kinds = {r.tx.type for r in rows}
    assert TransactionType.DEPOSIT in kinds
    for r in rows:
        tx = r.tx
        assert tx.occurred_at.tzinfo is not None
        assert tx.amount_minor > 0
        assert tx.direction is (
            Direction.IN if tx.type is TransactionType.DEPOSIT else Direction.OUT
        )
        assert tx.account_id.startswith("paysim:C")
    ids = [r.tx.id for r in rows]
    assert len(set(ids)) == len(ids)
    # Deterministic: a second load gives identical transactions.
    assert [r.tx for r in load_paysim(limit=50)] == [r.tx for r in rows[:50]]


def test_amlsim_is_time_ordered_with_account_labels() -> None:
    data = load_amlsim()
    assert len(data.transactions) == 120_558
    assert 1700 <= len(data.fraud_accounts) <= 1900
    times = [t.occurred_at for t in data.transactions]
    assert times == sorted(times)
    assert all(
        t.type is TransactionType.TRANSFER and t.counterparty_account_id
        for t in data.transactions[:100]
    )
