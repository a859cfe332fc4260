"""Labelled data sets: labels, point-in-time rows without leakage, time-ordered splits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aml.domain import AnalystDecision
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FeatureParams
from tests.factories import T0, make_tx
from training.dataset_build import (
    build_dataset,
    labels_from_verdicts,
    read_label_file,
    time_split,
)
from training.xgb_tune import best_f1_threshold, classification_metrics

PARAMS = FeatureParams()


def test_verdicts_become_labels_and_a_later_verdict_wins() -> None:
    labels = labels_from_verdicts(
        [
            (("a", "b"), AnalystDecision.CONFIRMED_FRAUD),
            (("c",), AnalystDecision.SUSPICIOUS),
            (("d",), AnalystDecision.LEGITIMATE),
            (("a",), AnalystDecision.LEGITIMATE),
        ]
    )
    assert labels == {"a": 0, "b": 1, "c": 1, "d": 0}


def test_label_files_in_csv_and_parquet(tmp_path: Path) -> None:
    csv = tmp_path / "l.csv"
    csv.write_text("transaction_id,label\nx,1\ny,0\n")
    parquet = tmp_path / "l.parquet"
    pd.DataFrame({"transaction_id": ["z"], "label": [1]}).to_parquet(parquet)
    assert read_label_file(csv) == {"x": 1, "y": 0}
    assert read_label_file(parquet) == {"z": 1}
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,label\nx,2\n")
    with pytest.raises(Unprocessable, match="0 or 1"):
        read_label_file(bad)
    with pytest.raises(Unprocessable, match="columns"):
        (tmp_path / "n.csv").write_text("id,y\nx,1\n")
        read_label_file(tmp_path / "n.csv")


def _stream() -> list:  # type: ignore[type-arg]
    return [
        make_tx(
            account_id="savings:1",
            amount_minor=10_000 * (i + 1),
            occurred_at=T0 + timedelta(hours=i),
        )
        for i in range(6)
    ]


def test_rows_see_unlabelled_history_but_never_the_future() -> None:
    txs = _stream()
    labels = {txs[3].id: 1, txs[4].id: 0}  # the first three are history only
    data = build_dataset(txs, labels, params=PARAMS)

    assert list(data.frame.index) == [txs[3].id, txs[4].id]
    assert list(data.frame.columns) == list(FEATURE_NAMES)
    assert data.frame.loc[txs[3].id, "tx_count_24h"] == 3.0  # history before it counts
    assert (
        data.frame.loc[txs[3].id, "total_amount_24h"] == 10_000 + 20_000 + 30_000
    )  # XAF: no minor digits
    assert list(data.labels) == [1, 0]

    # Changing what happens later must not change an earlier row.
    later = [*txs[:5], txs[5].replace(amount_minor=999_999_999)]
    again = build_dataset(later, labels, params=PARAMS)
    pd.testing.assert_frame_equal(again.frame, data.frame)
    # And without the history, the same transaction looks different (nothing before it).
    alone = build_dataset(txs[3:], labels, params=PARAMS)
    assert alone.frame.loc[txs[3].id, "tx_count_24h"] == 0.0


def test_extra_columns_follow_the_features() -> None:
    txs = _stream()
    data = build_dataset(
        txs, {t.id: 0 for t in txs}, params=PARAMS, extra={"balance": {txs[0].id: 5.0}}
    )
    assert list(data.frame.columns) == [*FEATURE_NAMES, "balance"]
    assert data.frame["balance"].tolist() == [5.0, 0, 0, 0, 0, 0]


def test_time_split_keeps_the_order_and_puts_tied_times_in_one_part() -> None:
    txs = [
        make_tx(account_id=f"savings:{i}", occurred_at=T0 + timedelta(hours=i // 2))
        for i in range(10)
    ]
    data = build_dataset(txs, {t.id: i % 2 for i, t in enumerate(txs)}, params=PARAMS)
    split = time_split(data, validation_fraction=0.3, test_fraction=0.3)
    parts = [split.train, split.validation, split.test]
    assert sum(len(p) for p in parts) == 10
    assert split.train.occurred_at.max() < split.validation.occurred_at.min()
    assert split.validation.occurred_at.max() < split.test.occurred_at.min()
    explicit = time_split(
        data, validation_from=T0 + timedelta(hours=2), test_from=T0 + timedelta(hours=4)
    )
    assert [len(explicit.train), len(explicit.validation), len(explicit.test)] == [4, 4, 2]
    with pytest.raises(Unprocessable, match="empty"):
        time_split(data, validation_from=T0, test_from=T0 + timedelta(hours=4))


def test_metrics_by_hand() -> None:
    y = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    # Ranked: .9(1) .8(1) .4(0) .35(1) .2 .1 -> AP = (1 + 1 + 3/4) / 3.
    m = classification_metrics(y, scores, threshold=0.5)
    assert m["auprc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8)
    # Best F1 cut: 0.35 keeps all three positives and one negative (F1 = 6/7).
    assert best_f1_threshold(y, scores) == pytest.approx(0.35)
    single = classification_metrics([0, 0], [0.1, 0.2], threshold=0.5)
    assert np.isnan(single["auprc"]) and single["f1"] == 0.0
