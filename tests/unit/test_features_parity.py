"""Frame path (training) == row path (serving), point in time, whatever the arrival order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from aml.domain import ActorType, Direction, Transaction, TransactionStatus, TransactionType
from aml.features import FEATURE_NAMES, FeatureParams, compute_features, feature_frame
from aml.history import build_context
from tests.factories import make_tx

PARAMS = FeatureParams()
START = datetime(2026, 3, 1, tzinfo=UTC)
ACCOUNTS = [f"savings:{i}" for i in range(1, 7)]


def generate_stream(n: int, seed: int) -> list[Transaction]:
    """Transactions over ~10 days on a few accounts, in a shuffled (late-arrival) order."""
    rng = random.Random(seed)
    txs: list[Transaction] = []
    t = START
    for i in range(n):
        # Bursts and gaps; some exact timestamp ties to exercise the id tie-break.
        t += timedelta(minutes=rng.choice([0, 1, 3, 20, 90, 400]))
        kind = rng.random()
        acct = rng.choice(ACCOUNTS)
        fields: dict[str, object] = {
            "tenant": "default" if rng.random() < 0.9 else "other",
            "dedupe_key": f"gen|{seed}|{i}",
            "occurred_at": t,
            "received_at": t + timedelta(hours=rng.choice([0, 0, 1, 30])),
            "account_id": acct,
            "amount_minor": rng.choice([500, 10_000, 25_000, 100_000, rng.randint(1, 900_000)]),
            "currency": "XAF" if rng.random() < 0.95 else "EUR",
            "ip_address": rng.choice([None, "10.0.0.1", "10.0.0.2", "41.202.1.9"]),
            "device_id": rng.choice([None, "phone-a", "phone-b"]),
            "country_code": rng.choice([None, "CM", "CM", "NG"]),
            "kyc_level": rng.choice([None, 1, 2, 3]),
            "status": rng.choice([TransactionStatus.SCORED] * 8 + [TransactionStatus.REJECTED]),
        }
        if kind < 0.35:
            other = rng.choice([a for a in ACCOUNTS if a != acct])
            fields |= {
                "type": TransactionType.TRANSFER,
                "direction": rng.choice([Direction.IN, Direction.OUT]),
                "counterparty_account_id": other,
            }
        elif kind < 0.55:
            fields |= {
                "type": TransactionType.WITHDRAWAL,
                "direction": Direction.OUT,
                "actor_type": ActorType.AGENT,
                "agent_id": rng.choice(["agent-1", "agent-2"]),
            }
        elif kind < 0.6:
            fields |= {
                "type": TransactionType.LOAN_DISBURSEMENT,
                "direction": Direction.OUT,
                "account_id": f"loan:{rng.randint(1, 3)}",
                "counterparty_account_id": acct,
            }
        else:
            fields |= {"type": TransactionType.DEPOSIT, "direction": Direction.IN}
        txs.append(make_tx(**fields))
    # A mirrored pair: both legs of one transfer.
    leg = txs[len(txs) // 2]
    txs.append(
        make_tx(
            dedupe_key=f"gen|{seed}|mirror",
            occurred_at=leg.occurred_at + timedelta(seconds=30),
            account_id="savings:9",
            counterparty_account_id=leg.account_id,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            amount_minor=leg.amount_minor,
            currency=leg.currency,
        )
    )
    rng.shuffle(txs)
    return txs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frame_rows_equal_row_path_exactly(seed: int) -> None:
    txs = generate_stream(400, seed)
    frame = feature_frame(txs, params=PARAMS)
    assert list(frame.columns) == list(FEATURE_NAMES)
    assert list(frame.index) == [tx.id for tx in txs]
    assert frame.dtypes.unique().tolist() == [np.dtype("float64")]
    assert np.isfinite(frame.to_numpy()).all()
    nonzero_history = client_history = 0
    for tx in txs:
        ctx = build_context(tx, txs)
        expected = compute_features(tx, ctx, params=PARAMS)
        assert frame.loc[tx.id].tolist() == list(expected.values()), tx.id
        nonzero_history += expected["tx_count_7d"] > 0
        client_history += bool(ctx.client)
    # The stream really exercises history (not a parity of empty contexts), including the
    # client's other accounts, which the frame path does not build: no feature may read them.
    assert nonzero_history > len(txs) * 0.8
    assert client_history > len(txs) * 0.5


def test_arrival_order_does_not_matter() -> None:
    txs = generate_stream(300, 7)
    shuffled = feature_frame(txs, params=PARAMS)
    in_order = feature_frame(sorted(txs, key=lambda t: (t.occurred_at, t.id)), params=PARAMS)
    pd.testing.assert_frame_equal(shuffled.sort_index(), in_order.sort_index())


def test_later_transactions_never_change_earlier_features() -> None:
    txs = sorted(generate_stream(300, 11), key=lambda t: (t.occurred_at, t.id))
    cut = len(txs) // 2
    early = feature_frame(txs[:cut], params=PARAMS)
    full = feature_frame(txs, params=PARAMS)
    pd.testing.assert_frame_equal(early, full.loc[early.index])


def test_late_event_changes_only_the_rows_after_it() -> None:
    txs = sorted(generate_stream(200, 5), key=lambda t: (t.occurred_at, t.id))
    target = txs[100]
    late = make_tx(
        dedupe_key="late-arrival",
        occurred_at=target.occurred_at - timedelta(seconds=1),
        account_id=target.account_id,
        tenant=target.tenant,
        amount_minor=777_000,
        currency=target.currency,
    )
    before = feature_frame(txs, params=PARAMS)
    after = feature_frame([*txs, late], params=PARAMS)
    assert after.loc[target.id, "tx_count_1h"] == before.loc[target.id, "tx_count_1h"] + 1
    assert after.loc[target.id, "minutes_since_last_tx"] == pytest.approx(1 / 60)
    earlier_ids = [t.id for t in txs if (t.occurred_at, t.id) < (late.occurred_at, late.id)]
    pd.testing.assert_frame_equal(before.loc[earlier_ids], after.loc[earlier_ids])


def test_duplicate_ids_are_replays_of_the_first() -> None:
    txs = generate_stream(50, 3)
    frame = feature_frame([*txs, txs[0]], params=PARAMS)
    pd.testing.assert_frame_equal(frame, feature_frame(txs, params=PARAMS))


def test_empty_batch() -> None:
    frame = feature_frame([], params=PARAMS)
    assert frame.shape == (0, len(FEATURE_NAMES))
