"""The rule engine: run every enabled rule on a transaction and combine the hits.

Combination is **noisy-OR**: ``score = 1 - prod(1 - severity_i)``. It is monotonic (another
firing rule can only raise the score, never lower it, unlike the predecessor's mean-plus-bonus),
stays in ``[0, 1]``, equals the severity when one rule fires and lets several independent
medium findings add up to more than any one of them. The combination policy lives here only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aml.domain import ActorType, Direction, RuleHit, Transaction, fast_init, fast_pickle
from aml.errors import ConfigError
from aml.graph import GraphSearch
from aml.history import HistoryContext
from aml.rules.catalog import (
    CATALOG,
    MovementCache,
    RuleFn,
    RuleInput,
    RuleSpec,
    Traits,
    graph_search,
    is_scorable,
)
from aml.rules.config import CurrencyThresholds, RuleConfig


@fast_pickle
@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """What the rules said about one transaction."""

    score: float  # noisy-OR of the hits' severities, in [0, 1]
    hits: tuple[RuleHit, ...]
    config_version: int

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(h.rule_id for h in self.hits)


# Built for every transaction (and hit): the fast constructors build the same objects.
_new_hit = fast_init(RuleHit)
_new_evaluation = fast_init(RuleEvaluation)


def combine(severities: Iterable[float]) -> float:
    """Noisy-OR of severities in ``[0, 1]`` (0 for none)."""
    keep = 1.0
    for s in severities:
        keep *= 1.0 - min(1.0, max(0.0, s))
    return 1.0 - keep


_Step = tuple[str, str, RuleFn, float | None]
_NONE, _AGENT = Direction.NONE, ActorType.AGENT


@dataclass(frozen=True, slots=True)
class _Active:
    spec: RuleSpec
    severity: float | None


class RuleEngine:
    """Evaluates the catalog of rules under one :class:`RuleConfig` version.

    Build a new engine to apply a new configuration (Serve ``reconfigure`` does exactly that);
    an engine never changes after construction.
    """

    def __init__(self, config: RuleConfig) -> None:
        """Prepare the enabled rules of ``config``.

        Raises:
            ConfigError: when ``config`` overrides a rule that does not exist.
        """
        unknown = set(config.rules) - {spec.rule_id for spec in CATALOG}
        if unknown:
            raise ConfigError("unknown rule ids in rule config", rules=sorted(unknown))
        self.config = config
        active: list[_Active] = []
        for spec in CATALOG:
            override = config.rules.get(spec.rule_id)
            enabled = spec.enabled_by_default
            severity = None
            if override is not None:
                enabled = enabled if override.enabled is None else override.enabled
                severity = override.severity
            if enabled:
                active.append(_Active(spec, severity))
        self._active = tuple(active)
        on = {a.spec.rule_id for a in active}
        self._graph_search = graph_search(
            config.params, cycles="circular_transfer" in on, chains="stacking" in on
        )
        self._thresholds: dict[str, CurrencyThresholds | None] = {}
        # Each account's movements, extended from its previous transaction's (busy accounts).
        self.movement_cache = MovementCache()
        self._params = config.params
        self._version = config.version
        # The evaluation of most transactions: one immutable instance shared by all of them
        # (also pickled once per batch instead of once per transaction).
        self._nothing = RuleEvaluation(score=0.0, hits=(), config_version=config.version)
        # Flat plans, one per thresholds case and transaction traits (built on first use), so
        # the per-transaction loop reads no attributes and calls only rules that can fire.
        self._plans: dict[tuple[Any, ...], tuple[_Step, ...]] = {}
        # History each rule needs at least to fire; history counts above every bound are all
        # alike for planning, so the plan key caps them there.
        params = config.params
        self._min_moves = [
            a.spec.min_moves(params) if a.spec.min_moves is not None else 0 for a in active
        ]
        self._min_agent = [
            a.spec.min_agent_txs(params) if a.spec.min_agent_txs is not None else 0 for a in active
        ]
        self._cap_moves = max(self._min_moves, default=0)
        self._cap_agent = max(self._min_agent, default=0)

    def _plan(self, key: tuple[Any, ...]) -> tuple[_Step, ...]:
        traits, has_thresholds, n_moves, n_agent, disbursed = Traits(*key[:-4]), *key[-4:]
        plan = tuple(
            (a.spec.rule_id, a.spec.category, a.spec.fn, a.severity)
            for a, min_moves, min_agent in zip(
                self._active, self._min_moves, self._min_agent, strict=True
            )
            if (has_thresholds or not a.spec.needs_thresholds)
            and (a.spec.when is None or a.spec.when(traits))
            and n_moves >= min_moves
            and n_agent >= min_agent
            and (disbursed or not a.spec.needs_disbursement)
        )
        self._plans[key] = plan
        return plan

    @property
    def version(self) -> int:
        return self.config.version

    @property
    def enabled_rules(self) -> tuple[str, ...]:
        return tuple(a.spec.rule_id for a in self._active)

    @property
    def graph_search(self) -> GraphSearch:
        """What the transfer graph must search for this configuration's cycle and chain rules
        (passed with every batch, so a reloaded configuration applies at once)."""
        return self._graph_search

    def evaluate(self, tx: Transaction, ctx: HistoryContext) -> RuleEvaluation:
        """Run the enabled rules on ``tx`` given its point-in-time ``ctx``.

        Rejected attempts, corrections and reversed transactions are not money movements and
        get an empty evaluation. Amount rules are skipped for a currency without thresholds.
        """
        if not is_scorable(tx):
            return self._nothing
        currency = tx.currency
        try:
            thresholds = self._thresholds[currency]
        except KeyError:
            thresholds = self._thresholds[currency] = self.config.thresholds_for(currency)
        ri = RuleInput(tx, ctx, self._params, thresholds, self.movement_cache)
        # traits_of(tx) as a plain tuple (built in C) for the plan look-up, with the history
        # the rules' bounds read.
        cp = tx.counterparty_account_id
        direction = tx.direction
        agent_id = tx.agent_id is not None
        n_moves, cap_moves = len(ri.moves), self._cap_moves
        n_agent, cap_agent = len(ri.agent_txs), self._cap_agent
        key = (
            direction,
            tx.type,
            bool(cp),
            bool(cp) and cp != tx.account_id and direction is not _NONE,
            agent_id or tx.actor_type is _AGENT,
            agent_id,
            thresholds is not None,
            n_moves if n_moves < cap_moves else cap_moves,
            n_agent if n_agent < cap_agent else cap_agent,
            ri.disbursed,
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(key)
        hits: list[RuleHit] = []
        for (
            rule_id,
            category,
            fn,
            override,
        ) in plan:
            fired = fn(ri)
            if fired is None:
                continue
            severity = fired.severity if override is None else override
            hits.append(
                _new_hit(
                    rule_id=rule_id,
                    category=category,
                    severity=min(1.0, max(0.0, severity)),
                    values=fired.values,
                    description=fired.description,
                )
            )
        if not hits:
            return self._nothing
        return _new_evaluation(
            score=combine(h.severity for h in hits),
            hits=tuple(hits),
            config_version=self._version,
        )

    def evaluate_batch(
        self, items: Sequence[tuple[Transaction, HistoryContext]]
    ) -> list[RuleEvaluation]:
        """:meth:`evaluate` over a batch, results in input order."""
        return [self.evaluate(tx, ctx) for tx, ctx in items]
