"""`fineract-aml backtest --data FILE`: replay a labelled file without any store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from aml.domain import Direction, TransactionType
from aml.settings import load_settings
from storage.codec import to_doc
from tests.factories import T0, make_tx
from training.datasets import load_labelled_file
from training.jobs import backtest


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("\n".join(json.dumps(r, default=str) for r in rows) + "\n")


def test_jsonl_file_is_replayed_and_scored_against_its_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path / "data"))
    big = make_tx(amount_minor=2_000_000, occurred_at=T0 + timedelta(hours=1))
    small = [
        make_tx(amount_minor=5_000, occurred_at=T0 + timedelta(hours=2, minutes=i))
        for i in range(3)
    ]
    out = make_tx(
        type=TransactionType.WITHDRAWAL,
        direction=Direction.OUT,
        amount_minor=7_000,
        occurred_at=T0 + timedelta(hours=3),
    )
    rows = [{**to_doc(big), "label": 1}] + [{**to_doc(t), "label": 0} for t in [*small, out]]
    data = tmp_path / "replay.jsonl"
    _write(data, rows)

    txs, labels = load_labelled_file(data)
    assert [t.id for t in txs] == [big.id, *[t.id for t in small], out.id]
    assert txs[0] == big and labels == {big.id: 1, **{t.id: 0 for t in [*small, out]}}

    report = backtest(load_settings(), data=data, out_dir=tmp_path / "report")
    assert (report.transactions, report.labelled, report.positives) == (5, 5, 1)
    large = next(r for r in report.rules if r.name == "large_amount")
    assert (large.alerts, large.true_positives, large.precision, large.recall) == (1, 1, 1.0, 1.0)
    assert (tmp_path / "report").is_dir() and any((tmp_path / "report").iterdir())


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    _write(data, [{"id": "x", "tenant": "t"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_labelled_file(data)
