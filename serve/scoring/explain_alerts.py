"""Alerting decisions explained against the customer's own baseline, just before they are stored.

A scorer replica sees only the batch's feature matrix, so the anomaly scorer explains against the
training population. Only alerting decisions (a few per cent of traffic) are read by analysts, so
only those are explained again here: each alerted account's recent history is read from the store
(one bounded read per account) and :func:`aml.explain.customer_anomaly_explanation` measures the
transaction against the customer's own earlier transactions.

An explanation must never cost a decision: a failed read or computation leaves the decision as
the scorers made it and logs a warning. Nor may explanations hold scoring up: at most
``MAX_EXPLAINED_PER_BATCH`` alerting decisions of a batch, the highest scores first, are explained
against their customer's baseline; in an alert storm the others keep the population's reasons,
marked as such.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from aml.domain import Decision, Transaction
from aml.explain import (
    BASELINE_LOOKBACK,
    MAX_BASELINE_HISTORY,
    MIN_BASELINE_HISTORY,
    POPULATION_BASELINE,
    CustomerExplanation,
    customer_anomaly_explanation,
)
from aml.features import FeatureParams
from aml.history import MAX_LOOKBACK
from aml.policy import ANOMALY, with_anomaly_explanation
from storage.store import Store

log = logging.getLogger(__name__)

# Movements read at most per alerted account: the baseline's 200 transactions plus the 7-day
# windows behind them for an account with up to about a hundred movements a day. A busier
# account gets a shorter baseline (only transactions whose whole window was read count), as
# does any account whose windows exceed ``aml.explain.MAX_BASELINE_WORK``.
PER_ACCOUNT_LIMIT = 1_000
# Alerting decisions explained against their customer's own baseline per batch at most, the
# highest scores first; the others keep the population's reasons and say why. Each costs a read
# of up to PER_ACCOUNT_LIMIT movements and a few milliseconds: in an alert storm (a threshold set
# too low, a run on many accounts at once) explaining every one of thousands per batch would
# hold the batch's writes, and every later batch, behind the reads.
MAX_EXPLAINED_PER_BATCH = 64

Account = tuple[str, str]
_TICK = timedelta(microseconds=1)


def _wants_explanation(decision: Decision) -> bool:
    return decision.alert and any(
        s.scorer == ANOMALY and s.available and s.score is not None for s in decision.scorers
    )


async def _histories(
    store: Store, targets: Sequence[Transaction], *, lookback: timedelta, per_account: int
) -> dict[Account, tuple[list[Transaction], datetime]]:
    """Per alerted account: its recent movements (at most ``per_account``, newest first) and the
    instant from which they are complete (just after the oldest one read when the cap was hit).

    One bounded read per account (each an index range read per side), run together, so a busy
    account never crowds a quiet one out and none reads more than its own cap."""
    accounts = sorted({(tx.tenant, tx.account_id) for tx in targets})
    since = min(tx.occurred_at for tx in targets) - lookback - MAX_LOOKBACK
    until = max(tx.occurred_at for tx in targets)
    found = await asyncio.gather(
        *(
            store.transactions.recent_touching([a], since=since, until=until, limit=per_account)
            for a in accounts
        )
    )
    out: dict[Account, tuple[list[Transaction], datetime]] = {}
    for account, txs in zip(accounts, found, strict=True):
        start = txs[-1].occurred_at + _TICK if len(txs) >= per_account else since
        out[account] = (txs, start)
    return out


def _explain_one(
    tx: Transaction,
    history: tuple[list[Transaction], datetime],
    *,
    params: FeatureParams,
    lookback: timedelta,
    max_history: int,
    min_history: int,
    batch: Sequence[Transaction],
) -> CustomerExplanation:
    candidates, complete_from = history
    return customer_anomaly_explanation(
        tx,
        # The batch too: its transactions are stored before they are scored, but a store that
        # answers from a lagging secondary must not make them invisible.
        [*candidates, *batch],
        params=params,
        complete_from=complete_from,
        lookback=lookback,
        max_history=max_history,
        min_history=min_history,
    )


def _kept_population(decision: Decision, basis: str) -> Decision:
    """The decision with its population reasons, ``basis`` saying why they stay."""
    anomaly = next(s for s in decision.scorers if s.scorer == ANOMALY)
    return with_anomaly_explanation(decision, anomaly.contributions, basis=basis)


def _apply(
    decisions: list[Decision],
    targets: Sequence[tuple[int, Transaction]],
    histories: dict[Account, tuple[list[Transaction], datetime]],
    batch: Sequence[Transaction],
    params: FeatureParams,
    lookback: timedelta,
    max_history: int,
    min_history: int,
) -> list[Decision]:
    out = list(decisions)
    for i, tx in targets:
        decision = out[i]
        try:
            result = _explain_one(
                tx,
                histories[(tx.tenant, tx.account_id)],
                params=params,
                lookback=lookback,
                max_history=max_history,
                min_history=min_history,
                batch=batch,
            )
            if result.own_baseline:
                out[i] = with_anomaly_explanation(
                    decision, result.contributions, basis=result.basis, usual=result.usual
                )
            else:
                out[i] = _kept_population(decision, result.basis)
        except Exception:
            log.warning(
                "anomaly explanation of transaction %s kept against the population: "
                "the customer's baseline could not be computed",
                tx.id,
                exc_info=True,
            )
    return out


async def explain_alerts(
    store: Store,
    batch: Sequence[Transaction],
    decisions: Sequence[Decision],
    params: FeatureParams,
    *,
    lookback: timedelta = BASELINE_LOOKBACK,
    max_history: int = MAX_BASELINE_HISTORY,
    min_history: int = MIN_BASELINE_HISTORY,
    per_account: int = PER_ACCOUNT_LIMIT,
    max_explained: int = MAX_EXPLAINED_PER_BATCH,
) -> list[Decision]:
    """The decisions, with alerting ones' anomaly reasons measured against the customer's own
    baseline.

    Decisions that do not alert, or alert without an anomaly score, are returned as they are,
    and so are all of them when nothing alerts (no read at all). A customer with too short a
    history keeps the population reasons, marked as such.

    Args:
        store: where the accounts' history is read (one read per alerted account and side, a
            few more when a busy account fills its share).
        batch: the scored transactions (a decision's transaction is found here by id).
        decisions: the batch's decisions.
        params: the feature parameters the decisions were scored with.
        lookback: how far back the customer's baseline reaches.
        max_history: most recent earlier transactions in a baseline.
        min_history: fewer earlier transactions than this are no baseline.
        per_account: movements read at most per alerted account.
        max_explained: alerting decisions explained against their customer's baseline at most,
            the highest scores first (then the earliest in the batch); the others keep the
            population's reasons, their basis saying the baseline was not computed and why.

    Returns:
        The decisions in the same order; a decision whose explanation failed is unchanged.
    """
    out = list(decisions)
    by_id = {tx.id: tx for tx in batch}
    targets = [
        (i, by_id[d.transaction_id])
        for i, d in enumerate(out)
        if d.transaction_id in by_id and _wants_explanation(d)
    ]
    if not targets:
        return out
    if len(targets) > max_explained:
        ranked = sorted(targets, key=lambda target: (-out[target[0]].score, target[0]))
        basis = (
            f"{POPULATION_BASELINE}: this customer's own baseline was not computed "
            f"({len(targets)} alerts in one scoring batch, the {max_explained} highest were "
            "explained against theirs)"
        )
        for i, _ in ranked[max_explained:]:
            out[i] = _kept_population(out[i], basis)
        log.info(
            "%d alerting decisions in one batch: the %d highest explained against their "
            "customer's baseline, the rest against the population",
            len(targets),
            max_explained,
        )
        targets = sorted(ranked[:max_explained])
    try:
        histories = await _histories(
            store, [tx for _, tx in targets], lookback=lookback, per_account=per_account
        )
    except Exception:
        log.warning(
            "anomaly explanations of %d alerting decisions kept against the population: "
            "the customers' history could not be read",
            len(targets),
            exc_info=True,
        )
        return out
    # Feature vectors of a few hundred history transactions per alert: off the event loop, so
    # the process keeps answering while they are computed.
    try:
        return await asyncio.to_thread(
            _apply, out, targets, histories, batch, params, lookback, max_history, min_history
        )
    except Exception:
        log.warning("anomaly explanations of alerting decisions failed", exc_info=True)
        return out
