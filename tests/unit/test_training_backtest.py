"""Backtest numbers on a tiny labelled fixture, checked by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from aml.domain import TransactionStatus
from aml.rules.config import default_rule_config
from tests.factories import T0, make_tx
from training.backtest import backtest

BIG, SMALL = 9_000_000, 20_000  # XAF: above / far below the large-amount threshold


def fixture() -> tuple[list, dict[str, int]]:  # type: ignore[type-arg]
    amounts = [BIG, BIG, BIG, SMALL, SMALL, SMALL]
    txs = [
        make_tx(account_id=f"savings:bt{i}", amount_minor=a, occurred_at=T0 + timedelta(hours=i))
        for i, a in enumerate(amounts)
    ]
    # Labels: two of the big ones and one small one are bad; the last small one is unlabelled.
    labels = {txs[0].id: 1, txs[1].id: 1, txs[2].id: 0, txs[3].id: 1, txs[4].id: 0}
    return txs, labels


def test_counts_precision_recall_and_auprc_by_hand(tmp_path: Path) -> None:
    txs, labels = fixture()
    rejected = make_tx(amount_minor=BIG, status=TransactionStatus.REJECTED)
    report = backtest([*reversed(txs), rejected], labels)  # order and attempts do not matter

    assert (report.transactions, report.labelled, report.positives) == (6, 5, 3)
    o = report.overall
    # 3 big ones alert; 2 of the 3 labelled alerts are bad; 2 of the 3 positives are caught.
    assert (o.alerts, o.alert_rate, o.true_positives) == (3, 0.5, 2)
    assert o.precision == pytest.approx(2 / 3) and o.recall == pytest.approx(2 / 3)
    large = next(r for r in report.rules if r.name == "large_amount")
    assert (large.alerts, large.true_positives) == (3, 2)
    # Final scores tie within the big group (2 of 3 bad) and within the small labelled group
    # (1 of 2 bad): AP = P@first-cut * dR + P@second-cut * dR = (2/3)(2/3) + (3/5)(1/3).
    assert report.auprc["final"] == pytest.approx(2 / 3 * 2 / 3 + 3 / 5 * 1 / 3)
    assert report.auprc["xgboost"] is None and report.auprc["anomaly"] is None  # no models

    paths = report.write(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["overall"]["alerts"] == 3
    assert "| large_amount | 3 | 50.0 % | 66.7 % | 66.7 % |" in paths["markdown"].read_text()
    assert "<td>large_amount</td>" in paths["html"].read_text()


def test_a_different_rule_config_changes_the_replay() -> None:
    txs, labels = fixture()
    rules = default_rule_config().to_dict()
    rules["version"] = 2
    rules["thresholds"]["XAF"]["large_amount"] = 10_000
    rules["thresholds"]["XAF"]["structuring_floor"] = 5_000
    report = backtest(txs, labels, rules_config=rules)
    large = next(r for r in report.rules if r.name == "large_amount")
    # Now every transaction is "large": all 5 labelled rows alert, 3 of them bad.
    assert large.alerts == 6
    assert large.precision == pytest.approx(3 / 5) and large.recall == 1.0
