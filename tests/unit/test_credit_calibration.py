"""Tier tables, monotone bad rates and quantile cut-offs."""

from __future__ import annotations

import numpy as np
import pytest

from aml.credit.calibration import (
    assign_tiers,
    cutoffs_from_quantiles,
    cutoffs_of,
    tier_table,
)
from aml.credit.score import TierPolicy
from aml.domain import CreditTier

CUTS = cutoffs_of(TierPolicy())


def test_tier_table_counts_and_bad_rates() -> None:
    scores = [0.9, 0.85, 0.7, 0.6, 0.55, 0.4, 0.1, 0.2]
    bad = [0, 0, 0, 1, 0, 1, 1, 1]
    table = tier_table(scores, bad, CUTS)
    rows = {r.tier: r for r in table.rows}
    assert [rows[t].count for t in CreditTier] == [2, 1, 2, 1, 2]
    assert rows[CreditTier.A].bad_rate == 0.0
    assert rows[CreditTier.C].bad_rate == 0.5
    assert rows[CreditTier.E].bad_rate == 1.0
    assert table.monotone and table.violations == ()
    assert table.total == 8 and table.bad == 4
    md = table.to_markdown()
    assert "| C | 0.500 | 2 | 1 | 50.0% |" in md


def test_non_monotone_bad_rates_are_reported() -> None:
    scores = [0.9, 0.9, 0.7, 0.7]
    bad = [1, 1, 0, 0]
    table = tier_table(scores, bad, CUTS)
    assert not table.monotone
    assert "tier B bad rate 0.0% is not above tier A's 100.0%" in table.violations[0]


def test_empty_tiers_are_skipped_and_strict_mode_rejects_ties() -> None:
    table = tier_table([0.9, 0.1], [0, 0], CUTS)
    assert table.monotone
    assert next(r for r in table.rows if r.tier is CreditTier.C).bad_rate is None
    assert not tier_table([0.9, 0.1], [0, 0], CUTS, strict=True).monotone


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError):
        tier_table([0.5], [0, 1], CUTS)


def test_quantile_cutoffs_give_the_wanted_mix() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 10_000).tolist()
    shares = {
        CreditTier.A: 0.1,
        CreditTier.B: 0.2,
        CreditTier.C: 0.3,
        CreditTier.D: 0.2,
        CreditTier.E: 0.2,
    }
    cuts = cutoffs_from_quantiles(scores, shares)
    assert cuts[CreditTier.A] > cuts[CreditTier.B] > cuts[CreditTier.C] > cuts[CreditTier.D]
    tiers = assign_tiers(scores, cuts)
    for tier, share in shares.items():
        assert tiers.count(tier) / len(tiers) == pytest.approx(share, abs=0.01)
    with pytest.raises(ValueError):
        cutoffs_from_quantiles(scores, {CreditTier.A: 1.0})
