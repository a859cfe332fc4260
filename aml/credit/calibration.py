"""Calibration of credit tiers against observed outcomes.

Given scores and binary outcomes (1 = bad: default, write-off, fraud), build the tier table (count
and bad rate per tier) and check that bad rates rise monotonically from tier A to tier E; and pick
tier cut-offs from score quantiles for a wanted tier mix.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aml.credit.score import TIER_ORDER, TierPolicy
from aml.domain import CreditTier


@dataclass(frozen=True, slots=True, kw_only=True)
class TierRow:
    """One tier of the table; ``bad_rate`` is ``None`` for an empty tier."""

    tier: CreditTier
    min_score: float
    count: int
    bad: int
    bad_rate: float | None
    mean_score: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TierTable:
    """Rows from A to E, whether bad rates are monotone, and where they are not."""

    rows: tuple[TierRow, ...]
    monotone: bool
    violations: tuple[str, ...]
    total: int
    bad: int

    def to_markdown(self) -> str:
        """The table as Markdown (for reports)."""
        lines = [
            "| Tier | Min score | Count | Bad | Bad rate | Mean score |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            rate = "-" if r.bad_rate is None else f"{r.bad_rate:.1%}"
            mean = "-" if r.mean_score is None else f"{r.mean_score:.3f}"
            lines.append(
                f"| {r.tier.value} | {r.min_score:.3f} | {r.count} | {r.bad} | {rate} | {mean} |"
            )
        overall = self.bad / self.total if self.total else 0.0
        lines.append(f"| all | | {self.total} | {self.bad} | {overall:.1%} | |")
        return "\n".join(lines)


def assign_tiers(scores: Sequence[float], cutoffs: Mapping[CreditTier, float]) -> list[CreditTier]:
    """Tier of each score under ``cutoffs`` (minimum score of A to D; E takes the rest)."""
    out: list[CreditTier] = []
    for s in scores:
        tier = CreditTier.E
        for t in TIER_ORDER[:-1]:
            if s >= cutoffs[t]:
                tier = t
                break
        out.append(tier)
    return out


def cutoffs_of(policy: TierPolicy) -> dict[CreditTier, float]:
    """The cut-offs of a configured tier policy."""
    return {t: policy.min_score(t) for t in TIER_ORDER}


def check_monotone(rows: Sequence[TierRow], *, strict: bool = False) -> tuple[str, ...]:
    """Pairs of adjacent non-empty tiers whose bad rate goes down from better to worse tier."""
    filled = [r for r in rows if r.bad_rate is not None]
    problems: list[str] = []
    for better, worse in itertools.pairwise(filled):
        assert better.bad_rate is not None and worse.bad_rate is not None
        down = worse.bad_rate < better.bad_rate
        if down or (strict and worse.bad_rate == better.bad_rate):
            problems.append(
                f"tier {worse.tier.value} bad rate {worse.bad_rate:.1%} is not above tier "
                f"{better.tier.value}'s {better.bad_rate:.1%}"
            )
    return tuple(problems)


def tier_table(
    scores: Sequence[float],
    outcomes: Sequence[int | bool],
    cutoffs: Mapping[CreditTier, float],
    *,
    strict: bool = False,
) -> TierTable:
    """Count and bad rate per tier, and whether bad rates rise from A to E.

    Args:
        scores: credit scores in [0, 1] (higher = better).
        outcomes: 1/True for a bad outcome, aligned with ``scores``.
        cutoffs: minimum score of each tier A to D (E: the rest).
        strict: require strictly rising bad rates (equal rates count as a violation).

    Returns:
        The table with its monotonicity verdict.

    Raises:
        ValueError: ``scores`` and ``outcomes`` differ in length.
    """
    if len(scores) != len(outcomes):
        raise ValueError("scores and outcomes must have the same length")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.int64)
    tiers = np.asarray([t.value for t in assign_tiers(s.tolist(), cutoffs)])
    rows: list[TierRow] = []
    for t in TIER_ORDER:
        mask = tiers == t.value
        n = int(mask.sum())
        bad = int(y[mask].sum())
        rows.append(
            TierRow(
                tier=t,
                min_score=float(cutoffs.get(t, 0.0)),
                count=n,
                bad=bad,
                bad_rate=bad / n if n else None,
                mean_score=float(s[mask].mean()) if n else None,
            )
        )
    violations = check_monotone(rows, strict=strict)
    return TierTable(
        rows=tuple(rows),
        monotone=not violations,
        violations=violations,
        total=len(s),
        bad=int(y.sum()),
    )


def cutoffs_from_quantiles(
    scores: Sequence[float], shares: Mapping[CreditTier, float]
) -> dict[CreditTier, float]:
    """Tier cut-offs that give each tier roughly the wanted share of clients.

    Args:
        scores: the reference population's scores.
        shares: wanted share of each tier A to E (summing to 1); A takes the highest scores.

    Returns:
        Minimum score per tier (E: 0).

    Raises:
        ValueError: no scores, or shares missing a tier, negative or not summing to 1.
    """
    if len(scores) == 0:
        raise ValueError("need scores to choose cut-offs from")
    wanted = [float(shares.get(t, -1.0)) for t in TIER_ORDER]
    if any(w < 0 for w in wanted) or abs(sum(wanted) - 1.0) > 1e-6:
        raise ValueError("shares must give every tier A-E a non-negative share summing to 1")
    s = np.asarray(scores, dtype=np.float64)
    cut: dict[CreditTier, float] = {}
    above = 0.0
    previous = np.inf
    for t, share in zip(TIER_ORDER[:-1], wanted[:-1], strict=True):
        above += share
        q = float(np.quantile(s, max(0.0, 1.0 - above))) if above < 1.0 else float(s.min())
        # Cut-offs must decrease strictly so that every tier is reachable.
        q = min(q, np.nextafter(previous, -np.inf))
        cut[t] = q
        previous = q
    cut[CreditTier.E] = 0.0
    return cut
