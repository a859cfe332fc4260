"""Behavioural credit features: values on hand-built histories, and the predecessor's bugs fixed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aml.credit.features import (
    FEATURE_NAMES,
    ClientInfo,
    columns_from_transactions,
    compute_features,
    feature_matrix,
    row_features,
)
from aml.domain import Direction, Transaction, TransactionStatus, TransactionType
from tests.factories import make_tx

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)


def tx(days_ago: float, amount: int, **kw: Any) -> Transaction:
    kw.setdefault("client_id", "c1")
    return make_tx(occurred_at=AS_OF - timedelta(days=days_ago), amount_minor=amount, **kw)


def dep(days_ago: float, amount: int, **kw: Any) -> Transaction:
    return tx(days_ago, amount, type=TransactionType.DEPOSIT, direction=Direction.IN, **kw)


def wd(days_ago: float, amount: int, **kw: Any) -> Transaction:
    return tx(days_ago, amount, type=TransactionType.WITHDRAWAL, direction=Direction.OUT, **kw)


def transfer(days_ago: float, amount: int, direction: Direction, cp: str, **kw: Any) -> Transaction:
    return tx(
        days_ago,
        amount,
        type=TransactionType.TRANSFER,
        direction=direction,
        counterparty_account_id=cp,
        **kw,
    )


def feats(txs: list[Transaction], **kw: Any) -> dict[str, float | None]:
    return dict(compute_features(txs, client_id="c1", as_of=AS_OF, **kw).values)


def test_all_twenty_features_are_produced() -> None:
    values = feats([dep(10, 1000)])
    assert tuple(values) == FEATURE_NAMES
    assert len(FEATURE_NAMES) == 20


def test_incoming_transfers_are_inflow_and_senders_are_senders() -> None:
    txs = [
        dep(5, 100_000),
        transfer(3, 50_000, Direction.IN, "savings:99"),
        transfer(2, 30_000, Direction.OUT, "savings:77"),
        transfer(40, 20_000, Direction.IN, "savings:55"),  # sender outside the 30 days
    ]
    v = feats(txs)
    assert v["incoming_transfer_ratio"] == pytest.approx(70_000 / 170_000)
    assert v["unique_transfer_senders_30d"] == 1.0  # savings:99; the recipient is not a sender
    assert v["outgoing_transfer_ratio"] == pytest.approx(1.0)
    assert v["max_single_deposit"] == 100_000


def test_transfers_between_own_accounts_are_neither_income_nor_spending() -> None:
    txs = [
        dep(5, 100_000, account_id="savings:1"),
        transfer(4, 60_000, Direction.OUT, "savings:2", account_id="savings:1"),
        transfer(4, 60_000, Direction.IN, "savings:1", account_id="savings:2"),
    ]
    v = feats(txs)
    assert v["incoming_transfer_ratio"] == 0.0
    assert v["max_single_withdrawal"] == 0.0
    assert v["avg_monthly_deposits"] == pytest.approx(100_000)  # one month observed


def test_frequency_uses_observed_window_not_lifetime() -> None:
    monthly = [dep(d, 1000) for d in range(1, 180, 3)]  # 60 transactions over 180 days
    old = feats(monthly, opened_at=AS_OF - timedelta(days=730))
    assert old["transaction_frequency"] == pytest.approx(10.0)  # 60 / 6 months, not 60 / 24
    young = feats([dep(d, 1000) for d in range(1, 60, 3)])  # 20 txs, first 58 days ago
    assert young["account_age_days"] == pytest.approx(58.0)
    assert young["transaction_frequency"] == pytest.approx(20 / (58 / 30))


def test_account_age_from_opening_date_when_given() -> None:
    txs = [dep(10, 1000)]
    assert feats(txs)["account_age_days"] == pytest.approx(10.0)
    opened = feats(txs, opened_at=AS_OF - timedelta(days=400))
    assert opened["account_age_days"] == pytest.approx(400.0)


def test_repayment_rate_unknown_without_loans_and_explained() -> None:
    f = compute_features([dep(10, 1000)], client_id="c1", as_of=AS_OF)
    assert f.values["loan_repayment_rate"] is None
    assert "no loan disbursed" in f.unknown["loan_repayment_rate"]
    loans = [
        tx(100, 100_000, type=TransactionType.LOAN_DISBURSEMENT, direction=Direction.IN),
        tx(50, 25_000, type=TransactionType.LOAN_REPAYMENT, direction=Direction.OUT),
        tx(20, 15_000, type=TransactionType.LOAN_REPAYMENT, direction=Direction.OUT),
    ]
    assert feats(loans)["loan_repayment_rate"] == pytest.approx(0.4)


def test_round_trip_matches_each_inflow_once_within_48_hours() -> None:
    txs = [
        dep(10, 100_000, counterparty_account_id="savings:X"),
        dep(20, 300_000),
        transfer(10 - 0.4, 60_000, Direction.OUT, "savings:X"),
        transfer(10 - 0.5, 60_000, Direction.OUT, "savings:X"),
        # Back to X again but more than 48 h after the inflow: not a round trip.
        dep(30, 50_000, counterparty_account_id="savings:X"),
        transfer(30 - 2.5, 50_000, Direction.OUT, "savings:X"),
    ]
    v = feats(txs)
    # 100k matched once (not 120k), the late return not at all; inflow total 450k.
    assert v["round_trip_score"] == pytest.approx(100_000 / 450_000)


def test_attempts_corrections_reversals_future_and_other_clients_are_ignored() -> None:
    base = [dep(10, 1000)]
    noise = [
        dep(9, 5000, status=TransactionStatus.REJECTED),
        dep(8, 5000, status=TransactionStatus.CORRECTION),
        dep(7, 5000, reversed=True),
        dep(-1, 5000),  # after as_of
        dep(0, 5000),  # exactly at as_of: the window is [start, as_of)
        dep(6, 5000, client_id="someone-else"),
        dep(181, 5000),  # before the window: only informs the account age
        dep(5, 5000, currency="EUR"),
    ]
    clean = compute_features(base, client_id="c1", as_of=AS_OF, currency="XAF")
    noisy = compute_features(base + noise, client_id="c1", as_of=AS_OF, currency="XAF")
    assert noisy.transaction_count == clean.transaction_count == 1
    assert noisy.values["max_single_deposit"] == clean.values["max_single_deposit"] == 1000
    assert noisy.values["account_age_days"] == pytest.approx(181.0)


def test_monthly_regularity_and_trends() -> None:
    steady = [dep(d, 100_000) for d in (5, 35, 65, 95, 125, 155)]
    v = feats(steady, opened_at=AS_OF - timedelta(days=365))
    assert v["deposit_consistency"] == pytest.approx(1.0)
    assert v["avg_monthly_deposits"] == pytest.approx(100_000)
    assert v["savings_rate"] == pytest.approx(1.0)
    assert v["deposit_trend"] == pytest.approx(1.0)
    lumpy = [dep(5, 600_000)]
    w = feats(lumpy, opened_at=AS_OF - timedelta(days=365))
    assert w["deposit_consistency"] == 0.0  # one month of six carries everything
    assert w["deposit_trend"] == pytest.approx(3.0)  # all of the quarter in its last month
    assert feats([dep(5, 1000)])["deposit_consistency"] == 0.5  # under two months observed


def test_geography_counterparties_and_fraud_history() -> None:
    txs = [
        dep(1, 100, country_code="CM", counterparty_account_id="a"),
        dep(2, 100, country_code="cm", counterparty_account_id="b"),
        dep(3, 100, country_code="NG", counterparty_account_id="a"),
        dep(4, 100),
    ]
    alerts = [AS_OF - timedelta(days=40), AS_OF - timedelta(days=90), AS_OF + timedelta(days=1)]
    v = feats(txs, fraud_alert_dates=alerts)
    assert v["geographic_stability"] == pytest.approx(0.75)
    assert v["unique_counterparties"] == 2.0
    assert v["total_fraud_alerts"] == 2.0  # the alert after as_of does not count yet
    assert v["days_since_last_fraud_alert"] == pytest.approx(40.0)
    assert feats(txs)["days_since_last_fraud_alert"] == 365.0


def test_batch_columns_give_the_same_features_as_one_client_at_a_time() -> None:
    clients = {
        "c1": [dep(5, 100_000, counterparty_account_id="x"), wd(3, 20_000, client_id="c1")],
        "c2": [
            dep(50, 70_000, client_id="c2", counterparty_account_id="x"),
            transfer(49.5, 70_000, Direction.OUT, "x", client_id="c2"),
            tx(90, 9_000, client_id="c2", type=TransactionType.LOAN_DISBURSEMENT),
        ],
        "c3": [],
    }
    info = {"c2": ClientInfo(opened_at=AS_OF - timedelta(days=900))}
    cols = columns_from_transactions(clients, as_of=AS_OF, info=info)
    matrix = feature_matrix(cols)
    for i, (cid, txs) in enumerate(clients.items()):
        batch = row_features(matrix, i, client_id=cid, currency="XAF", as_of=AS_OF, window_days=180)
        single = compute_features(
            txs,
            client_id=cid,
            as_of=AS_OF,
            opened_at=info[cid].opened_at if cid in info else None,
        )
        assert batch == single


@st.composite
def client_histories(draw: st.DrawFn, cid: str) -> list[Transaction]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        out.append(
            tx(
                draw(st.floats(0.01, 250)),
                draw(st.integers(1, 10**7)),
                client_id=cid,
                account_id=draw(st.sampled_from([f"savings:{cid}", f"loan:{cid}"])),
                type=draw(st.sampled_from(list(TransactionType))),
                direction=draw(st.sampled_from(list(Direction))),
                counterparty_account_id=draw(st.sampled_from([None, "x", "y", f"savings:{cid}"])),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, min_size=1).flatmap(
        lambda ids: st.fixed_dictionaries({c: client_histories(c) for c in ids})
    )
)
def test_chunked_and_single_client_features_agree_on_any_histories(
    clients: dict[str, list[Transaction]],
) -> None:
    matrix = feature_matrix(columns_from_transactions(clients, as_of=AS_OF))
    for i, (cid, txs) in enumerate(clients.items()):
        batch = row_features(matrix, i, client_id=cid, currency="XAF", as_of=AS_OF, window_days=180)
        assert batch == compute_features(txs, client_id=cid, as_of=AS_OF, currency="XAF")
