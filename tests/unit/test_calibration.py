"""Quantile calibration of anomaly scores: the alert rate holds on unseen traffic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aml.calibration import QuantileCalibrator


def normal_traffic(n: int, seed: int) -> np.ndarray:
    """Skewed raw scores resembling an Isolation Forest's inverted decision function."""
    rng = np.random.default_rng(seed)
    return rng.gamma(shape=2.0, scale=0.05, size=n) - 0.1


@pytest.mark.parametrize("alert_rate", [0.005, 0.02])
def test_alert_rate_holds_on_held_out_traffic(alert_rate: float) -> None:
    calibrator = QuantileCalibrator.fit(normal_traffic(40_000, 1), alert_rate=alert_rate)
    held_out = calibrator.transform(normal_traffic(40_000, 2))
    rate = float((held_out >= 0.5).mean())
    assert rate == pytest.approx(alert_rate, rel=0.25)
    # The predecessor's p5-p95 scaling would have put ~5 % at the top; the median stays low.
    assert float(np.median(held_out)) == pytest.approx(0.25, abs=0.02)


def test_reference_itself_alerts_at_the_configured_rate() -> None:
    reference = normal_traffic(10_000, 3)
    calibrator = QuantileCalibrator.fit(reference, alert_rate=0.01, threshold=0.7)
    assert int((calibrator.transform(reference) >= 0.7).sum()) == 100
    assert calibrator(float(reference.max())) == 1.0
    assert calibrator(float(reference.max()) + 10) == 1.0
    assert calibrator(float(reference.min()) - 10) == 0.0


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=200), st.floats(-6, 6), st.floats(-6, 6))
def test_monotonic_and_bounded(reference: list[float], a: float, b: float) -> None:
    calibrator = QuantileCalibrator.fit(reference, alert_rate=0.1)
    lo, hi = sorted((a, b))
    assert 0.0 <= calibrator(lo) <= calibrator(hi) <= 1.0
    assert (calibrator(hi) >= 0.5) == (hi >= calibrator.cut)


def test_ties_and_constant_reference() -> None:
    constant = QuantileCalibrator.fit([0.3] * 50)
    assert constant(0.2) == 0.0
    assert constant(0.3) >= 0.5
    discrete = QuantileCalibrator.fit([0.0] * 90 + [1.0] * 10, alert_rate=0.1)
    assert discrete(0.0) < 0.5 <= discrete(1.0)


def test_round_trip_through_plain_dict() -> None:
    calibrator = QuantileCalibrator.fit(normal_traffic(5_000, 4), alert_rate=0.005)
    data = json.loads(json.dumps(calibrator.to_dict()))
    restored = QuantileCalibrator.from_dict(data)
    probe = normal_traffic(1_000, 5)
    np.testing.assert_array_equal(restored.transform(probe), calibrator.transform(probe))
    assert restored == calibrator


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        QuantileCalibrator.fit([])
    with pytest.raises(ValueError, match="finite"):
        QuantileCalibrator.fit([0.1, float("nan")])
    with pytest.raises(ValueError, match="alert_rate"):
        QuantileCalibrator.fit([0.1], alert_rate=0.0)
    with pytest.raises(ValueError, match="kind"):
        QuantileCalibrator.from_dict({"kind": "minmax"})
    data = QuantileCalibrator.fit([0.1, 0.2, 0.3]).to_dict()
    data["tail"] = []
    with pytest.raises(ValueError, match="tail"):
        QuantileCalibrator.from_dict(data)
    assert QuantileCalibrator.fit([0.1, 0.2])(float("nan")) == 0.0
