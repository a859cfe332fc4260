"""Ray Serve deployments: thin wrappers over the ``aml`` scorers (see ``serve.scoring.pipeline``).

``RuleScorer``, ``AnomalyScorer`` and ``XGBoostScorer`` are composed with ``.bind()`` into the
``ScoringPipeline`` ingress (``serve.scoring.app``). Each takes its configuration through
``reconfigure(user_config)``, so rules, models and the policy change without a restart, and
reports health through ``check_health``. Replicas, autoscaling and ``user_config`` live in
``deploy/serve_config.yaml``, not here.

User configs:

* ``RuleScorer``: ``{"rule_config": <RuleConfig dict, carries its version>}``
* ``AnomalyScorer`` / ``XGBoostScorer``: ``{"model": <path or model spec>}`` (absent: "no model"),
  optionally ``"shadow": <path or model spec>``, a challenger scored beside it and recorded on
  the decisions without affecting them
* ``ScoringPipeline``: ``{"policy": <PolicyConfig fields>, "features": <FeatureParams fields>,
  "scorer_timeout_s": float, "scorer_retries": int}``; the feature parameters travel with
  every batch to ``RuleScorer``, which computes the feature matrix
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.customer_state import DEFAULT_GRAPH_HOPS, DEFAULT_MAX_KEYS
from actors.factory import ShardedState, create_graph, create_state_shards
from actors.ordering import BatchOrder
from actors.view_link import DEFAULT_LINK_CAPACITY
from aml.domain import Decision, PackedList, ScorerResult, Transaction, sealed, utcnow
from aml.features import FeatureParams
from aml.gc_tuning import collect_rarely
from aml.rules.engine import RuleEngine, RuleEvaluation
from aml.summaries import SummaryCache
from serve.scoring.metrics import ScoringMetrics
from serve.scoring.models import ANOMALY, XGBOOST, Matrix, ResultBlock, no_model
from serve.scoring.pipeline import (
    DecisionSummary,
    ModelScorer,
    PersistResult,
    ScorerBreaker,
    decide_batch,
    feature_params_from,
    model_from,
    persist,
    policy_config_from,
    results_of,
    rule_config_from,
    rules_and_features,
    shadow_from,
)
from storage.store import Store, open_store

log = logging.getLogger(__name__)

# What a model scorer replica sends back for a request: arrays when a model scored it, else the
# shared "no model" results.
ModelOutput = ResultBlock | list[ScorerResult]

DEFAULT_SCORER_TIMEOUT_S = 30.0
DEFAULT_SCORER_RETRIES = 2


def _sharded_state(state: Mapping[str, Any]) -> ShardedState:
    """The named state actors and transfer graph described by the app's ``state`` args.

    Named actors are get-or-create, so every replica that calls this (the pipeline for its
    metrics, each ``RuleScorer`` replica for contexts) shares the same shards.
    """
    detached = bool(state.get("detached", True))
    group = str(state.get("group", "default"))
    shards = create_state_shards(
        int(state.get("shards", 1)),
        mongo_uri=state.get("mongodb_uri"),
        db_name=str(state.get("mongodb_db", "fineract_aml")),
        group=group,
        detached=detached,
        max_keys=int(state.get("max_keys", DEFAULT_MAX_KEYS)),
        link_capacity=int(state.get("link_capacity", DEFAULT_LINK_CAPACITY)),
    )
    graph = create_graph(
        group=group, detached=detached, hops=int(state.get("graph_hops", DEFAULT_GRAPH_HOPS))
    )
    return ShardedState(shards, graph)


@serve.deployment(name="RuleScorer")
class RuleScorer:
    """Point-in-time state access, the feature matrix and the rule engine, per batch.

    The contexts (lists of prior transactions) are the largest objects of scoring, so they
    travel once, from the state actors to this replica, and never further: the pipeline gets
    back the rule evaluations and the feature matrix, which the model scorers take.
    """

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        """Args:
        state: the state actors' arguments (see :class:`ScoringPipeline`); ``None`` keeps
            the defaults.
        """
        self._engine = RuleEngine(rule_config_from({}))
        # Account summaries kept from batch to batch (features of busy accounts); they do not
        # depend on the rule configuration, so a reload keeps them.
        self._summaries = SummaryCache()
        # Features and rules run on a thread of their own, one batch at a time (the engine's
        # movements and the account summaries are not thread-safe). A batch of busy accounts
        # takes seconds of CPU: run on the replica's event loop, batches back to back kept
        # Serve's health check (answered on that loop) waiting past its 30 s timeout, and Serve
        # replaced the replica, its caches and view links with it, in the middle of the load.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rule-scorer")
        self._state_args = dict(state or {})
        # Looked up on the first batch: by then the pipeline replica has created the actors,
        # so a scaled-down rule replica never takes non-detached shards down with it.
        self._state: ShardedState | None = None
        collect_rarely()

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Swap the rule configuration (validated before it replaces the current one)."""
        self._engine = RuleEngine(rule_config_from(user_config))
        log.info("rule configuration version %s active", self._engine.version)

    async def score(
        self,
        batch: Sequence[Transaction],
        features: FeatureParams,
        order: BatchOrder | None = None,
    ) -> tuple[list[RuleEvaluation], Matrix, float]:
        """Observe the batch in the state actors and evaluate it.

        Args:
            batch: stored transactions, in order.
            features: the feature parameters (the pipeline's ``features`` user_config).
            order: the batch's place in its sender's sequence: the state actors observe it
                after the sender's earlier batches (see :mod:`actors.ordering`).

        Returns:
            The rule evaluations, the feature matrix (one row per transaction) and the seconds
            spent waiting for the state actors.
        """
        if self._state is None:
            self._state = _sharded_state(self._state_args)
        started = time.perf_counter()
        contexts = await self._state.observe_and_context(batch, self._engine.graph_search, order)
        state_s = time.perf_counter() - started
        evaluations, x = await asyncio.get_running_loop().run_in_executor(
            self._compute,
            rules_and_features,
            self._engine,
            batch,
            contexts,
            features,
            self._summaries,
        )
        return PackedList(evaluations), x, state_s

    def info(self) -> dict[str, Any]:
        return {"rule_config_version": self._engine.version, "pid": os.getpid()}

    def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("rule engine not configured")


class _ModelDeployment:
    """Shared body of the two model scorers."""

    scorer_name = ""

    def __init__(self) -> None:
        self._scorer = ModelScorer(self.scorer_name)
        collect_rarely()

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Load the named model (or go back to "no model"); a bad artifact raises and the
        previous model stays in place."""
        self._scorer = ModelScorer(
            self.scorer_name, model_from(user_config), shadow_from(user_config)
        )
        version = self._scorer.model.version if self._scorer.model else None
        log.info("%s model %s active", self.scorer_name, version or "(none)")

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)
    async def _score_many(self, xs: list[Matrix]) -> list[ModelOutput]:
        # Concurrent pipeline requests are stacked into one model call.
        import numpy as np

        model = self._scorer.model  # once: a reconfigure may swap the scorer meanwhile
        if model is None:
            return [no_model(self.scorer_name, len(x)) for x in xs]
        block = model.score_block(np.vstack(xs))
        out: list[ModelOutput] = []
        start = 0
        for x in xs:
            out.append(block.slice(start, start + len(x)))
            start += len(x)
        return out

    async def score(self, x: Matrix) -> ModelOutput:
        """The results for the rows of ``x``: arrays (:class:`ResultBlock`) when a model scored
        them, which the pipeline turns into results (:func:`results_of`)."""
        if len(x) == 0:
            return []
        return await self._score_many(x)

    async def shadow(self, x: Matrix) -> list[dict[str, float]]:
        """The challenger's scores (``[]`` without one)."""
        return self._scorer.shadow_scores(x)

    async def score_with_shadow(self, x: Matrix) -> tuple[ModelOutput, list[dict[str, float]]]:
        """:meth:`score` and :meth:`shadow` in one request.

        Every request costs the caller and this replica milliseconds of CPU whatever its size,
        so the pipeline asks once per batch instead of twice. A failing challenger gives ``[]``
        and never fails the scores.
        """
        results = await self.score(x)
        try:
            shadow = self._scorer.shadow_scores(x)
        except Exception:
            log.warning("shadow scoring failed", exc_info=True)
            shadow = []
        return (results if isinstance(results, ResultBlock) else PackedList(results)), shadow

    def info(self) -> dict[str, Any]:
        model, shadow = self._scorer.model, self._scorer.shadow
        return {
            "model_version": model.version if model else None,
            "shadow_version": shadow.version if shadow else None,
            "pid": os.getpid(),
        }

    def check_health(self) -> None:
        if self._scorer is None:
            raise RuntimeError(f"{self.scorer_name} scorer not configured")


@serve.deployment(name="AnomalyScorer")
class AnomalyScorer(_ModelDeployment):
    """Isolation Forest + calibrator; explanation = distance from the baseline."""

    scorer_name = ANOMALY


@serve.deployment(name="XGBoostScorer")
class XGBoostScorer(_ModelDeployment):
    """Supervised XGBoost model; explanation = ``pred_contribs``."""

    scorer_name = XGBOOST


@serve.deployment(name="ScoringPipeline")
class ScoringPipeline:
    """Ingress: contexts, features and rules from ``RuleScorer``, then the two model scorers in
    parallel on the feature matrix, then the policy. Returns one :class:`~aml.domain.Decision`
    per transaction, in order."""

    def __init__(
        self,
        rules: DeploymentHandle,
        anomaly: DeploymentHandle,
        xgboost: DeploymentHandle,
        state: Mapping[str, Any],
    ) -> None:
        """Args:
        rules, anomaly, xgboost: handles of the scorer deployments.
        state: ``mongodb_uri``, ``mongodb_db``, ``shards``, ``group``, ``max_keys``,
            ``link_capacity``, ``graph_hops``, ``detached`` (see
            ``serve.scoring.app.ScoringAppArgs``).
        """
        self._rules = rules
        self._anomaly = anomaly
        self._xgboost = xgboost
        # Created here (the rule replicas look them up later) and watched for the state metrics;
        # the contexts themselves go from the actors to ``RuleScorer`` only.
        self._shards = _sharded_state(state).shards
        self._store_uri: str | None = state.get("mongodb_uri")
        self._store_db = str(state.get("mongodb_db", "fineract_aml"))
        self._store: Store | None = None
        self._metrics = ScoringMetrics()
        self._breakers = {ANOMALY: ScorerBreaker(), XGBOOST: ScorerBreaker()}
        self.reconfigure({})
        collect_rarely()

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Swap the policy and feature parameters (the latter are sent to ``RuleScorer`` with
        every batch, so both always agree)."""
        self._policy = policy_config_from(user_config)
        self._features = feature_params_from(user_config)
        self._timeout = float(user_config.get("scorer_timeout_s", DEFAULT_SCORER_TIMEOUT_S))
        self._retries = int(user_config.get("scorer_retries", DEFAULT_SCORER_RETRIES))

    async def _call(self, handle: DeploymentHandle, *args: Any, method: str = "score") -> Any:
        """One scorer call, retried when its replica died (Serve replaces it meanwhile)."""
        for attempt in range(self._retries + 1):
            try:
                call = getattr(handle, method).remote(*args)
                return await asyncio.wait_for(call, self._timeout)
            except Exception:
                if attempt == self._retries:
                    raise
                log.warning("scorer call failed (attempt %d); retrying", attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _model(
        self, handle: DeploymentHandle, name: str, x: Matrix
    ) -> tuple[list[ScorerResult], list[dict[str, float]]]:
        """A model scorer's results and its challenger's scores, in one request."""
        breaker = self._breakers[name]
        if not breaker.allow():
            return no_model(name, len(x), reason="scorer unavailable"), []
        try:
            output, shadow = await self._call(handle, x, method="score_with_shadow")
            results = list(results_of(output))
        except Exception:
            # A model scorer that stays down makes the decision record it as absent; the
            # rules and the other model still decide.
            log.exception("%s scorer unavailable", name)
            breaker.failure()
            return no_model(name, len(x), reason="scorer unavailable"), []
        breaker.success()
        return results, shadow

    async def score(
        self, batch: Sequence[Transaction], order: BatchOrder | None = None
    ) -> list[Decision]:
        """Decide a batch (transactions must already be stored: crashes rebuild from there).

        ``order``: the batch's place in its sender's sequence (see :mod:`actors.ordering`);
        with it, the batch is observed after the sender's earlier batches however the calls
        race on the way.

        Raises:
            Exception: ``RuleScorer`` (state, features, rules) failed after its retries: no
                decision can be made without it, so the batch stays undecided (pending).
        """
        if not batch:
            return []
        # Passed on to RuleScorer and the shards as the bytes it arrived in (see SealedBatch).
        batch = sealed(batch)
        started = time.perf_counter()
        self._metrics.watch_state(self._shards)
        rules, x, state_s = await self._metrics.timed(
            "rules", self._call(self._rules, batch, self._features, order)
        )
        self._metrics.observe_stage("state", state_s)
        (anomaly, shadow_a), (xgb, shadow_x) = await asyncio.gather(
            self._metrics.timed(ANOMALY, self._model(self._anomaly, ANOMALY, x)),
            self._metrics.timed(XGBOOST, self._model(self._xgboost, XGBOOST, x)),
        )
        decisions = decide_batch(
            batch,
            rules,
            anomaly,
            xgb,
            config=self._policy,
            decided_at=utcnow(),
            shadow=(shadow_a, shadow_x),
        )
        self._metrics.record_batch(decisions, started)
        return PackedList(decisions)

    async def score_summary(
        self, batch: Sequence[Transaction], order: BatchOrder | None = None
    ) -> DecisionSummary:
        """Decide a batch and return only what the decisions came to (counts), not the
        decisions: nothing is written, and the decisions, the largest objects of scoring, do not
        cross back to the caller (as with :meth:`score_and_store`). For dry runs and for
        measuring the scoring path alone.
        """
        return DecisionSummary.of(await self.score(batch, order))

    def _get_store(self) -> Store:
        if self._store is None:
            if self._store_uri is None:
                raise RuntimeError(
                    "the scoring application has no store (mongodb_uri): decisions cannot be "
                    "written; deploy it with the store's URI"
                )
            # Opened lazily inside the replica's own event loop.
            self._store = open_store(
                self._store_uri, self._store_db, appname="fineract-aml-scoring"
            )
        return self._store

    async def score_and_store(
        self,
        batch: Sequence[Transaction],
        return_decisions: bool = False,
        order: BatchOrder | None = None,
    ) -> tuple[list[Decision] | None, PersistResult]:
        """Decide a batch and write the outcome: decisions, alerts (grouped per customer) and
        the transactions marked scored (see :func:`serve.scoring.pipeline.persist`).

        The writes are made here, not by the caller: the webhook ingress that hands batches
        over then only receives, stores and acknowledges, and the decisions (the largest
        objects of scoring, with their explanations) cross no further process boundary unless
        ``return_decisions`` asks for them.

        Raises:
            Exception: scoring or a write failed; what was not marked scored stays pending for
                the ingress's sweeper, and a retry is idempotent.
        """
        decisions = await self.score(batch, order)
        if not decisions:
            return ([] if return_decisions else None), PersistResult(0, (), 0)
        result = await self._metrics.timed(
            "persist", persist(self._get_store(), batch, decisions, params=self._features)
        )
        return (PackedList(decisions) if return_decisions else None), result

    async def info(self) -> dict[str, Any]:
        """Versions active in every scorer (for the dashboard and tests)."""
        rules, anomaly, xgb = await asyncio.gather(
            self._rules.info.remote(), self._anomaly.info.remote(), self._xgboost.info.remote()
        )
        return {"rules": rules, "anomaly": anomaly, "xgboost": xgb, "pid": os.getpid()}

    def check_health(self) -> None:
        if not self._shards:
            raise RuntimeError("no state shards")
