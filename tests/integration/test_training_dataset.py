"""Data sets rebuilt from the store equal what serving computes for the same transactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aml.domain import AnalystDecision
from aml.features import FEATURE_NAMES, compute_features
from aml.history import MAX_LOOKBACK, build_context
from storage.store import Store
from tests.factories import T0, make_alert
from tests.integration.test_training_xgb import PARAMS, labelled_stream, seed_labels
from training.dataset_build import build_from_store, load_labels

pytestmark = pytest.mark.integration


async def test_rebuilt_rows_equal_serving_features_over_stored_history(
    store: Store, tmp_path: Path
) -> None:
    txs, labels = labelled_stream("parity", n=300, seed=11)
    label_file = await seed_labels(store, txs, labels, tmp_path)
    # Only the later half is labelled: the earlier half is history the rows must still see.
    late = sorted(txs, key=lambda t: t.occurred_at)[150:]
    keep = {t.id for t in late}
    label_file.write_text(
        "transaction_id,label\n"
        + "\n".join(f"{t.id},{labels[t.id]}" for t in late if t.id in keep)
        + "\n"
    )
    data = await build_from_store(store, params=PARAMS, label_files=[label_file])
    assert keep <= set(data.frame.index)

    for tx_id in list(data.frame.index)[::7]:
        tx = await store.transactions.get(tx_id)
        assert tx is not None
        history = await store.transactions.history(
            tx.tenant, tx.account_id, since=tx.occurred_at - MAX_LOOKBACK, until=tx.occurred_at
        )
        served = compute_features(tx, build_context(tx, history), params=PARAMS)
        row = data.frame.loc[tx_id]
        np.testing.assert_allclose(
            [served[n] for n in FEATURE_NAMES], row[list(FEATURE_NAMES)].to_numpy(), rtol=1e-12
        )
    assert data.occurred_at.is_monotonic_increasing


async def test_analyst_verdicts_override_bootstrap_labels(store: Store, tmp_path: Path) -> None:
    txs, labels = labelled_stream("override", n=30)
    label_file = await seed_labels(store, txs, labels, tmp_path)
    label_file.write_text(f"transaction_id,label\n{txs[0].id},1\n{txs[25].id},1\n")
    alert = await store.alerts.create(make_alert(transaction_ids=(txs[25].id,)))
    await store.alerts.decide(alert.id, decision=AnalystDecision.LEGITIMATE, by="ana", at=T0)
    merged = await load_labels(store, files=[label_file])
    assert merged[txs[0].id] == labels[txs[0].id]  # the stored verdict beats the file
    assert merged[txs[25].id] == 0
