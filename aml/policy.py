"""The decision policy: the one place that turns scorer outputs into a :class:`Decision`.

Combination (``final = max(rules, models)``):

* ``rules`` is the rule engine's score (already a monotonic noisy-OR of the hits' severities),
  floored at the strongest hit's severity so that adding a firing rule can never lower it.
* ``models`` is the weighted mean of the *available* model scorers (by default the calibrated
  anomaly score and the XGBoost probability). A scorer that is missing, down or has no model is
  recorded as absent, never as 0, and its weight is shared among the scorers that answered.

Why this shape:

* A strong rule alone alerts: compliance sets rule severities, and a model saying "looks
  normal" must not veto a sanctions or structuring hit. A weighted blend of rules with models
  (the predecessor's ``0.5*rules + 0.3*anomaly + 0.2*ML``) dilutes exactly those hits.
* The anomaly score cannot flood analysts: it arrives quantile-calibrated
  (:mod:`aml.calibration`) so that only the configured share of normal traffic reaches the alert
  threshold. Without a supervised model it stands alone and alerts at that rate; once XGBoost is
  available, an anomaly needs the classifier's agreement (its share of the model mean is
  ``w_anomaly / (w_anomaly + w_xgboost)``).
* ``max`` and a mean with non-negative weights are both non-decreasing in every argument, so the
  final score is monotonic in every component and stays in ``[0, 1]``.

The risk level comes from the configured cut-offs, the alert from the alert threshold, and the
decision keeps every scorer's model version plus the rule-config and feature-set versions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from aml.domain import (
    Decision,
    FeatureContribution,
    RiskLevel,
    RuleHit,
    ScorerResult,
    Transaction,
    ensure_utc,
    fast_init,
)
from aml.errors import ConfigError
from aml.features import FEATURE_SET_VERSION

RULES = "rules"
ANOMALY = "anomaly"
XGBOOST = "xgboost"

DEFAULT_WEIGHTS: Mapping[str, float] = {ANOMALY: 0.3, XGBOOST: 0.7}

# Built for every transaction: the fast constructors build the same objects as the classes.
_new_decision = fast_init(Decision)
_new_result = fast_init(ScorerResult)
_LEVEL_TEXT = {level: level.value.upper() for level in RiskLevel}
# The rules' result of a transaction without a rule score, per rule-config version.
_RULES_RESULT: dict[int, ScorerResult] = {}
# "Not available: ..." by the absent scorers' (name, reason): the same few on every decision.
_ABSENT_TEXT: dict[tuple[tuple[str, str | None], ...], str] = {}
# The last ``decided_at`` given and its UTC form (one conversion per batch, not per decision).
_utc_memo: tuple[datetime | None, datetime] = (None, datetime.min)


class RuleOutcome(Protocol):
    """What the policy reads from a rule evaluation (``aml.rules.engine.RuleEvaluation``)."""

    @property
    def score(self) -> float: ...

    @property
    def hits(self) -> tuple[RuleHit, ...]: ...

    @property
    def config_version(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """Tunable numbers of the decision policy.

    Attributes:
        weights: weight of each model scorer in the model mean (non-negative, not all zero).
            Scorers not listed are recorded on the decision but do not move the score.
        medium: scores at or above this are MEDIUM risk (below: LOW).
        high: scores at or above this are HIGH risk.
        critical: scores at or above this are CRITICAL risk.
        alert_threshold: scores at or above this raise an alert.
        feature_set_version: feature set the models were fed (stored on every decision).
        max_reasons: how many reasons the explanation names.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    medium: float = 0.3
    high: float = 0.6
    critical: float = 0.85
    alert_threshold: float = 0.5
    feature_set_version: str = FEATURE_SET_VERSION
    max_reasons: int = 3

    def __post_init__(self) -> None:
        for name in ("medium", "high", "critical", "alert_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value <= 1.0):
                raise ConfigError(f"policy {name} must be in (0, 1]", field=name, value=value)
        if not self.medium <= self.high <= self.critical:
            raise ConfigError(
                "policy cut-offs must satisfy medium <= high <= critical",
                field="medium/high/critical",
            )
        if RULES in self.weights:
            raise ConfigError("the rule score is not weighted: it enters by max", field="weights")
        bad = {k: v for k, v in self.weights.items() if not (math.isfinite(v) and v >= 0.0)}
        if bad or not any(v > 0 for v in self.weights.values()):
            raise ConfigError(
                "policy weights must be finite, non-negative and not all zero",
                field="weights",
                value=dict(self.weights),
            )
        if self.max_reasons < 1:
            raise ConfigError("policy max_reasons must be at least 1", field="max_reasons")

    def risk_level(self, score: float) -> RiskLevel:
        """Risk band of a final score."""
        if score >= self.critical:
            return RiskLevel.CRITICAL
        if score >= self.high:
            return RiskLevel.HIGH
        if score >= self.medium:
            return RiskLevel.MEDIUM
        return RiskLevel.LOW

    def to_dict(self) -> dict[str, Any]:
        """Plain representation (stored, versioned and hot-reloaded like the rule config)."""
        return {
            "weights": dict(self.weights),
            "medium": self.medium,
            "high": self.high,
            "critical": self.critical,
            "alert_threshold": self.alert_threshold,
            "feature_set_version": self.feature_set_version,
            "max_reasons": self.max_reasons,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """Build from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ConfigError: naming an unknown or invalid field.
        """
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError("unknown policy config fields", fields=unknown)
        values = dict(data)
        if "weights" in values:
            try:
                values["weights"] = {str(k): float(v) for k, v in dict(values["weights"]).items()}
            except (TypeError, ValueError) as exc:
                raise ConfigError("policy weights must be numbers", field="weights") from exc
        return cls(**values)


def _sanitise(result: ScorerResult) -> ScorerResult:
    """A result the policy can use, or the same result marked absent with the reason."""
    score = result.score
    if result.available and type(score) is float and 0.0 <= score <= 1.0:
        # The usual case: a clean float in range is used as it is (no copy).
        return result
    if not result.available:
        if score is None and result.reason:
            return result
        return replace(result, score=None, reason=result.reason or "unavailable")
    if score is None:
        return replace(result, available=False, reason="available but returned no score")
    if not math.isfinite(score):
        return replace(result, available=False, score=None, reason="non-finite score")
    return replace(result, score=min(max(float(score), 0.0), 1.0))


def _rule_score(rules: RuleOutcome) -> float:
    score = rules.score if math.isfinite(rules.score) else 0.0
    strongest = max((h.severity for h in rules.hits if math.isfinite(h.severity)), default=0.0)
    return min(max(score, strongest, 0.0), 1.0)


def _fmt_contribution(c: FeatureContribution, usual: Mapping[str, float] | None = None) -> str:
    m = usual.get(c.feature) if usual else None
    if m is None:
        return f"{c.feature}={c.value:.4g} ({c.contribution:+.2f})"
    ratio = c.value / m if m > 0 and c.value >= 0 else None
    if ratio is not None and (ratio >= 2.0 or ratio <= 0.5):
        return f"{c.feature}={c.value:.4g} ({c.contribution:+.2f}, {ratio:.1f}x the usual {m:.4g})"
    return f"{c.feature}={c.value:.4g} ({c.contribution:+.2f}, usual {m:.4g})"


def _hit_text(hit: RuleHit) -> str:
    text = f"rule {hit.rule_id} ({hit.category}, severity {hit.severity:.2f})"
    if hit.description:
        text += f": {hit.description}"
    return text


def _model_text(result: ScorerResult, usual: Mapping[str, float] | None = None) -> str:
    text = f"{result.scorer} score {result.score:.2f}"
    if result.reason:
        # On a scorer that answered, the reason says what its contributions are measured against.
        text += f" {result.reason}"
    if result.contributions:
        shown = result.contributions[:3]
        if usual:
            text += " [" + ", ".join([_fmt_contribution(c, usual) for c in shown]) + "]"
        elif len(shown) == 3:
            # _fmt_contribution without a usual value, inlined for the usual three (every
            # decision with a model score formats them).
            a, b, c = shown
            text += (
                f" [{a.feature}={a.value:.4g} ({a.contribution:+.2f}), "
                f"{b.feature}={b.value:.4g} ({b.contribution:+.2f}), "
                f"{c.feature}={c.value:.4g} ({c.contribution:+.2f})]"
            )
        else:
            text += (
                " ["
                + ", ".join([f"{c.feature}={c.value:.4g} ({c.contribution:+.2f})" for c in shown])
                + "]"
            )
    return text


def _neg_weight(reason: tuple[float, Any]) -> float:
    return -reason[0]


def _hit_rank(h: RuleHit) -> tuple[float, str]:
    return (-h.severity, h.rule_id)


def _explain(
    final: float,
    level: RiskLevel,
    alert: bool,
    rule_score: float,
    hits: tuple[RuleHit, ...],
    models: list[tuple[float, ScorerResult]],
    absent: list[ScorerResult],
    max_reasons: int,
) -> str:
    # Reasons are ranked by weight first and only the shown ones are formatted: formatting
    # every hit and contribution cost more than the rest of the decision.
    reasons: list[tuple[float, RuleHit | ScorerResult]] = (
        [(hit.severity, hit) for hit in sorted(hits, key=_hit_rank)] if hits else []
    )
    reasons.extend(models)
    if len(reasons) > 1:
        reasons.sort(key=_neg_weight)
    shown: list[str] = []
    for weight, item in reasons:
        if weight > 0:
            shown.append(_hit_text(item) if isinstance(item, RuleHit) else _model_text(item))
            if len(shown) >= max_reasons:
                break
    alerting = " (alert)" if alert else ""
    if shown:
        body = "Top reasons: " + "; ".join(shown) + "."
        if rule_score == 0.0 and not hits:
            body += " No rule fired."
    else:
        body = "No rule fired; models see nothing unusual."
    parts = [f"{_LEVEL_TEXT[level]} risk, score {final:.2f}{alerting}.", body]
    if absent:
        key = tuple([(r.scorer, r.reason) for r in absent])
        text = _ABSENT_TEXT.get(key)
        if text is None:
            text = "Not available: " + ", ".join(f"{n} ({reason})" for n, reason in key) + "."
            if len(_ABSENT_TEXT) < 1024:  # a handful in practice; bounded all the same
                _ABSENT_TEXT[key] = text
        parts.append(text)
    return " ".join(parts)


def decide(
    tx: Transaction,
    rules: RuleOutcome,
    scorers: Iterable[ScorerResult],
    *,
    config: PolicyConfig,
    decided_at: datetime,
    shadow_scores: Mapping[str, float] | None = None,
) -> Decision:
    """Combine the rule evaluation and the model scorers' results into a decision.

    Args:
        tx: the scored transaction.
        rules: the rule engine's evaluation (score, hits, rule-config version).
        scorers: results of the model scorers (``anomaly`` calibrated, ``xgboost``); a configured
            scorer with no result here is recorded as absent.
        config: the policy's weights, cut-offs and threshold.
        decided_at: clock value of the decision (passed in; the policy reads no clock).
        shadow_scores: challenger-model scores to record without affecting the decision.

    Returns:
        The decision with final score in ``[0, 1]``, risk level, alert flag, explanation and
        every version needed to reproduce it.

    Raises:
        ValueError: when two results claim the same scorer name.
    """
    by_name: dict[str, ScorerResult] = {}
    for result in scorers:
        name = result.scorer
        if name in by_name or name == RULES:
            raise ValueError(f"duplicate or reserved scorer result {name!r}")
        score = result.score
        if result.available:
            if not (type(score) is float and 0.0 <= score <= 1.0):
                result = _sanitise(result)  # the usual clean result is used as it is
        elif score is not None or not result.reason:
            result = _sanitise(result)  # an absent result with its reason is kept as it is
        by_name[name] = result
    weights = config.weights
    for name in weights:
        if name not in by_name:
            by_name[name] = _new_result(scorer=name, available=False, reason="no result")

    hits = rules.hits
    if hits:
        rule_score = _rule_score(rules)
    else:
        # _rule_score without hits (most transactions), inlined.
        score = rules.score
        rule_score = min(max(score if math.isfinite(score) else 0.0, 0.0, 0.0), 1.0)
    used = []
    absent = []
    for name, result in by_name.items():
        if not result.available:
            absent.append(result)
        elif result.score is not None:
            w = weights.get(name, 0.0)
            if w > 0:
                used.append((w, result))
    if used:
        total_weight = sum([w for w, _ in used])
        model_score = sum([w * (r.score or 0.0) for w, r in used]) / total_weight
    else:
        total_weight = 0.0
        model_score = 0.0
    final = min(max(rule_score, model_score), 1.0)
    level = config.risk_level(final)
    alert = final >= config.alert_threshold

    hits = tuple(hits)
    explanation = _explain(
        final,
        level,
        alert,
        rule_score,
        hits,
        [(w * (r.score or 0.0) / total_weight, r) for w, r in used],
        absent,
        config.max_reasons,
    )
    version = rules.config_version
    # Immutable and the same for every transaction without a rule score (most of them):
    # shared, like the engine's empty evaluation.
    shared = rule_score == 0.0 and math.copysign(1.0, rule_score) > 0.0  # not -0.0
    rules_result = _RULES_RESULT.get(version) if shared else None
    if rules_result is None:
        rules_result = _new_result(
            scorer=RULES,
            available=True,
            score=rule_score,
            model_version=f"rules-config-{version}",
        )
        if shared and len(_RULES_RESULT) < 64:
            _RULES_RESULT[version] = rules_result
    global _utc_memo
    given, at = _utc_memo
    if decided_at is not given:
        # A batch is decided at one instant: convert it once.
        at = ensure_utc(decided_at)
        _utc_memo = (decided_at, at)
    return _new_decision(
        transaction_id=tx.id,
        tenant=tx.tenant,
        score=final,
        risk_level=level,
        alert=alert,
        decided_at=at,
        scorers=(rules_result, *by_name.values()),
        rule_hits=hits,
        feature_set_version=config.feature_set_version,
        rule_config_version=rules.config_version,
        shadow_scores=dict(shadow_scores) if shadow_scores else {},
        explanation=explanation,
    )


def with_anomaly_explanation(
    decision: Decision,
    contributions: Iterable[FeatureContribution],
    *,
    basis: str,
    usual: Mapping[str, float] | None = None,
) -> Decision:
    """The decision with its anomaly reasons replaced, for example by the customer's own baseline.

    The anomaly result's ``contributions`` become ``contributions`` and its ``reason`` becomes
    ``basis`` (what they are measured against). Where the explanation names the anomaly score
    among its top reasons, that reason is rewritten by the same formatter in the same place, so
    the ranking, the scores and the rest of the text stay as :func:`decide` wrote them.

    Args:
        decision: a decision made by :func:`decide`.
        contributions: the new anomaly contributions (already ranked).
        basis: what they are measured against, e.g. ``"vs this customer's own baseline (median
            of 41 transactions over 30 days)"``.
        usual: the customer's usual value of some features, named next to them in the text.

    Returns:
        The new decision; the same one when it has no available anomaly score.
    """
    i = next(
        (
            i
            for i, r in enumerate(decision.scorers)
            if r.scorer == ANOMALY and r.available and r.score is not None
        ),
        None,
    )
    if i is None:
        return decision
    old = decision.scorers[i]
    new = replace(old, contributions=tuple(contributions), reason=basis)
    before, after = _model_text(old), _model_text(new, usual)
    explanation = decision.explanation
    if before in explanation:
        explanation = explanation.replace(before, after, 1)
    scorers = (*decision.scorers[:i], new, *decision.scorers[i + 1 :])
    return replace(decision, scorers=scorers, explanation=explanation)
