"""Scoring logic shared by the Serve deployments and the in-process fallback.

contexts (state) -> features (once) -> rules, anomaly, XGBoost -> policy -> decisions -> alerts.

Nothing here knows Ray: the deployments in :mod:`serve.scoring.deployments` call these pieces
from their replicas, :class:`InProcessScoring` calls them directly. Both therefore decide the same
way for the same inputs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from aml.domain import (
    Alert,
    AlertStatus,
    Decision,
    RiskLevel,
    ScorerResult,
    Transaction,
    TransactionStatus,
    stable_id,
    utcnow,
)
from aml.features import FEATURE_NAMES, FeatureParams, feature_vector
from aml.graph import GraphSearch
from aml.history import HistoryContext
from aml.policy import PolicyConfig, decide
from aml.rules.config import RuleConfig, default_rule_config
from aml.rules.engine import RuleEngine, RuleEvaluation
from aml.summaries import SummaryCache
from serve.scoring.explain_alerts import explain_alerts
from serve.scoring.models import (
    ANOMALY,
    XGBOOST,
    LoadedModel,
    Matrix,
    ResultBlock,
    load_model,
    no_model,
)
from storage.store import Store

# Transactions that are money movements awaiting (or re-awaiting) a decision.
SCORABLE = frozenset({TransactionStatus.PENDING, TransactionStatus.SCORED})

# Time an analyst has to look at an alert, by risk level.
ALERT_SLA: Mapping[RiskLevel, timedelta] = {
    RiskLevel.CRITICAL: timedelta(hours=4),
    RiskLevel.HIGH: timedelta(hours=24),
    RiskLevel.MEDIUM: timedelta(hours=72),
    RiskLevel.LOW: timedelta(days=7),
}


class ScorerBreaker:
    """Skips a model scorer that just failed, for ``cooldown_s``, instead of waiting on it.

    Serve queues requests for a deployment that has no replica (its node is gone), so every call
    would wait the whole timeout and every retry: batches then take minutes while rules and the
    other model could decide at once. After a failure the scorer is reported absent straight away
    until the cool-down ends; then one batch tries it again (half-open).
    """

    def __init__(self, cooldown_s: float = 15.0, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._open_until = 0.0

    def allow(self) -> bool:
        return self._clock() >= self._open_until

    def failure(self) -> None:
        self._open_until = self._clock() + self.cooldown_s

    def success(self) -> None:
        self._open_until = 0.0


class ContextSource(Protocol):
    """Point-in-time contexts for a batch (Ray shards or in-process shards); ``search`` is what
    the graph rules of the active configuration look for."""

    async def observe_and_context(
        self, batch: Sequence[Transaction], search: GraphSearch | None = None
    ) -> list[HistoryContext]: ...


def feature_matrix(
    batch: Sequence[Transaction],
    contexts: Sequence[HistoryContext],
    params: FeatureParams,
    summaries: SummaryCache | None = None,
) -> Matrix:
    """Features of the batch, one row per transaction in ``FEATURE_NAMES`` order
    (``summaries``: the caller's, kept from batch to batch, see :mod:`aml.summaries`)."""
    if not batch:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float64)
    rows = [
        feature_vector(tx, ctx, params=params, summaries=summaries)
        for tx, ctx in zip(batch, contexts, strict=True)
    ]
    return np.asarray(rows, dtype=np.float64)


def rules_and_features(
    engine: RuleEngine,
    batch: Sequence[Transaction],
    contexts: Sequence[HistoryContext],
    params: FeatureParams,
    summaries: SummaryCache | None = None,
) -> tuple[list[RuleEvaluation], Matrix]:
    """The rule evaluations and the feature matrix of a batch whose contexts are known.

    One function for the ``RuleScorer`` replicas and :class:`ScoringCore`, so that the two paths
    read the contexts the same way. ``summaries``: the caller's account summaries, kept from
    batch to batch like the engine's movements (the answers are the same without them).
    """
    x = feature_matrix(batch, contexts, params, summaries)
    evaluations = engine.evaluate_batch(list(zip(batch, contexts, strict=True)))
    return evaluations, x


def rule_config_from(user_config: Mapping[str, Any]) -> RuleConfig:
    """The rule configuration in a ``user_config`` (``rule_config`` key), or the defaults."""
    raw = user_config.get("rule_config")
    return RuleConfig.model_validate(raw) if raw else default_rule_config()


def policy_config_from(user_config: Mapping[str, Any]) -> PolicyConfig:
    """The policy configuration in a ``user_config`` (``policy`` key), or the defaults."""
    raw = user_config.get("policy") or {}
    validate = getattr(PolicyConfig, "model_validate", None)
    if validate is not None:
        return validate(raw)  # type: ignore[no-any-return]
    return PolicyConfig(**raw)


def feature_params_from(user_config: Mapping[str, Any]) -> FeatureParams:
    """Feature parameters in a ``user_config`` (``features`` key), or the defaults."""
    raw = dict(user_config.get("features") or {})
    return FeatureParams(**raw)


def model_from(user_config: Mapping[str, Any]) -> LoadedModel | None:
    """The model named in a ``user_config`` (``model`` key: path or spec), or ``None``."""
    spec = user_config.get("model")
    return load_model(spec) if spec else None


def shadow_from(user_config: Mapping[str, Any]) -> LoadedModel | None:
    """The challenger named in a ``user_config`` (``shadow`` key: path or spec), or ``None``."""
    spec = user_config.get("shadow")
    return load_model(spec) if spec else None


def shadow_key(scorer: str, version: str) -> str:
    """Key of a challenger's score in ``Decision.shadow_scores`` (no dots: stored as a field
    name)."""
    return f"{scorer}:{version}".replace(".", "_")


class ModelScorer:
    """A scorer over a feature matrix that reports "no model" until a model is loaded.

    A ``shadow`` (challenger) model scores the same rows beside it; its scores are recorded on
    the decision and never affect it.
    """

    def __init__(
        self, scorer: str, model: LoadedModel | None = None, shadow: LoadedModel | None = None
    ) -> None:
        self.scorer = scorer
        self.model = model
        self.shadow = shadow

    def score(self, x: Matrix) -> list[ScorerResult]:
        if self.model is None:
            return no_model(self.scorer, len(x))
        return self.model.score(x)

    def shadow_scores(self, x: Matrix) -> list[dict[str, float]]:
        """``{shadow_key: score}`` per row, or ``[]`` when no challenger is loaded."""
        if self.shadow is None or len(x) == 0:
            return []
        key = shadow_key(self.scorer, self.shadow.version)
        # The scores alone: no result or explanation objects for a model that decides nothing.
        return [{key: score} for score in self.shadow.score_block(x).scores.tolist()]


def results_of(output: ResultBlock | Sequence[ScorerResult]) -> Sequence[ScorerResult]:
    """A model scorer's results, from the arrays it sent back or as they came."""
    return output.results() if isinstance(output, ResultBlock) else output


def decide_batch(
    batch: Sequence[Transaction],
    rules: Sequence[RuleEvaluation],
    anomaly: Sequence[ScorerResult],
    xgboost: Sequence[ScorerResult],
    *,
    config: PolicyConfig,
    decided_at: datetime,
    shadow: Sequence[Sequence[Mapping[str, float]]] = (),
) -> list[Decision]:
    """Apply the policy to every transaction of the batch.

    ``shadow`` holds, per challenger, one ``{key: score}`` per transaction (or an empty list);
    they are recorded on the decisions without affecting them.
    """
    per_tx: list[dict[str, float]] = [{} for _ in batch]
    for scores in shadow:
        if len(scores) == len(batch):
            for row, extra in zip(per_tx, scores, strict=True):
                row.update(extra)
    return [
        decide(tx, r, (a, x), config=config, decided_at=decided_at, shadow_scores=sh)
        for tx, r, a, x, sh in zip(batch, rules, anomaly, xgboost, per_tx, strict=True)
    ]


@dataclass
class ScoringCore:
    """Every scorer in one process: the fallback, and the reference the Serve path must match."""

    rules: RuleEngine
    anomaly: ModelScorer
    xgboost: ModelScorer
    policy: PolicyConfig
    features: FeatureParams
    summaries: SummaryCache = field(default_factory=SummaryCache)

    @classmethod
    def from_user_configs(
        cls,
        *,
        rules: Mapping[str, Any] | None = None,
        anomaly: Mapping[str, Any] | None = None,
        xgboost: Mapping[str, Any] | None = None,
        pipeline: Mapping[str, Any] | None = None,
    ) -> ScoringCore:
        """Build from the same ``user_config`` dicts the Serve deployments take."""
        return cls(
            rules=RuleEngine(rule_config_from(rules or {})),
            anomaly=ModelScorer(ANOMALY, model_from(anomaly or {}), shadow_from(anomaly or {})),
            xgboost=ModelScorer(XGBOOST, model_from(xgboost or {}), shadow_from(xgboost or {})),
            policy=policy_config_from(pipeline or {}),
            features=feature_params_from(pipeline or {}),
        )

    def score(
        self,
        batch: Sequence[Transaction],
        contexts: Sequence[HistoryContext],
        *,
        decided_at: datetime,
    ) -> list[Decision]:
        """Decisions for a batch whose contexts are known."""
        evaluations, x = rules_and_features(
            self.rules, batch, contexts, self.features, self.summaries
        )
        return decide_batch(
            batch,
            evaluations,
            self.anomaly.score(x),
            self.xgboost.score(x),
            config=self.policy,
            decided_at=decided_at,
            shadow=(self.anomaly.shadow_scores(x), self.xgboost.shadow_scores(x)),
        )


@dataclass(frozen=True)
class DecisionSummary:
    """What a batch's decisions came to, without the decisions: the number decided, the number
    alerting and the count per risk level (every level present, zero when none)."""

    decided: int
    alerts: int
    by_risk: Mapping[str, int]

    @classmethod
    def of(cls, decisions: Sequence[Decision]) -> DecisionSummary:
        by_risk = dict.fromkeys([level.value for level in RiskLevel], 0)
        alerts = 0
        for d in decisions:
            by_risk[d.risk_level.value] += 1
            alerts += d.alert
        return cls(len(decisions), alerts, by_risk)

    @classmethod
    def empty(cls) -> DecisionSummary:
        return cls.of(())

    def __add__(self, other: DecisionSummary) -> DecisionSummary:
        mine, theirs = self.by_risk, other.by_risk
        return DecisionSummary(
            self.decided + other.decided,
            self.alerts + other.alerts,
            {k: mine.get(k, 0) + theirs.get(k, 0) for k in dict.fromkeys([*mine, *theirs])},
        )


def scorable(txs: Sequence[Transaction]) -> list[Transaction]:
    """Drop attempts and corrections (recorded, never scored) and repeats within the batch."""
    seen: set[str] = set()
    out = []
    for tx in txs:
        if tx.status in SCORABLE and tx.id not in seen:
            seen.add(tx.id)
            out.append(tx)
    return out


def alert_candidates(batch: Sequence[Transaction], decisions: Sequence[Decision]) -> list[Alert]:
    """One candidate alert per customer with alerting decisions in the batch (grouped here,
    then onto the customer's open alert by the store)."""
    by_customer: dict[str, Alert] = {}
    for tx, d in zip(batch, decisions, strict=True):
        if not d.alert:
            continue
        rule_ids = tuple(h.rule_id for h in d.rule_hits)
        candidate = Alert(
            id=stable_id(tx.tenant, "alert", tx.id),
            tenant=tx.tenant,
            customer_key=tx.customer_key,
            account_id=tx.account_id,
            client_id=tx.client_id,
            status=AlertStatus.OPEN,
            risk_level=d.risk_level,
            score=d.score,
            transaction_ids=(tx.id,),
            rule_ids=rule_ids,
            created_at=d.decided_at,
            updated_at=d.decided_at,
            sla_due_at=d.decided_at + ALERT_SLA[d.risk_level],
            title=_title(d),
        )
        prev = by_customer.get(tx.customer_key)
        by_customer[tx.customer_key] = candidate if prev is None else _merge(prev, candidate)
    return list(by_customer.values())


_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}


def _merge(a: Alert, b: Alert) -> Alert:
    risk = max(a.risk_level, b.risk_level, key=_RANK.__getitem__)
    return dataclasses.replace(
        a,
        transaction_ids=tuple(dict.fromkeys((*a.transaction_ids, *b.transaction_ids))),
        rule_ids=tuple(dict.fromkeys((*a.rule_ids, *b.rule_ids))),
        score=max(a.score, b.score),
        risk_level=risk,
        sla_due_at=min(a.sla_due_at, b.sla_due_at),
        title=a.title if a.score >= b.score else b.title,
    )


def _title(d: Decision) -> str:
    if d.rule_hits:
        top = max(d.rule_hits, key=lambda h: h.severity)
        return top.description or top.rule_id
    if d.explanation:
        return d.explanation.split("\n", 1)[0][:200]
    return "Unusual activity"


# Decisions and scored marks are written a slice at a time. A write command holds the store for
# its whole length (the embedded store runs one command at a time per database), and the
# ingress's group commits, whose acknowledgements wait on the store, must get their turn between
# the slices of a large scored batch.
PERSIST_CHUNK = 128


@dataclass(frozen=True)
class PersistResult:
    decisions: int
    alerts: tuple[str, ...]  # ids of the alerts created or grown
    scored: int


async def persist(
    store: Store,
    batch: Sequence[Transaction],
    decisions: Sequence[Decision],
    *,
    params: FeatureParams | None = None,
) -> PersistResult:
    """Store decisions (idempotent), group alerts per customer, mark transactions scored.

    Alerting decisions are first explained against the customer's own baseline (computed with
    ``params``, the feature parameters they were scored with; default ``FeatureParams()``).
    The order makes a retry safe: a decision stored twice is a duplicate, an alert attached
    twice keeps its transaction once, and a transaction is marked scored last, so a crash
    before that leaves it pending for the sweeper.
    """
    decisions = await explain_alerts(store, batch, decisions, params or FeatureParams())
    parts = [decisions[i : i + PERSIST_CHUNK] for i in range(0, len(decisions), PERSIST_CHUNK)]
    inserted = 0
    for part in parts:
        inserted += len((await store.decisions.insert_many(list(part))).inserted)
    alerts = await store.alerts.attach_or_create_many(alert_candidates(batch, decisions))
    scored = 0
    for part in parts:
        scored += await store.transactions.mark_scored(
            {d.transaction_id: d.risk_level for d in part}
        )
    return PersistResult(decisions=inserted, alerts=tuple(a.id for a in alerts), scored=scored)


class InProcessScoring:
    """``ScoringHandoff`` without Ray: the same scorers in this process (tests, fallback)."""

    def __init__(self, store: Store, core: ScoringCore, state: ContextSource) -> None:
        self.store = store
        self.core = core
        self.state = state

    async def submit(self, txs: Sequence[Transaction]) -> None:
        """Score ``txs`` and store the outcome (raising leaves them pending)."""
        await self.score_and_store(txs)

    async def score_and_store(self, txs: Sequence[Transaction]) -> list[Decision]:
        batch = scorable(txs)
        if not batch:
            return []
        contexts = await self.state.observe_and_context(batch, self.core.rules.graph_search)
        decisions = self.core.score(batch, contexts, decided_at=utcnow())
        await persist(self.store, batch, decisions, params=self.core.features)
        return decisions
