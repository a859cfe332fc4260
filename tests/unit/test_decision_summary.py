"""What a batch's decisions came to (``DecisionSummary``: the scoring path's counts)."""

from __future__ import annotations

import pickle

from aml.domain import RiskLevel
from serve.scoring.pipeline import DecisionSummary
from tests.factories import make_decision


def test_summary_counts_levels_and_alerts() -> None:
    decisions = [
        make_decision(risk_level=RiskLevel.LOW, alert=False),
        make_decision(risk_level=RiskLevel.HIGH, alert=True),
        make_decision(risk_level=RiskLevel.HIGH, alert=False),
        make_decision(risk_level=RiskLevel.CRITICAL, alert=True),
    ]
    summary = DecisionSummary.of(decisions)
    assert summary.decided == 4
    assert summary.alerts == 2
    assert summary.by_risk == {"low": 1, "medium": 0, "high": 2, "critical": 1}
    assert pickle.loads(pickle.dumps(summary)) == summary


def test_summaries_add_up() -> None:
    a = DecisionSummary.of([make_decision(risk_level=RiskLevel.MEDIUM, alert=False)])
    b = DecisionSummary.of([make_decision(risk_level=RiskLevel.CRITICAL, alert=True)] * 2)
    total = sum([a, b], DecisionSummary.empty())
    assert total == DecisionSummary(3, 2, {"low": 0, "medium": 1, "high": 0, "critical": 2})
    assert DecisionSummary.empty() == DecisionSummary(0, 0, dict.fromkeys(total.by_risk, 0))
    # Counts from elsewhere (another version's levels) are kept, not dropped.
    assert (a + DecisionSummary(1, 0, {"unknown": 1})).by_risk["unknown"] == 1
