"""Calibration of raw anomaly scores onto the policy's alert scale.

A raw Isolation Forest score has no meaning of its own; the predecessor's p5-p95 min-max scaling
put the top 5 % of *normal* traffic at 1.0 and made it alert. :class:`QuantileCalibrator` instead
maps a raw score through its empirical quantile in a reference sample (e.g. the training scores)
so that exactly the top ``alert_rate`` fraction of that traffic lands at or above the policy's
alert ``threshold``:

* raw scores below the cut (the ``1 - alert_rate`` quantile) map into ``[0, threshold)`` by their
  quantile among the reference scores below the cut;
* raw scores at or above the cut map into ``[threshold, 1]`` by their quantile within the tail.

The mapping is monotonic non-decreasing, piecewise linear between stored quantile knots, and
serialises to a plain dict that is stored with the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_KIND = "quantile"
_FORMAT = 1


def _knots(values: npt.NDArray[np.float64], n: int) -> tuple[float, ...]:
    if values.size == 0:
        return ()
    probs = np.linspace(0.0, 1.0, min(n, values.size))
    return tuple(float(v) for v in np.quantile(values, probs))


def _interp(raw: npt.NDArray[np.float64], knots: Sequence[float]) -> npt.NDArray[np.float64]:
    """Position of ``raw`` on the knots as a fraction in [0, 1] (ties: the highest position)."""
    xs = np.asarray(knots, dtype=np.float64)
    ps = np.linspace(0.0, 1.0, xs.size) if xs.size > 1 else np.ones(1)
    # np.interp needs strictly increasing x: keep the last (highest) position of every tie run.
    keep = np.append(xs[1:] != xs[:-1], True)
    out: npt.NDArray[np.float64] = np.interp(raw, xs[keep], ps[keep], left=0.0, right=1.0)
    return out


@dataclass(frozen=True, slots=True)
class QuantileCalibrator:
    """Raw anomaly score -> calibrated score in [0, 1], higher = more anomalous.

    Build it with :meth:`fit`; apply it with ``calibrator(raw)`` or :meth:`transform`.

    Attributes:
        alert_rate: fraction of reference traffic meant to reach ``threshold``.
        threshold: the policy's alert threshold the calibration targets.
        cut: raw score at and above which the calibrated score is ``>= threshold``.
        body: quantile knots of the reference scores below ``cut``.
        tail: quantile knots of the reference scores at or above ``cut``.
        n_reference: size of the reference sample.
    """

    alert_rate: float
    threshold: float
    cut: float
    body: tuple[float, ...]
    tail: tuple[float, ...]
    n_reference: int

    @classmethod
    def fit(
        cls,
        reference: Sequence[float] | npt.NDArray[np.floating[Any]],
        *,
        alert_rate: float = 0.005,
        threshold: float = 0.5,
        knots: int = 201,
    ) -> QuantileCalibrator:
        """Fit on a reference sample of raw scores (higher = more anomalous).

        Args:
            reference: raw scores of representative (mostly normal) traffic.
            alert_rate: fraction in (0, 1) of that traffic to place at or above ``threshold``.
            threshold: the policy's alert threshold, in (0, 1).
            knots: quantile knots kept per segment (resolution of the stored mapping).

        Raises:
            ValueError: on an empty or non-finite sample or out-of-range settings.
        """
        if not 0.0 < alert_rate < 1.0:
            raise ValueError(f"alert_rate must be in (0, 1), got {alert_rate}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if knots < 2:
            raise ValueError("knots must be at least 2")
        values = np.sort(np.asarray(reference, dtype=np.float64).ravel())
        if values.size == 0:
            raise ValueError("cannot calibrate on an empty reference sample")
        if not np.isfinite(values).all():
            raise ValueError("reference scores must be finite")
        top = max(1, math.ceil(alert_rate * values.size))
        cut = float(values[values.size - top])
        return cls(
            alert_rate=alert_rate,
            threshold=threshold,
            cut=cut,
            body=_knots(values[values < cut], knots),
            tail=_knots(values[values >= cut], knots),
            n_reference=int(values.size),
        )

    def transform(
        self, raw: Sequence[float] | npt.NDArray[np.floating[Any]]
    ) -> npt.NDArray[np.float64]:
        """Calibrate many raw scores at once (NaN inputs map to 0, "no evidence")."""
        x = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=-np.inf)
        below = np.nextafter(self.threshold, 0.0)
        low = (
            np.minimum(self.threshold * _interp(x, self.body), below)
            if self.body
            else np.zeros_like(x)
        )
        high = self.threshold + (1.0 - self.threshold) * _interp(x, self.tail)
        out: npt.NDArray[np.float64] = np.where(x >= self.cut, high, low)
        return out

    def __call__(self, raw: float) -> float:
        """Calibrated score of one raw score."""
        return float(self.transform(np.array([raw]))[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-compatible representation (stored next to the model)."""
        return {
            "kind": _KIND,
            "format": _FORMAT,
            "alert_rate": self.alert_rate,
            "threshold": self.threshold,
            "cut": self.cut,
            "body": list(self.body),
            "tail": list(self.tail),
            "n_reference": self.n_reference,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantileCalibrator:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: naming what is wrong with the stored calibration.
        """
        if data.get("kind") != _KIND or data.get("format") != _FORMAT:
            raise ValueError(
                f"not a quantile calibration (kind={data.get('kind')!r}, "
                f"format={data.get('format')!r})"
            )
        try:
            body = tuple(float(v) for v in data["body"])
            tail = tuple(float(v) for v in data["tail"])
            calibrator = cls(
                alert_rate=float(data["alert_rate"]),
                threshold=float(data["threshold"]),
                cut=float(data["cut"]),
                body=body,
                tail=tail,
                n_reference=int(data["n_reference"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete calibration: {exc}") from exc
        if not tail or list(tail) != sorted(tail) or list(body) != sorted(body):
            raise ValueError("calibration knots must be non-empty (tail) and sorted")
        if tail[0] != calibrator.cut or (body and body[-1] >= calibrator.cut):
            raise ValueError("calibration knots are inconsistent with the cut")
        return calibrator
