"""Point-in-time context handed to features and rules for one transaction.

Everything here is strictly *before* the transaction's own ``occurred_at`` (ties broken by
``Transaction.id`` so that replays are deterministic) and never includes the transaction itself.
Serving builds it from actor-held windows; training and backtests build it from the store or a
file with :func:`build_context` over a time-sorted frame. Both paths produce the same object, so
features and rules compute the same values (parity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from operator import is_

from aml.domain import Transaction, fast_pickle

# Longest look-back any feature or rule needs. Loan monitoring looks 7 days after a disbursement.
MAX_LOOKBACK = timedelta(days=7)
COUNTERPARTY_LOOKBACK = timedelta(days=7)
AGENT_LOOKBACK = timedelta(hours=24)


@fast_pickle
@dataclass(frozen=True, slots=True)
class TransferEdge:
    """A directed money edge between two accounts of one tenant (for cycle/chain search)."""

    src: str
    dst: str
    amount: float  # major units
    at: datetime
    tx_id: str


@fast_pickle
@dataclass(frozen=True, slots=True)
class HistoryContext:
    """What was known about the transaction's surroundings just before it happened.

    Attributes:
        account: transactions touching ``tx.account_id`` (as owner or counterparty) in
            ``[tx.occurred_at - MAX_LOOKBACK, tx.occurred_at)``, time-ordered.
        counterparty: transactions touching ``tx.counterparty_account_id`` in
            ``[tx.occurred_at - COUNTERPARTY_LOOKBACK, tx.occurred_at)``, time-ordered
            (empty when there is no counterparty).
        agent: transactions of ``tx.agent_id`` in ``[tx.occurred_at - AGENT_LOOKBACK, ...)``.
        edges: earlier transfer edges of the tenant, time-ordered, for the bounded cycle and
            layering-chain searches, which find the same cycles and chains in any superset of
            the edges on them: training and backtests give every earlier edge, serving only
            the edges of what the transfer graph's own searches found (usually none). Only a
            transfer between two accounts needs them (the cycle and chain rules read nothing
            else): serving leaves them empty for every other transaction.
        client: transactions of ``tx.client_id`` on the client's *other* accounts in
            ``[tx.occurred_at - MAX_LOOKBACK, tx.occurred_at)``, time-ordered: those recorded
            for the same client that do not touch ``tx.account_id`` (the ones that do are in
            ``account`` already). Empty when the transaction names no client, and for a client
            whose recent history is all on this one account, which keeps the context (pickled
            between processes on every batch) as small as before for most customers.
    """

    account: Sequence[Transaction] = ()
    counterparty: Sequence[Transaction] = ()
    agent: Sequence[Transaction] = ()
    edges: Sequence[TransferEdge] = field(default_factory=tuple)
    client: Sequence[Transaction] = ()


def _before(tx: Transaction, other: Transaction) -> bool:
    """True when ``other`` happened strictly before ``tx`` in the point-in-time order."""
    return (other.occurred_at, other.id) < (tx.occurred_at, tx.id)


def on_other_account(tx: Transaction, other: Transaction) -> bool:
    """True when ``other`` belongs in ``tx``'s client view: recorded for the same client, and
    not touching ``tx.account_id`` (as owner or counterparty). Time is not checked here."""
    return (
        tx.client_id is not None
        and other.client_id == tx.client_id
        and other.tenant == tx.tenant
        and tx.account_id != other.account_id
        and tx.account_id != other.counterparty_account_id
    )


def window(items: Sequence[Transaction], end: datetime, span: timedelta) -> list[Transaction]:
    """Items with ``end - span <= occurred_at < end`` (items need not be sorted)."""
    start = end - span
    return [t for t in items if start <= t.occurred_at < end]


def build_context(
    tx: Transaction,
    candidates: Sequence[Transaction],
    *,
    edges: Sequence[TransferEdge] = (),
) -> HistoryContext:
    """Point-in-time context for ``tx`` from any superset of candidate transactions.

    ``candidates`` may contain later transactions and ``tx`` itself (out-of-order arrival,
    replays); they are filtered out here, which is what makes late events score correctly.
    """
    t = tx.occurred_at
    acct, cp, agent, client = [], [], [], []
    cp_id = tx.counterparty_account_id
    for o in candidates:
        if o.id == tx.id or o.tenant != tx.tenant or not _before(tx, o):
            continue
        age = t - o.occurred_at
        touches_acct = tx.account_id in (o.account_id, o.counterparty_account_id)
        if touches_acct and age <= MAX_LOOKBACK:
            acct.append(o)
        if (
            cp_id
            and cp_id in (o.account_id, o.counterparty_account_id)
            and age <= COUNTERPARTY_LOOKBACK
        ):
            cp.append(o)
        if tx.agent_id and o.agent_id == tx.agent_id and age <= AGENT_LOOKBACK:
            agent.append(o)
        if not touches_acct and age <= MAX_LOOKBACK and on_other_account(tx, o):
            client.append(o)
    key = lambda o: (o.occurred_at, o.id)  # noqa: E731
    acct.sort(key=key)
    cp.sort(key=key)
    agent.sort(key=key)
    client.sort(key=key)
    pit_edges = tuple(e for e in edges if (e.at, e.tx_id) < (t, tx.id))
    return HistoryContext(
        account=acct, counterparty=cp, agent=agent, edges=pit_edges, client=client
    )


# How far into the previous history (or view) the next one may start: records its window
# dropped at the front since. Further, callers build it anew.
MAX_DROPPED = 64


def continuation(
    prev: Sequence[object], new: Sequence[object], max_dropped: int = MAX_DROPPED
) -> tuple[int, int] | None:
    """Where ``new`` picks up from ``prev``, object for object: ``(dropped, same)`` when
    ``new[0]`` is ``prev[dropped]`` with ``dropped < max_dropped`` and the ``same`` records from
    there are the same objects in both; None when ``new`` does not start among ``prev``'s first
    ``max_dropped`` records (or either is empty).

    A window moving on drops a few records at its front and appends at its end: consecutive
    histories of one account (or views of one window) share everything from ``dropped`` on, and
    a late arrival among the latest records ends ``same`` early. Compared by identity in C.
    """
    if not prev or not new:
        return None
    first = new[0]
    for dropped, o in enumerate(islice(prev, max_dropped)):
        if o is first:
            return dropped, _same_run(prev, dropped, new)
    return None


def _same_run(prev: Sequence[object], start: int, new: Sequence[object]) -> int:
    """How many leading records of ``new`` are ``prev[start:]``'s, object for object (compared
    in C, a block at a time)."""
    limit = min(len(prev) - start, len(new))
    if all(map(is_, prev[start : start + limit], new)):
        return limit
    done = 0
    while done < limit:
        upto = min(done + 64, limit)
        if all(map(is_, prev[start + done : start + upto], new[done:upto])):
            done = upto
            continue
        for k in range(done, upto):
            if prev[start + k] is not new[k]:
                return k
    return limit
