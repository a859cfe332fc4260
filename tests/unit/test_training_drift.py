"""PSI against a training baseline: by hand, bins from training quantiles, levels."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from aml.errors import Unprocessable
from tests.factories import T0, make_model
from training.drift import BASELINE_KEY, baseline, drift_run, feature_psi, level, psi


def test_psi_by_hand_and_empty_bins_stay_finite() -> None:
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5)
    expected = 0.4 * math.log(1.8) + (-0.4) * math.log(0.2)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # floored at 1e-6, not infinite
    assert [level(0.05), level(0.10), level(0.2), level(0.25)] == [
        "ok",
        "warning",
        "warning",
        "critical",
    ]


def test_baseline_bins_are_training_deciles_and_ties_collapse() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"amount": rng.normal(100, 10, 5000), "flag": rng.integers(0, 2, 5000)})
    base = baseline(train)
    amount = base["features"]["amount"]
    assert len(amount["edges"]) == 9 and len(amount["expected"]) == 10
    assert amount["expected"] == pytest.approx([0.1] * 10, abs=0.001)
    assert len(base["features"]["flag"]["expected"]) <= 3  # a binary feature: not ten bins

    same = pd.DataFrame({"amount": rng.normal(100, 10, 3000), "flag": rng.integers(0, 2, 3000)})
    shifted = same.assign(amount=same["amount"] + 15)
    assert feature_psi(base, same)["amount"] < 0.02
    assert feature_psi(base, shifted)["amount"] >= 0.25
    assert feature_psi(base, shifted)["flag"] < 0.02


def test_a_run_names_the_drifting_features() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
    record = make_model(params={BASELINE_KEY: baseline(train)})
    recent = pd.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(2, 1, 500)})
    run = drift_run(
        record, recent, window_from=T0, window_until=T0 + timedelta(days=1), computed_at=T0
    )
    assert run.level == "critical" and run.critical == ("b",) and run.rows == 500
    assert run.psi["a"] < 0.10
    with pytest.raises(Unprocessable, match="no recent traffic"):
        drift_run(record, recent.iloc[:0], window_from=T0, window_until=T0, computed_at=T0)
    with pytest.raises(Unprocessable, match="baseline"):
        drift_run(make_model(), recent, window_from=T0, window_until=T0, computed_at=T0)
