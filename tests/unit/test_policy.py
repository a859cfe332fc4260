"""Decision policy: absent is not zero, monotonic, risk bands, alert rate, explanation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aml.calibration import QuantileCalibrator
from aml.domain import FeatureContribution, RiskLevel, RuleHit, ScorerResult
from aml.errors import ConfigError
from aml.features import FEATURE_SET_VERSION
from aml.policy import PolicyConfig, decide
from aml.rules.engine import RuleEvaluation, combine
from tests.factories import make_tx

CONFIG = PolicyConfig()
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
TX = make_tx()
NO_RULES = RuleEvaluation(score=0.0, hits=(), config_version=4)


def hit(rule_id: str, severity: float, description: str = "") -> RuleHit:
    return RuleHit(rule_id=rule_id, category="test", severity=severity, description=description)


def rules_of(*hits: RuleHit) -> RuleEvaluation:
    return RuleEvaluation(score=combine(h.severity for h in hits), hits=hits, config_version=4)


def anomaly(score: float | None, **kw: object) -> ScorerResult:
    if score is None:
        return ScorerResult(scorer="anomaly", available=False, reason="no model")
    return ScorerResult(scorer="anomaly", available=True, score=score, model_version="if-3", **kw)  # type: ignore[arg-type]


def xgb(score: float | None, **kw: object) -> ScorerResult:
    if score is None:
        return ScorerResult(scorer="xgboost", available=False, reason="service down")
    return ScorerResult(scorer="xgboost", available=True, score=score, model_version="xgb-7", **kw)  # type: ignore[arg-type]


def score_of(rules: RuleEvaluation, a: float | None, x: float | None) -> float:
    return decide(TX, rules, [anomaly(a), xgb(x)], config=CONFIG, decided_at=NOW).score


def test_absent_scorer_is_not_zero_and_its_weight_is_redistributed() -> None:
    absent = decide(TX, NO_RULES, [anomaly(None), xgb(0.8)], config=CONFIG, decided_at=NOW)
    zero = decide(TX, NO_RULES, [anomaly(0.0), xgb(0.8)], config=CONFIG, decided_at=NOW)
    assert absent.score == pytest.approx(0.8)
    assert zero.score == pytest.approx(0.7 * 0.8)
    recorded = {r.scorer: r for r in absent.scorers}
    assert recorded["anomaly"].available is False
    assert recorded["anomaly"].score is None
    assert recorded["anomaly"].reason == "no model"
    assert {r.scorer: r.score for r in zero.scorers}["anomaly"] == 0.0


def test_missing_result_recorded_absent_and_no_models_means_rules_only() -> None:
    decision = decide(TX, rules_of(hit("large_amount", 0.4)), [], config=CONFIG, decided_at=NOW)
    assert decision.score == pytest.approx(0.4)
    recorded = {r.scorer: r for r in decision.scorers}
    assert recorded["rules"].score == pytest.approx(0.4)
    assert recorded["xgboost"].available is False
    assert recorded["xgboost"].reason == "no result"
    assert recorded["anomaly"].available is False


def test_invalid_scores_are_absent_and_out_of_range_clamped() -> None:
    nan = decide(TX, NO_RULES, [anomaly(float("nan")), xgb(0.6)], config=CONFIG, decided_at=NOW)
    assert nan.score == pytest.approx(0.6)
    assert {r.scorer: r.available for r in nan.scorers}["anomaly"] is False
    no_score = ScorerResult(scorer="anomaly", available=True, score=None)
    assert decide(TX, NO_RULES, [no_score, xgb(0.6)], config=CONFIG, decided_at=NOW).score == 0.6
    high = decide(TX, NO_RULES, [anomaly(None), xgb(1.7)], config=CONFIG, decided_at=NOW)
    assert high.score == 1.0
    with pytest.raises(ValueError, match="duplicate"):
        decide(TX, NO_RULES, [xgb(0.1), xgb(0.2)], config=CONFIG, decided_at=NOW)


def test_strong_rule_alone_alerts_even_when_models_see_nothing() -> None:
    decision = decide(
        TX,
        rules_of(hit("sanctions_match", 0.95)),
        [anomaly(0.0), xgb(0.0)],
        config=CONFIG,
        decided_at=NOW,
    )
    assert decision.score == pytest.approx(0.95)
    assert decision.alert is True
    assert decision.risk_level is RiskLevel.CRITICAL


def test_rule_score_is_floored_at_its_strongest_hit() -> None:
    # An evaluation whose combined score understates a hit cannot hide it.
    odd = RuleEvaluation(score=0.1, hits=(hit("structuring", 0.7),), config_version=4)
    assert score_of(odd, None, None) == pytest.approx(0.7)


scores = st.one_of(st.none(), st.floats(0.0, 1.0))
unit = st.floats(0.0, 1.0)


@given(st.lists(unit, max_size=4), scores, scores, unit, st.sampled_from(["r", "a", "x"]))
def test_raising_any_component_never_lowers_the_final_score(
    severities: list[float], a: float | None, x: float | None, bump: float, which: str
) -> None:
    rules = rules_of(*(hit(f"r{i}", s) for i, s in enumerate(severities)))
    before = score_of(rules, a, x)
    assert 0.0 <= before <= 1.0
    if which == "r":
        after = score_of(rules_of(*rules.hits, hit("extra", bump)), a, x)
    elif which == "a" and a is not None:
        after = score_of(rules, min(1.0, a + bump), x)
    elif which == "x" and x is not None:
        after = score_of(rules, a, min(1.0, x + bump))
    else:
        return
    assert after >= before


@given(st.lists(unit, max_size=4), unit, unit)
def test_adding_a_firing_rule_never_lowers_the_score(
    severities: list[float], a: float, x: float
) -> None:
    base = rules_of(*(hit(f"r{i}", s) for i, s in enumerate(severities)))
    more = rules_of(*base.hits, hit("new_rule", 0.3))
    assert score_of(more, a, x) >= score_of(base, a, x)


@pytest.mark.parametrize(
    ("score", "level", "alert"),
    [
        (0.0, RiskLevel.LOW, False),
        (0.29, RiskLevel.LOW, False),
        (0.3, RiskLevel.MEDIUM, False),
        (0.5, RiskLevel.MEDIUM, True),
        (0.6, RiskLevel.HIGH, True),
        (0.85, RiskLevel.CRITICAL, True),
        (1.0, RiskLevel.CRITICAL, True),
    ],
)
def test_risk_bands_and_alert_threshold(score: float, level: RiskLevel, alert: bool) -> None:
    decision = decide(TX, NO_RULES, [anomaly(None), xgb(score)], config=CONFIG, decided_at=NOW)
    assert (decision.risk_level, decision.alert) == (level, alert)


def test_custom_cut_offs() -> None:
    config = PolicyConfig(medium=0.2, high=0.4, critical=0.7, alert_threshold=0.35)
    decision = decide(TX, NO_RULES, [xgb(0.38)], config=config, decided_at=NOW)
    assert (decision.risk_level, decision.alert) == (RiskLevel.MEDIUM, True)


def test_calibrated_anomaly_alone_alerts_at_the_configured_rate_not_more() -> None:
    rng = np.random.default_rng(0)
    calibrator = QuantileCalibrator.fit(rng.gamma(2.0, 0.05, 20_000), alert_rate=0.01)
    traffic = calibrator.transform(rng.gamma(2.0, 0.05, 5_000))
    alone = [
        decide(TX, NO_RULES, [anomaly(float(a)), xgb(None)], config=CONFIG, decided_at=NOW).alert
        for a in traffic
    ]
    assert np.mean(alone) == pytest.approx(0.01, abs=0.005)
    # Once the classifier answers and sees nothing, anomaly alone no longer alerts.
    corroborated = [
        decide(TX, NO_RULES, [anomaly(float(a)), xgb(0.05)], config=CONFIG, decided_at=NOW).alert
        for a in traffic
    ]
    assert not any(corroborated)


def test_decision_keeps_versions_and_identity() -> None:
    rules = rules_of(hit("velocity", 0.3))
    decision = decide(
        TX,
        rules,
        [anomaly(0.2), xgb(0.4)],
        config=CONFIG,
        decided_at=NOW,
        shadow_scores={"xgb-8": 0.45},
    )
    assert (decision.transaction_id, decision.tenant) == (TX.id, TX.tenant)
    assert decision.decided_at == NOW
    assert decision.rule_config_version == 4
    assert decision.feature_set_version == FEATURE_SET_VERSION
    assert {r.scorer: r.model_version for r in decision.scorers} == {
        "rules": "rules-config-4",
        "anomaly": "if-3",
        "xgboost": "xgb-7",
    }
    assert decision.rule_hits == rules.hits
    assert decision.shadow_scores == {"xgb-8": 0.45}


def test_explanation_names_top_reasons_in_order_and_absent_scorers() -> None:
    contributions = (
        FeatureContribution(feature="amount_vs_avg_ratio", value=32.0, contribution=0.41),
        FeatureContribution(feature="is_new_device", value=1.0, contribution=0.12),
    )
    decision = decide(
        TX,
        rules_of(hit("structuring", 0.7, "3 deposits just below 5,000,000 XAF"), hit("night", 0.1)),
        [anomaly(None), xgb(0.9, contributions=contributions)],
        config=PolicyConfig(max_reasons=2),
        decided_at=NOW,
    )
    text = decision.explanation
    assert text.startswith("CRITICAL risk, score 0.90 (alert).")
    assert text.index("xgboost score 0.90") < text.index("rule structuring")
    assert "amount_vs_avg_ratio=32 (+0.41)" in text
    assert "3 deposits just below 5,000,000 XAF" in text
    assert "rule night" not in text  # beyond max_reasons
    assert "Not available: anomaly (no model)." in text


def test_explanation_when_nothing_is_suspicious() -> None:
    decision = decide(TX, NO_RULES, [anomaly(0.0), xgb(0.0)], config=CONFIG, decided_at=NOW)
    assert (
        decision.explanation == "LOW risk, score 0.00. No rule fired; models see nothing unusual."
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"medium": 0.7, "high": 0.6},
        {"alert_threshold": 0.0},
        {"critical": 1.5},
        {"weights": {"anomaly": -1.0, "xgboost": 1.0}},
        {"weights": {"anomaly": 0.0}},
        {"weights": {"rules": 0.5, "xgboost": 0.5}},
        {"max_reasons": 0},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = PolicyConfig(weights={"anomaly": 0.5, "xgboost": 0.5}, alert_threshold=0.6)
    assert PolicyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        PolicyConfig.from_dict({"treshold": 0.5})
