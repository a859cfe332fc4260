"""Every rule: a pure function of (transaction, point-in-time history, configuration).

Rules never read the clock: windows end at ``tx.occurred_at`` and the history handed in holds
only what happened strictly before the transaction, so the current transaction is counted once,
explicitly, where a rule includes it.

Money moves are looked at from one account's side. The same transfer can reach the product
twice (the debit on the sender's account and the credit on the receiver's); :func:`movements`
folds such mirrored records into one so that nothing is counted twice.

Rule ids are stable: they are stored with decisions, alerts and rule configuration versions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, partial
from operator import attrgetter, le
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from aml.domain import (
    ActorType,
    Direction,
    Transaction,
    TransactionStatus,
    TransactionType,
    fast_init,
)
from aml.features import in_zone
from aml.graph import GraphSearch, find_chains, find_cycles
from aml.history import HistoryContext, TransferEdge, continuation
from aml.money import exponent
from aml.rules.config import CurrencyThresholds, RuleParams

_FLIP = {Direction.IN: Direction.OUT, Direction.OUT: Direction.IN, Direction.NONE: Direction.NONE}
_CASH_TYPES = frozenset({TransactionType.DEPOSIT, TransactionType.WITHDRAWAL})
_TRANSFER_TYPES = frozenset({TransactionType.TRANSFER, TransactionType.PAYMENT})
# Money leaving after a loan that is not the borrower moving it on.
_LOAN_SERVICING = frozenset(
    {TransactionType.LOAN_REPAYMENT, TransactionType.FEE, TransactionType.CHARGE}
)
_NO_ACCOUNTS: frozenset[str] = frozenset()
_UNSCORABLE = frozenset({TransactionStatus.REJECTED, TransactionStatus.CORRECTION})
_REVERSAL = TransactionType.REVERSAL
_DISBURSEMENT = TransactionType.LOAN_DISBURSEMENT
_IN, _OUT, _NONE = Direction.IN, Direction.OUT, Direction.NONE


def is_scorable(tx: Transaction) -> bool:
    """Whether ``tx`` is a money movement rules look at (not an attempt or a correction)."""
    # The same test is written out inline in the loops over history below (hot path).
    return tx.status not in _UNSCORABLE and tx.type is not _REVERSAL and not tx.reversed


def flow(tx: Transaction) -> tuple[str, str] | None:
    """``(source, destination)`` accounts of a transfer-like transaction, if both are known."""
    cp = tx.counterparty_account_id
    if not cp or cp == tx.account_id:
        return None
    if tx.direction is Direction.OUT:
        return tx.account_id, cp
    if tx.direction is Direction.IN:
        return cp, tx.account_id
    return None


def edge_of(tx: Transaction) -> TransferEdge | None:
    """The transfer edge a transaction adds to the graph (``None`` when it is not a transfer)."""
    f = flow(tx)
    if f is None or not is_scorable(tx):
        return None
    return _new_edge(src=f[0], dst=f[1], amount=tx.amount, at=tx.occurred_at, tx_id=tx.id)


_new_edge = fast_init(TransferEdge)


class Movement(NamedTuple):
    """One money movement seen from ``account``'s side.

    A named tuple rather than a dataclass: several are built for every transaction scored, and
    a tuple is built and read in C.
    """

    direction: Direction  # relative to the account
    counterparty: str | None
    amount: float
    currency: str
    at: datetime
    tx: Transaction


_AT = attrgetter("at")

# ``Movement(*fields)`` without the named tuple's Python-level ``__new__``.
_new_movement: Callable[[tuple[Any, ...]], Movement] = partial(tuple.__new__, Movement)  # type: ignore[assignment]


def _movement(account: str, o: Transaction) -> Movement | None:
    if o.account_id == account:
        return Movement(
            o.direction, o.counterparty_account_id, o.amount, o.currency, o.occurred_at, o
        )
    if o.counterparty_account_id == account:
        return Movement(_FLIP[o.direction], o.account_id, o.amount, o.currency, o.occurred_at, o)
    return None


def movements(account: str, txs: Sequence[Transaction]) -> list[Movement]:
    """Scorable movements of ``account`` in ``txs`` with mirrored records folded into one."""
    out: list[Movement] = []
    _extend(account, txs, out, set(), single=len(txs) == 1)
    return out


def _extend(
    account: str,
    txs: Iterable[Transaction],
    out: list[Movement],
    seen: set[tuple[Any, ...]],
    keys: list[tuple[Any, ...] | None] | None = None,
    *,
    single: bool = False,
) -> bool:
    """Append to ``out`` the movements of ``account`` in ``txs``, folding each into any earlier
    one with the same key in ``seen`` (which gets the new keys).

    ``keys``, when given, gets one entry per item of ``txs``: its key, or None for an item that
    adds no movement. ``single``: ``txs`` is one record and ``seen`` is empty, so nothing can
    be folded and no key is built. Returns False when an item was folded.
    """
    clean = True
    unscorable, reversal, flip = _UNSCORABLE, _REVERSAL, _FLIP
    units, new = _UNITS, _new_movement
    add_key = keys.append if keys is not None else None
    for o in txs:
        # is_scorable and _movement, inlined: this runs for every history item of every
        # transaction scored.
        if o.status in unscorable or o.type is reversal or o.reversed:
            if add_key is not None:
                add_key(None)
            continue
        if o.account_id == account:
            direction = o.direction
            cp = o.counterparty_account_id
        elif o.counterparty_account_id == account:
            direction = flip[o.direction]
            cp = o.account_id
        else:
            if add_key is not None:
                add_key(None)
            continue
        at = o.occurred_at
        currency = o.currency
        if not single:
            if cp:
                key: tuple[Any, ...] = (direction, cp, o.amount_minor, currency, at)
            else:
                key = (o.id,)
            if key in seen:
                clean = False
                if add_key is not None:
                    add_key(None)
                continue
            seen.add(key)
            if add_key is not None:
                add_key(key)
        unit = units.get(currency) or _unit(currency)
        out.append(new((direction, cp, o.amount_minor / unit, currency, at, o)))
    return clean


class Tally:
    """What the rules count over a history's movements, kept up to date as records come and
    go (see :class:`MovementCache`): movements per currency, counterparties by direction with
    their number of movements, outgoing movements naming one, loan disbursements among the
    records, and whether the movements are in time order. Read it before the next call for the
    same account, which changes it."""

    __slots__ = (
        "currencies",
        "disbursements",
        "every",
        "n_out",
        "ordered",
        "recipients",
        "senders",
    )

    def __init__(self) -> None:
        self.currencies: dict[str, int] = {}
        self.senders: dict[str, int] = {}
        self.recipients: dict[str, int] = {}
        self.every: dict[str, int] = {}
        self.n_out = 0
        self.disbursements = 0
        self.ordered = True

    def count(self, moves: Iterable[Movement], records: Iterable[Transaction], sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) ``moves`` and the ``records`` they came from."""
        currencies, senders, recipients, every = (
            self.currencies,
            self.senders,
            self.recipients,
            self.every,
        )
        inbound, outbound = _IN, _OUT
        for m in moves:
            _bump(currencies, m.currency, sign)
            cp = m.counterparty
            if not cp:
                continue
            _bump(every, cp, sign)
            if m.direction is inbound:
                _bump(senders, cp, sign)
            elif m.direction is outbound:
                _bump(recipients, cp, sign)
                self.n_out += sign
        self.disbursements += sign * [o.type for o in records].count(_DISBURSEMENT)


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    n = counts.get(key, 0) + by
    if n:
        counts[key] = n
    else:
        del counts[key]


def _in_time_order(moves: Sequence[Movement]) -> bool:
    ats = [m.at for m in moves]
    return all(map(le, ats, ats[1:]))


class _Extendable:
    """One account's last history, its movements and their tally (see :class:`MovementCache`)."""

    __slots__ = ("keys", "moves", "seen", "tally", "txs")

    def __init__(
        self,
        txs: tuple[Transaction, ...],
        moves: list[Movement],
        keys: list[tuple[Any, ...] | None],
        seen: set[tuple[Any, ...]],
        tally: Tally | None,
    ) -> None:
        self.txs = txs
        self.moves = moves
        self.keys = keys  # per item of txs: its movement's key, None when it adds none
        self.seen = seen  # the keys that are not None (all distinct: nothing was folded)
        self.tally = tally  # None until the history is first extended


class MovementCache:
    """:func:`movements` of an account's history, extended from the account's previous call.

    Serving scores an account's transactions one after another, and each sees the previous
    one's history (the same objects, in the same order) with the transactions since appended
    and, as its 7-day window moves on, the oldest few dropped. Building the movements again
    from the whole history made a busy account (an agent's or a merchant's float) cost a
    millisecond of rules per transaction with 1,000 movements in its week; here the objects
    already seen are only compared by identity, in C, and the new ones built.

    The answer is always ``movements(account, txs)``. Records the previous history has beyond
    what the new one shares with it (a late arrival inserted among the latest records, a batch
    scored after a later one) are taken back before the new ones are built; a history that
    does not start among the previous one's first records (a reloaded window) is built anew;
    an account whose history ever folds mirrored records is not kept (dropping records could
    then change what the others fold into).

    Only histories of ``min_items`` or more go through it, for at most ``max_accounts``
    accounts and ``max_items`` transactions in all (least recently used first out). Below 64
    records the bookkeeping, and the objects kept alive for the garbage collector to walk, cost
    about what they save: end to end at 2,000 hooks/s over 3,000 accounts (histories up to
    about 40), keeping histories from 16 records made ``RuleScorer`` use 0.31 cores instead of
    0.27. A record kept costs about 320 bytes (its movement, its key, the references, its
    share of the tally): the default 200,000 records, 65 MB, hold 200 accounts of 1,000
    records a week. Not thread-safe: one per rule engine, which evaluates one transaction at a
    time.
    """

    def __init__(
        self, *, min_items: int = 64, max_accounts: int = 8192, max_items: int = 200_000
    ) -> None:
        self.min_items = min_items
        self.max_accounts = max_accounts
        self.max_items = max_items
        self.items = 0  # transactions held, over all accounts
        self.extended = 0  # answers built from a previous history (observability, tests)
        self._last: OrderedDict[tuple[str, str, str], _Extendable] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def clear(self) -> None:
        """Forget every history (the next call of each account builds anew)."""
        self._last.clear()
        self.items = 0

    def tallied(
        self,
        account: str,
        txs: Sequence[Transaction],
        *,
        tenant: str = "",
        view: str = "account",
    ) -> tuple[list[Movement], Tally | None]:
        """``movements(account, txs)`` and, when the history was kept and extended, its
        :class:`Tally` (None otherwise). ``view`` names which of the account's histories
        ``txs`` is (its own, or as a transaction's counterparty, with a window of its own), so
        that each is extended from its own previous call (and ``tenant`` whose account)."""
        if not txs or len(txs) < self.min_items:
            return movements(account, txs), None
        slot = (view, tenant, account)
        last = self._last.pop(slot, None)
        if last is not None:
            self.items -= len(last.txs)
            answer = self._extended(last, slot, txs)
            if answer is not None:
                return answer
        out: list[Movement] = []
        keys: list[tuple[Any, ...] | None] = []
        seen: set[tuple[Any, ...]] = set()
        if not _extend(account, txs, out, seen, keys):
            return out, None  # folded: not kept
        # Tallied when the history is first extended: many are never met again.
        self._keep(slot, _Extendable(tuple(txs), out, keys, seen, None))
        return list(out), None

    def _extended(
        self, last: _Extendable, slot: tuple[str, str, str], txs: Sequence[Transaction]
    ) -> tuple[list[Movement], Tally | None] | None:
        """The movements of ``txs`` from ``last`` when ``txs`` starts inside its first records
        (None otherwise): the records both share from there on are kept, the ones ``last``
        has beyond them are taken back (a late arrival inserted among the latest records, or
        a batch scored after a later one), and the rest of ``txs`` is built. ``last`` is
        consumed either way."""
        prev = last.txs
        run = continuation(prev, txs)  # None: starts beyond MAX_DROPPED, built anew
        if run is None:
            return None
        dropped, same = run
        seen, keys = last.seen, last.keys
        n_front = n_back = 0
        for key in keys[:dropped]:
            if key is not None:
                seen.discard(key)
                n_front += 1
        for key in keys[dropped + same :]:
            if key is not None:
                seen.discard(key)
                n_back += 1
        kept = len(last.moves) - n_back
        moves = last.moves[n_front:kept]
        keys = keys[dropped : dropped + same]
        added = txs[same:]
        clean = _extend(slot[2], added, moves, seen, keys)
        self.extended += 1
        if not clean:
            return moves, None
        tally = last.tally
        if tally is None:
            tally = Tally()
            tally.count(moves, txs, 1)
            tally.ordered = _in_time_order(moves)
        else:
            tally.count(last.moves[:n_front], prev[:dropped], -1)
            tally.count(last.moves[kept:], prev[dropped + same :], -1)
            new = moves[kept - n_front :]
            tally.count(new, added, 1)
            if tally.ordered and new:
                before = kept - n_front - 1
                ordered = before < 0 or moves[before].at <= new[0].at
                tally.ordered = ordered and _in_time_order(new)
        self._keep(slot, _Extendable(tuple(txs), moves, keys, seen, tally))
        return list(moves), tally

    def _keep(self, slot: tuple[str, str, str], entry: _Extendable) -> None:
        self._last[slot] = entry
        self.items += len(entry.txs)
        while self._last and (len(self._last) > self.max_accounts or self.items > self.max_items):
            _, old = self._last.popitem(last=False)
            self.items -= len(old.txs)


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1 << 16)
def _local_date(at: datetime, zone: str) -> date:
    """Local calendar date of an instant (cached: the same history items are read by every
    transaction of their account, and a time-zone conversion costs more than the look-up)."""
    return at.astimezone(_zone(zone)).date()


@lru_cache(maxsize=4096)
def _local_day(day: date, zone: str) -> tuple[datetime, datetime] | None:
    """The instants ``[start, end)`` whose local date in ``zone`` is ``day``, when the zone's
    offset stays the same from the day's start to a few hours past its end; None otherwise (a
    clock set back soon after midnight brings the date back: each instant is then converted).
    """
    z = _zone(zone)
    midnight = datetime.combine(day, time(), tzinfo=z)
    offset = midnight.utcoffset()
    start = midnight.astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=z).astimezone(UTC)
    # Past the end by more than any clock change sets a clock back.
    later = (end + _CLOCK_CHANGE_MAX).astimezone(z).utcoffset()
    if end.astimezone(z).utcoffset() != offset or later != offset:
        return None
    return start, end


_CLOCK_CHANGE_MAX = timedelta(hours=3)


_UNITS: dict[str, float] = {}


def _unit(currency: str) -> float:
    """The divisor ``Transaction.amount`` uses for ``currency`` (the same float, cached)."""
    unit = _UNITS.get(currency)
    if unit is None:
        unit = _UNITS[currency] = float(10 ** exponent(currency))
    return unit


@lru_cache(maxsize=256)
def _span(minutes: int) -> timedelta:
    """A window length (cached: built for every transaction otherwise)."""
    return timedelta(minutes=minutes)


class RuleInput:
    """What a rule sees: the transaction, its history, the knobs and its currency's thresholds.

    Derived views (movements, windows, the loan and agent-float views, local time) are built
    once per transaction and shared by every rule: the views that nearly every transaction needs
    are computed here, the rest on the first rule that asks for them.
    """

    __slots__ = (
        "_agent_float",
        "_loan",
        "_local",
        "_parties",
        "_same_currency_moves",
        "_since",
        "agent_txs",
        "amount",
        "cache",
        "ctx",
        "current",
        "disbursed",
        "edge",
        "moves",
        "p",
        "tally",
        "th",
        "tx",
    )

    def __init__(
        self,
        tx: Transaction,
        ctx: HistoryContext,
        params: RuleParams,
        thresholds: CurrencyThresholds | None,
        cache: MovementCache | None = None,
    ) -> None:
        """``cache``: the rule engine's, when it scores an account's transactions in turn."""
        self.tx = tx
        self.cache = cache
        self.ctx = ctx
        self.p = params
        self.th = thresholds
        self.amount = amount = tx.amount
        # Prior movements of the transaction's account (7 days, time-ordered).
        account = ctx.account
        # Counts over the movements the cache keeps up to date for a busy account (None:
        # counted here from the movements when a rule asks).
        self.tally: Tally | None = None
        if not account:
            self.moves: list[Movement] = []
        elif cache is not None:
            self.moves, self.tally = cache.tallied(tx.account_id, account, tenant=tx.tenant)
        else:
            self.moves = movements(tx.account_id, account)
        # Whether the history holds any loan disbursement, which the loan view needs.
        client = ctx.client
        if self.tally is not None:
            self.disbursed: bool = self.tally.disbursements > 0
        else:
            self.disbursed = bool(account) and _DISBURSEMENT in [o.type for o in account]
        if client and not self.disbursed:
            self.disbursed = _DISBURSEMENT in [o.type for o in client]
        # The transaction is on its own account: _movement(tx.account_id, tx), built directly.
        self.current: Movement | None = _new_movement(
            (tx.direction, tx.counterparty_account_id, amount, tx.currency, tx.occurred_at, tx)
        )
        self.edge: TransferEdge | None = edge_of(tx) if tx.counterparty_account_id else None
        agent = ctx.agent
        unscorable, reversal = _UNSCORABLE, _REVERSAL
        self.agent_txs: list[Transaction] = (
            [o for o in agent if not (o.status in unscorable or o.type is reversal or o.reversed)]
            if agent
            else []
        )
        self._since: dict[timedelta, list[Movement]] = {}
        self._same_currency_moves: list[Movement] | None = None
        self._local: datetime | None = None
        self._loan: tuple[_LoanView | None] | None = None
        self._agent_float: tuple[float, float, int] | None = None
        self._parties: tuple[set[str], set[str], set[str], int] | None = None

    def since(self, span: timedelta) -> list[Movement]:
        """Prior movements within ``span`` before the transaction (shared: do not modify)."""
        out = self._since.get(span)
        if out is None:
            start = self.tx.occurred_at - span
            moves = self.moves
            if self.tally is not None and self.tally.ordered:
                out = moves[bisect_left(moves, start, key=_AT) :]
            else:
                out = [m for m in moves if m.at >= start]
            self._since[span] = out
        return out

    def parties(self) -> tuple[set[str], set[str], set[str], int]:
        """Counterparties of the prior movements, in one pass shared by the rules that count
        them: senders, recipients, any direction, and how many outgoing movements name one
        (shared: do not modify)."""
        if self._parties is None and self.tally is not None:
            t = self.tally
            self._parties = (set(t.senders), set(t.recipients), set(t.every), t.n_out)
        if self._parties is None:
            senders: set[str] = set()
            recipients: set[str] = set()
            every: set[str] = set()
            n_out = 0
            inbound, outbound = Direction.IN, Direction.OUT
            for m in self.moves:
                cp = m.counterparty
                if not cp:
                    continue
                every.add(cp)
                direction = m.direction
                if direction is inbound:
                    senders.add(cp)
                elif direction is outbound:
                    recipients.add(cp)
                    n_out += 1
            self._parties = (senders, recipients, every, n_out)
        return self._parties

    def same_currency(self, items: Sequence[Movement]) -> list[Movement]:
        if items is self.moves:
            if self._same_currency_moves is None:
                currency = self.tx.currency
                tally = self.tally
                if tally is not None and tally.currencies.get(currency, 0) == len(items):
                    self._same_currency_moves = self.moves  # all of them
                else:
                    self._same_currency_moves = [m for m in items if m.currency == currency]
            return self._same_currency_moves
        currency = self.tx.currency
        return [m for m in items if m.currency == currency]

    @property
    def local(self) -> datetime:
        """The transaction's time in the configured time zone."""
        if self._local is None:
            self._local = in_zone(self.tx.occurred_at, self.p.timezone)
        return self._local

    @property
    def loan_view(self) -> _LoanView | None:
        """The latest fresh disbursement and what left since (see :func:`_loan_view`)."""
        if self._loan is None:
            self._loan = (_loan_view(self),)
        return self._loan[0]

    @property
    def agent_float(self) -> tuple[float, float, int]:
        """Cash in, cash out and count the agent handled in 24 h (see :func:`_agent_float`)."""
        if self._agent_float is None:
            self._agent_float = _agent_float(self)
        return self._agent_float


class Fired(NamedTuple):
    """A rule's finding before the engine applies overrides (a tuple: built per hit)."""

    severity: float
    values: dict[str, Any]
    description: str


RuleFn = Callable[[RuleInput], Fired | None]


class Traits(NamedTuple):
    """What the rules' preconditions read of the transaction itself.

    Most rules look at one kind of transaction only (agent cash, outgoing transfers, ...); the
    engine runs on each transaction only the rules whose ``when`` holds for its traits, instead
    of calling every rule to have most of them return at their first line.
    """

    direction: Direction
    type: TransactionType
    counterparty: bool  # names a counterparty account
    flow: bool  # a transfer between two accounts (:func:`flow` is not None)
    agent: bool  # performed by an agent (``agent_id`` or actor type)
    agent_id: bool  # names the agent


def traits_of(tx: Transaction) -> Traits:
    """The :class:`Traits` of a transaction."""
    cp = tx.counterparty_account_id
    direction = tx.direction
    agent_id = tx.agent_id is not None
    return Traits(
        direction,
        tx.type,
        bool(cp),
        bool(cp) and cp != tx.account_id and direction is not _NONE,
        agent_id or tx.actor_type is ActorType.AGENT,
        agent_id,
    )


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A registered rule.

    Attributes:
        needs_thresholds: the rule compares money with per-currency thresholds and is skipped
            for a currency without them.
        when: a condition on the transaction's :class:`Traits` without which the rule never
            fires (it must be implied by the rule's own checks); ``None``: always run it.
        min_moves: the fewest earlier movements of the account (``RuleInput.moves``) with
            which the rule can fire under the given parameters; ``None``: no such bound.
        min_agent_txs: the same for the agent's earlier transactions (``RuleInput.agent_txs``).
        needs_disbursement: the rule fires only on a loan view, which needs a disbursement in
            the account's or the client's history (``RuleInput.disbursed``).
    """

    rule_id: str
    category: str
    fn: RuleFn
    needs_thresholds: bool = False
    enabled_by_default: bool = True
    when: Callable[[Traits], bool] | None = None
    min_moves: Callable[[RuleParams], int] | None = None
    min_agent_txs: Callable[[RuleParams], int] | None = None
    needs_disbursement: bool = False


def _clip(value: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, value))


def _th(ri: RuleInput) -> CurrencyThresholds:
    # Only called by rules registered with needs_thresholds=True.
    assert ri.th is not None
    return ri.th


def _money(value: float) -> float:
    return round(value, 2)


# --- amount ----------------------------------------------------------------------------------


def large_amount(ri: RuleInput) -> Fired | None:
    """One transaction at or above the reporting threshold; 0.5 at it, 1.0 at twice it."""
    limit = _th(ri).large_amount
    if ri.amount < limit:
        return None
    return Fired(
        _clip(ri.amount / (2 * limit)),
        {"amount": ri.amount, "threshold": limit, "currency": ri.tx.currency},
        f"amount {ri.amount:,.2f} {ri.tx.currency} at or above {limit:,.0f}",
    )


def structuring(ri: RuleInput) -> Fired | None:
    """One amount in the band just below the reporting threshold."""
    th = _th(ri)
    if not th.structuring_floor <= ri.amount < th.large_amount:
        return None
    return Fired(
        0.6,
        {"amount": ri.amount, "floor": th.structuring_floor, "threshold": th.large_amount},
        f"amount just below the {th.large_amount:,.0f} {ri.tx.currency} reporting threshold",
    )


def round_number(ri: RuleInput) -> Fired | None:
    """A round multiple of the currency's unit (noisy in XAF, off by default)."""
    unit = _th(ri).round_unit
    if ri.amount < unit or ri.amount % unit != 0:
        return None
    return Fired(0.3, {"amount": ri.amount, "unit": unit}, f"round amount (multiple of {unit:g})")


def cash_threshold_report(ri: RuleInput) -> Fired | None:
    """Cash at or above the CTR threshold, singly or as the same local day's aggregate.

    Fires once per day: on the transaction that takes the day's cash total over the threshold.
    """
    tx = ri.tx
    if tx.type not in _CASH_TYPES:
        return None
    limit = _th(ri).ctr_threshold
    moves = ri.same_currency(ri.moves)
    day = ri.local.date()
    prior: float = 0  # sum() of nothing, as below
    if moves:
        zone = ri.p.timezone
        bounds = _local_day(day, zone)
        if bounds is not None:
            # Two comparisons instead of a time-zone look-up per movement.
            start, end = bounds
            on_day = [m for m in moves if start <= m.at < end]
        else:
            on_day = [m for m in moves if _local_date(m.at, zone) == day]
        acct = tx.account_id
        prior = sum(
            [m.amount for m in on_day if m.tx.account_id == acct and m.tx.type in _CASH_TYPES]
        )
    total = prior + ri.amount
    if ri.amount < limit and not prior < limit <= total:
        return None
    return Fired(
        0.1,
        {"amount": ri.amount, "day_total": _money(total), "threshold": limit, "day": str(day)},
        f"cash of {total:,.2f} {tx.currency} on {day} reaches the CTR threshold {limit:,.0f}",
    )


def high_value_anonymous_payment(ri: RuleInput) -> Fired | None:
    """A merchant payment at or above the threshold with no counterparty information."""
    tx = ri.tx
    merchant = tx.type is TransactionType.PAYMENT or tx.actor_type is ActorType.MERCHANT
    merchant = merchant or tx.merchant_id is not None
    anonymous = not (tx.counterparty_account_id or tx.counterparty_client_id)
    anonymous = anonymous and not tx.counterparty_name
    limit = _th(ri).anonymous_payment
    if not (merchant and anonymous and ri.amount >= limit):
        return None
    return Fired(
        0.5,
        {"amount": ri.amount, "threshold": limit},
        "merchant payment without any counterparty information",
    )


# --- velocity --------------------------------------------------------------------------------


def rapid_transactions(ri: RuleInput) -> Fired | None:
    """Many transactions on the account within the rapid window (current one included)."""
    n = ri.p.rapid_count
    if len(ri.moves) + 1 < n:
        return None  # not even the whole history is enough
    span = _span(ri.p.rapid_window_minutes)
    count = len(ri.since(span)) + 1
    if count < n:
        return None
    return Fired(
        _clip(count / (2 * n)),
        {"count": count, "threshold": n, "window_minutes": ri.p.rapid_window_minutes},
        f"{count} transactions within {ri.p.rapid_window_minutes} minutes",
    )


def high_velocity_volume(ri: RuleInput) -> Fired | None:
    """Money moved within the rapid window (prior plus current) reaching a threshold multiple."""
    limit = ri.p.volume_multiple * _th(ri).large_amount
    if ri.moves:
        span = _span(ri.p.rapid_window_minutes)
        currency = ri.tx.currency
        # same_currency(since(span)) folded into the sum (same items, same order).
        total = sum([m.amount for m in ri.since(span) if m.currency == currency]) + ri.amount
    else:
        total = ri.amount  # sum() of nothing is 0, and 0 + amount is amount
    if total < limit:
        return None
    return Fired(
        _clip(total / (2 * limit)),
        {"total": _money(total), "threshold": limit, "window_minutes": ri.p.rapid_window_minutes},
        f"{total:,.2f} {ri.tx.currency} moved within {ri.p.rapid_window_minutes} minutes",
    )


def unusual_hours(ri: RuleInput) -> Fired | None:
    """Local time of day inside the configured night window (may wrap midnight)."""
    local = ri.local
    start, end = ri.p.unusual_start_hour, ri.p.unusual_end_hour % 24
    h = local.hour
    inside = start <= h < end if start < end else (h >= start or h < end)
    if not inside:
        return None
    return Fired(
        0.4,
        {"local_hour": h, "start_hour": start, "end_hour": ri.p.unusual_end_hour},
        f"at {local:%H:%M} local time ({ri.p.timezone})",
    )


# --- transfers -------------------------------------------------------------------------------


def new_counterparty(ri: RuleInput) -> Fired | None:
    """Outgoing transfer to an account never seen in the account's available history.

    An account with fewer than ``new_counterparty_min_prior`` earlier outgoing transfers has no
    payee baseline yet, so its first transfers never fire.
    """
    cur = ri.current
    if ri.tx.type not in _TRANSFER_TYPES or cur is None or cur.direction is not Direction.OUT:
        return None
    if not cur.counterparty or len(ri.moves) < ri.p.new_counterparty_min_prior:
        return None
    _, _, known, prior_out = ri.parties()
    if prior_out < ri.p.new_counterparty_min_prior:
        return None
    if cur.counterparty in known:
        return None
    return Fired(
        0.4,
        {
            "counterparty": cur.counterparty,
            "known_counterparties": len(known),
            "prior_transfers": prior_out,
        },
        f"first transfer to {cur.counterparty} after {prior_out} transfers to others",
    )


def rapid_pair_transfers(ri: RuleInput) -> Fired | None:
    """Repeated transfers with the same counterparty within the pair window."""
    cur = ri.current
    if ri.tx.type not in _TRANSFER_TYPES or cur is None or not cur.counterparty:
        return None
    if len(ri.moves) + 1 < ri.p.pair_count:
        return None  # not even the whole history is enough
    hours = ri.p.pair_window_hours
    same = [m for m in ri.since(_span(60 * hours)) if m.counterparty == cur.counterparty]
    count = len(same) + 1
    if count < ri.p.pair_count:
        return None
    return Fired(
        _clip(count / (2 * ri.p.pair_count)),
        {"counterparty": cur.counterparty, "count": count, "window_hours": hours},
        f"{count} transfers with {cur.counterparty} within {hours} h",
    )


def _history_of(ri: RuleInput, account: str) -> list[Movement]:
    if account == ri.tx.account_id:
        return ri.moves
    if account == ri.tx.counterparty_account_id:
        if ri.cache is not None:
            return ri.cache.tallied(
                account, ri.ctx.counterparty, tenant=ri.tx.tenant, view="counterparty"
            )[0]
        return movements(account, ri.ctx.counterparty)
    return []


def cross_account_structuring(ri: RuleInput) -> Fired | None:
    """Several senders pay one account, each below the threshold, together reaching it."""
    f = flow(ri.tx)
    limit = _th(ri).large_amount
    if f is None or ri.amount >= limit:
        return None
    sender, collector = f
    # Fewer earlier records than the other senders needed cannot hold enough senders: skip
    # building the collector's movements (the usual case for a payee seen rarely).
    need = ri.p.cross_structuring_min_senders - 1
    if collector == ri.tx.account_id:
        if len(ri.moves) < need:
            return None
    elif len(ri.ctx.counterparty) < need:
        return None
    start = ri.tx.occurred_at - _span(60 * ri.p.cross_structuring_window_hours)
    inflows = [
        m
        for m in _history_of(ri, collector)
        if m.direction is Direction.IN
        and m.counterparty
        and m.at >= start
        and m.currency == ri.tx.currency
        and m.amount < limit
    ]
    senders = {m.counterparty for m in inflows} | {sender}
    total = sum([m.amount for m in inflows]) + ri.amount
    if len(senders) < ri.p.cross_structuring_min_senders or total < limit:
        return None
    return Fired(
        0.75,
        {
            "collector": collector,
            "senders": len(senders),
            "total": _money(total),
            "threshold": limit,
            "window_hours": ri.p.cross_structuring_window_hours,
        },
        f"{len(senders)} senders paid {collector} {total:,.2f} {ri.tx.currency}, "
        f"each below {limit:,.0f}",
    )


# How many cycles and chains the rules ask a search for (the transfer graph asks for as many).
CYCLE_RESULTS = 1
CHAIN_RESULTS = 4


def graph_search(p: RuleParams, *, cycles: bool = True, chains: bool = True) -> GraphSearch:
    """What :func:`circular_transfer` and :func:`stacking` search for under ``p`` (a search of a
    rule that is off is skipped)."""
    return GraphSearch(
        cycle_max_hops=p.cycle_max_hops if cycles else 0,
        cycle_window=_span(60 * p.cycle_window_hours),
        cycle_tolerance=p.cycle_amount_tolerance,
        cycle_results=CYCLE_RESULTS,
        chain_min_hops=p.stacking_min_hops if chains else 0,
        chain_window=_span(p.stacking_window_minutes),
        chain_ratio=(p.stacking_ratio_min, p.stacking_ratio_max),
        chain_results=CHAIN_RESULTS,
    )


def circular_transfer(ri: RuleInput) -> Fired | None:
    """The transfer closes a time-respecting cycle: money returns to where it left."""
    edge = ri.edge
    if edge is None:
        return None
    # A cycle needs an earlier edge leaving the payee and one reaching the payer: without both
    # the search cannot find one (checked in one pass, before the search builds its index).
    src, dst = edge.src, edge.dst
    into_src = out_of_dst = False
    for e in ri.ctx.edges:
        if e.dst == src:
            into_src = True
        if e.src == dst:
            out_of_dst = True
    if not (into_src and out_of_dst):
        return None
    p = ri.p
    cycles = find_cycles(
        ri.ctx.edges,
        edge,
        max_hops=p.cycle_max_hops,
        window=_span(60 * p.cycle_window_hours),
        amount_tolerance=p.cycle_amount_tolerance,
        max_results=CYCLE_RESULTS,
    )
    if not cycles:
        return None
    cycle = cycles[0]
    path = [cycle[0].src, *(e.dst for e in cycle)]
    return Fired(
        0.7,
        {
            "hops": len(cycle),
            "path": path,
            "amounts": [e.amount for e in cycle],
            "first_at": cycle[0].at.isoformat(),
            "window_hours": p.cycle_window_hours,
        },
        f"money returns to {edge.dst} after {len(cycle)} hops: " + " -> ".join(path),
    )


def stacking(ri: RuleInput) -> Fired | None:
    """The transfer ends a fast layering chain of similar amounts."""
    edge = ri.edge
    if edge is None:
        return None
    p = ri.p
    # A chain of two or more hops needs an earlier edge reaching the payer.
    src = edge.src
    if p.stacking_min_hops > 1 and not any([e.dst == src for e in ri.ctx.edges]):
        return None
    chains = find_chains(
        ri.ctx.edges,
        edge,
        min_hops=p.stacking_min_hops,
        window=_span(p.stacking_window_minutes),
        ratio=(p.stacking_ratio_min, p.stacking_ratio_max),
        max_results=CHAIN_RESULTS,
    )
    if not chains:
        return None
    chain = max(chains, key=len)
    path = [chain[0].src, *(e.dst for e in chain)]
    return Fired(
        0.8,
        {
            "hops": len(chain),
            "path": path,
            "amounts": [e.amount for e in chain],
            "window_minutes": p.stacking_window_minutes,
        },
        f"layering chain of {len(chain)} similar amounts: " + " -> ".join(path),
    )


def _distinct(items: Sequence[Movement], direction: Direction) -> set[str]:
    return {m.counterparty for m in items if m.direction is direction and m.counterparty}


def _fan(ri: RuleInput, direction: Direction, parties: str) -> Fired | None:
    """Fires when ``direction`` movements reach ``fan_min`` distinct counterparties (named
    ``parties`` in the values and the reason) within the fan window, the current one included."""
    cur = ri.current
    if cur is None or cur.direction is not direction or not cur.counterparty:
        return None
    if len(ri.moves) + 1 < ri.p.fan_min:
        return None  # not even the whole history is enough
    hours = ri.p.fan_window_hours
    seen = _distinct(ri.since(_span(60 * hours)), direction) | {cur.counterparty}
    n = len(seen)
    if n < ri.p.fan_min:
        return None
    return Fired(
        _clip(0.5 + 0.05 * (n - ri.p.fan_min), hi=0.9),
        {parties: n, "threshold": ri.p.fan_min, "window_hours": hours},
        f"{n} distinct {parties} within {hours} h",
    )


def fan_in(ri: RuleInput) -> Fired | None:
    """Many distinct senders into the account within the fan window."""
    return _fan(ri, Direction.IN, "senders")


def fan_out(ri: RuleInput) -> Fired | None:
    """Many distinct recipients from the account within the fan window."""
    return _fan(ri, Direction.OUT, "recipients")


def scatter_gather(ri: RuleInput) -> Fired | None:
    """Many senders gather money in the account, then one large outflow takes it away."""
    cur = ri.current
    if cur is None or cur.direction is not Direction.OUT:
        return None
    if len(ri.moves) < ri.p.scatter_min_senders:
        return None  # not even the whole history is enough
    # One pass over the same-currency inflows: their distinct senders and what they brought.
    senders: set[str] = set()
    gathered = 0.0
    inbound = Direction.IN
    for m in ri.same_currency(ri.moves):
        if m.direction is inbound and m.counterparty:
            senders.add(m.counterparty)
            gathered += m.amount
    n = len(senders)
    if n < ri.p.scatter_min_senders:
        return None
    if ri.amount < ri.p.scatter_outflow_share * gathered:
        return None
    return Fired(
        _clip(0.6 + 0.03 * (n - ri.p.scatter_min_senders), hi=0.95),
        {"senders": n, "gathered": _money(gathered), "outflow": ri.amount, "window_days": 7},
        f"{n} senders gathered {gathered:,.2f} {ri.tx.currency}, then {ri.amount:,.2f} left",
    )


def bipartite_layering(ri: RuleInput) -> Fired | None:
    """Many distinct sources and many distinct recipients within 7 days (pass-through)."""
    cur = ri.current
    if cur is None or not cur.counterparty or cur.direction is Direction.NONE:
        return None
    k = ri.p.bipartite_min
    if len(ri.moves) + 1 < 2 * k:
        return None  # k sources and k recipients take 2k movements at least
    senders, recipients, _, _ = ri.parties()
    # The current movement counts too, when it brings a party not seen before.
    cp, direction = cur.counterparty, cur.direction
    sources = len(senders) + (direction is Direction.IN and cp not in senders)
    sinks = len(recipients) + (direction is Direction.OUT and cp not in recipients)
    if sources < k or sinks < k:
        return None
    return Fired(
        0.9,
        {"sources": sources, "recipients": sinks, "threshold": k, "window_days": 7},
        f"pass-through: {sources} sources and {sinks} recipients within 7 days",
    )


def merchant_collection_account(ri: RuleInput) -> Fired | None:
    """An account that only collects: large inflow from many payers and nothing leaves."""
    cur = ri.current
    if cur is None or cur.direction is not Direction.IN:
        return None
    if len(ri.moves) + 1 < ri.p.collection_min_senders:
        return None  # not even the whole history holds enough payers
    if any(m.direction is Direction.OUT for m in ri.moves):
        return None
    inflows = [m for m in ri.same_currency(ri.moves) if m.direction is Direction.IN]
    total = sum([m.amount for m in inflows]) + ri.amount
    limit = ri.p.collection_inflow_multiple * _th(ri).large_amount
    payers = _distinct([*inflows, cur], Direction.IN)
    if total <= limit or len(payers) < ri.p.collection_min_senders:
        return None
    return Fired(
        0.7,
        {"inflow": _money(total), "threshold": limit, "payers": len(payers), "window_days": 7},
        f"{total:,.2f} {ri.tx.currency} collected from {len(payers)} payers, no outflow in 7 days",
    )


# --- agents ----------------------------------------------------------------------------------


def _is_agent_tx(tx: Transaction) -> bool:
    return tx.agent_id is not None or tx.actor_type is ActorType.AGENT


def _agent_window(ri: RuleInput, minutes: int) -> list[Transaction]:
    start = ri.tx.occurred_at - _span(minutes)
    return [o for o in ri.agent_txs if o.occurred_at >= start]


def agent_rapid_transactions(ri: RuleInput) -> Fired | None:
    """An agent handling many transactions within its rapid window."""
    if not _is_agent_tx(ri.tx):
        return None
    n = ri.p.agent_rapid_count
    if len(ri.agent_txs) + 1 < n:
        return None  # not even the agent's whole day is enough
    minutes = ri.p.agent_rapid_window_minutes
    count = len(_agent_window(ri, minutes)) + 1
    if count < n:
        return None
    return Fired(
        _clip(count / (2 * n)),
        {"agent": ri.tx.agent_id, "count": count, "threshold": n, "window_minutes": minutes},
        f"agent handled {count} transactions within {minutes} minutes",
    )


def _agent_float(ri: RuleInput) -> tuple[float, float, int]:
    """Cash in and cash out handled by the agent in 24 h (same currency, incl. current)."""
    currency = ri.tx.currency
    txs = [o for o in ri.agent_txs if o.currency == currency]
    txs.append(ri.tx)
    # ``o.amount`` with the currency's unit read once (an agent's day can be long).
    unit = _unit(currency)
    cash_in = sum([o.amount_minor / unit for o in txs if o.direction is _IN])
    cash_out = sum([o.amount_minor / unit for o in txs if o.direction is _OUT])
    return cash_in, cash_out, len(txs)


def agent_float_volume(ri: RuleInput) -> Fired | None:
    """Net float drained or accumulated by an agent in 24 h.

    Balanced cash-in/cash-out is an agent's ordinary business whatever its size; what matters
    is money piling up on (or leaving) one side.
    """
    if not _is_agent_tx(ri.tx):
        return None
    cash_in, cash_out, count = ri.agent_float
    net = abs(cash_in - cash_out)
    limit = _th(ri).agent_net_float
    if net < limit:
        return None
    return Fired(
        _clip(0.5 * net / limit),
        {
            "cash_in": _money(cash_in),
            "cash_out": _money(cash_out),
            "net": _money(net),
            "threshold": limit,
            "count": count,
        },
        f"agent net float movement {net:,.2f} {ri.tx.currency} in 24 h",
    )


def agent_float_anomaly(ri: RuleInput) -> Fired | None:
    """An agent's 24 h volume almost all on one side (cash-in or cash-out)."""
    if not _is_agent_tx(ri.tx):
        return None
    cash_in, cash_out, count = ri.agent_float
    gross = cash_in + cash_out
    if gross < _th(ri).agent_float_minimum or count < ri.p.agent_float_min_count:
        return None
    share = max(cash_in, cash_out) / gross
    if share <= ri.p.agent_float_imbalance:
        return None
    side = "cash-in" if cash_in >= cash_out else "cash-out"
    return Fired(
        0.6,
        {"share": round(share, 4), "side": side, "gross": _money(gross), "count": count},
        f"{share:.0%} of the agent's 24 h volume is {side}",
    )


def agent_structuring(ri: RuleInput) -> Fired | None:
    """An agent taking several deposits just below the threshold within an hour."""
    tx = ri.tx
    th = _th(ri)
    if not _is_agent_tx(tx) or tx.direction is not Direction.IN:
        return None
    if not th.structuring_floor <= ri.amount < th.large_amount:
        return None
    minutes = ri.p.agent_structuring_window_minutes
    band = [
        o
        for o in _agent_window(ri, minutes)
        if o.direction is Direction.IN
        and o.currency == tx.currency
        and th.structuring_floor <= o.amount < th.large_amount
    ]
    n = len(band) + 1
    k = ri.p.agent_structuring_min
    if n < k:
        return None
    return Fired(
        _clip(0.6 + 0.1 * (n - k)),
        {"count": n, "threshold": k, "floor": th.structuring_floor, "window_minutes": minutes},
        f"agent took {n} deposits just below {th.large_amount:,.0f} within {minutes} minutes",
    )


def agent_account_farming(ri: RuleInput) -> Fired | None:
    """An agent serving many distinct low-KYC clients within 24 h."""
    tx = ri.tx
    max_kyc = ri.p.agent_farming_max_kyc
    if not _is_agent_tx(tx) or tx.kyc_level is None or tx.kyc_level > max_kyc:
        return None
    clients = {
        o.client_id or o.account_id
        for o in [*ri.agent_txs, tx]
        if o.kyc_level is not None and o.kyc_level <= max_kyc
    }
    n = len(clients)
    k = ri.p.agent_farming_min_clients
    if n < k:
        return None
    return Fired(
        _clip(0.5 + 0.05 * (n - k), hi=0.9),
        {"clients": n, "threshold": k, "max_kyc_level": max_kyc, "window_hours": 24},
        f"agent served {n} distinct low-KYC clients within 24 h",
    )


def agent_customer_collusion(ri: RuleInput) -> Fired | None:
    """Cash deposited through one agent and withdrawn through another shortly after."""
    tx = ri.tx
    if tx.agent_id is None or tx.direction is not Direction.OUT:
        return None
    minutes = ri.p.collusion_window_minutes
    deposits = [
        m
        for m in ri.same_currency(ri.since(_span(minutes)))
        if m.direction is Direction.IN
        and m.tx.agent_id is not None
        and m.tx.agent_id != tx.agent_id
        and ri.amount >= ri.p.collusion_min_ratio * m.amount
    ]
    if not deposits:
        return None
    dep = deposits[-1]
    return Fired(
        0.8,
        {
            "deposit_agent": dep.tx.agent_id,
            "withdrawal_agent": tx.agent_id,
            "deposit": dep.amount,
            "withdrawal": ri.amount,
            "minutes_apart": round((tx.occurred_at - dep.at).total_seconds() / 60, 1),
        },
        f"deposited via agent {dep.tx.agent_id}, withdrawn via agent {tx.agent_id}",
    )


# --- loans -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LoanView:
    disbursement: Transaction
    loan: float
    outflows: list[Movement]  # after the disbursement, including the current transaction


def client_movements(txs: Sequence[Transaction]) -> list[Movement]:
    """Scorable movements of a client's other accounts (``HistoryContext.client``), each seen
    from the side of the account it is recorded on; one movement recorded twice on an account
    (same direction, counterparty, amount and time) counts once, as in :func:`movements`."""
    out: list[Movement] = []
    seen: set[tuple[Any, ...]] = set()
    for o in txs:
        if not is_scorable(o):
            continue
        m = Movement(o.direction, o.counterparty_account_id, o.amount, o.currency, o.occurred_at, o)
        if m.counterparty:
            key: tuple[Any, ...] = (
                o.account_id,
                m.direction,
                m.counterparty,
                o.amount_minor,
                m.currency,
                m.at,
            )
        else:
            key = (o.id,)
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


def _spent(m: Movement, after: datetime, own: frozenset[str]) -> bool:
    """An outflow after the disbursement that takes money away from the client: not loan
    servicing, not another disbursement, not a move to another of the client's accounts."""
    return (
        m.at > after
        and m.direction is Direction.OUT
        and m.tx.type not in _LOAN_SERVICING
        and m.tx.type is not TransactionType.LOAN_DISBURSEMENT
        and m.counterparty not in own
    )


def _loan_view(ri: RuleInput) -> _LoanView | None:
    """The latest disbursement to the same client within the watch and what left since.

    The loan account is not the account money leaves from: a disbursement is found on the
    account's own history (matched by client) or on the client's other accounts
    (``HistoryContext.client``), and the outflows since are those of every account of the
    client. Money moved between the client's own accounts has not left the client: such moves
    are not outflows (the spending from the receiving account is), and a current transaction
    that is one has no loan view. A client seen on one account only has an empty client view,
    so its loan view is the account's alone.
    """
    tx = ri.tx
    cur = ri.current
    if cur is None or cur.direction is not Direction.OUT or tx.type in _LOAN_SERVICING:
        return None
    if tx.type is TransactionType.LOAN_DISBURSEMENT:
        return None
    client = ri.ctx.client
    start = tx.occurred_at - _span(60 * ri.p.loan_watch_hours)
    unscorable, reversal = _UNSCORABLE, _REVERSAL
    disb = [
        o
        for o in ri.ctx.account
        if o.type is _DISBURSEMENT
        and not (o.status in unscorable or o.type is reversal or o.reversed)
        and o.occurred_at >= start
        and o.currency == tx.currency
        and (tx.client_id is None or o.client_id is None or o.client_id == tx.client_id)
    ]
    # The client view holds only the same client's transactions.
    disb += [
        o
        for o in client
        if o.type is _DISBURSEMENT
        and not (o.status in unscorable or o.type is reversal or o.reversed)
        and o.occurred_at >= start
        and o.currency == tx.currency
    ]
    if not disb:
        return None  # the usual case, found before building anything else
    # The client's other accounts seen in the window (the loan account among them).
    own = frozenset([o.account_id for o in client]) if client else _NO_ACCOUNTS
    if cur.counterparty in own:
        return None
    d = max(disb, key=lambda o: (o.occurred_at, o.id))
    if d.amount <= 0:
        return None
    outs = [m for m in ri.same_currency(ri.moves) if _spent(m, d.occurred_at, own)]
    if client:
        outs += [
            m for m in ri.same_currency(client_movements(client)) if _spent(m, d.occurred_at, own)
        ]
        outs.sort(key=lambda m: (m.at, m.tx.id))
    return _LoanView(d, d.amount, [*outs, cur])


def _account_of(ri: RuleInput, m: Movement) -> str:
    """The account a movement of the loan view left from."""
    if ri.tx.account_id in (m.tx.account_id, m.tx.counterparty_account_id):
        return ri.tx.account_id
    return m.tx.account_id  # client view: seen from the account it is recorded on


def _loan_values(
    ri: RuleInput, v: _LoanView, counted: Sequence[Movement], **extra: Any
) -> dict[str, Any]:
    """The loan, the account it was disbursed from and the accounts the counted money left."""
    return {
        "loan_id": v.disbursement.loan_id,
        "disbursed": v.loan,
        "disbursed_at": v.disbursement.occurred_at.isoformat(),
        "disbursement_account": v.disbursement.account_id,
        "outflow_accounts": sorted({_account_of(ri, m) for m in counted}),
        **extra,
    }


def loan_and_run(ri: RuleInput) -> Fired | None:
    """Most of a fresh loan moved out of the client's accounts during the watch."""
    v = ri.loan_view
    if v is None:
        return None
    total = sum([m.amount for m in v.outflows])
    share = total / v.loan
    if share <= ri.p.loan_run_share:
        return None
    return Fired(
        0.9,
        _loan_values(ri, v, v.outflows, moved_out=_money(total), share=round(share, 4)),
        f"{share:.0%} of the loan moved out within {ri.p.loan_watch_hours} h of disbursement",
    )


def immediate_cash_out(ri: RuleInput) -> Fired | None:
    """Most of a fresh loan withdrawn in cash within minutes of disbursement (from any of the
    client's accounts)."""
    v = ri.loan_view
    if v is None or ri.tx.type is not TransactionType.WITHDRAWAL:
        return None
    minutes = (ri.tx.occurred_at - v.disbursement.occurred_at).total_seconds() / 60
    share = ri.amount / v.loan
    if minutes > ri.p.loan_cashout_minutes or share < ri.p.loan_cashout_share:
        return None
    return Fired(
        0.95,
        _loan_values(
            ri,
            v,
            v.outflows[-1:],
            withdrawn=ri.amount,
            share=round(share, 4),
            minutes=round(minutes, 1),
        ),
        f"{share:.0%} of the loan withdrawn {minutes:.0f} minutes after disbursement",
    )


def post_disbursement_structuring(ri: RuleInput) -> Fired | None:
    """A fresh loan split into several transfers below the structuring band (from any of the
    client's accounts)."""
    v = ri.loan_view
    floor = _th(ri).structuring_floor
    if v is None or ri.amount >= floor or ri.tx.type not in _TRANSFER_TYPES:
        return None
    small = [m for m in v.outflows if m.amount < floor and m.tx.type in _TRANSFER_TYPES]
    total = sum([m.amount for m in small])
    share = total / v.loan
    if len(small) < ri.p.loan_structuring_min or share < ri.p.loan_structuring_share:
        return None
    return Fired(
        0.75,
        _loan_values(
            ri, v, small, transfers=len(small), total=_money(total), share=round(share, 4)
        ),
        f"loan split into {len(small)} transfers below {floor:,.0f} ({share:.0%} of it)",
    )


def loan_dispersal(ri: RuleInput) -> Fired | None:
    """A fresh loan spread over many counterparties (from any of the client's accounts)."""
    v = ri.loan_view
    if v is None:
        return None
    cps = _distinct(v.outflows, Direction.OUT)
    if len(cps) < ri.p.loan_dispersal_min:
        return None
    paid = [m for m in v.outflows if m.counterparty]
    return Fired(
        0.7,
        _loan_values(ri, v, paid, counterparties=len(cps), threshold=ri.p.loan_dispersal_min),
        f"loan dispersed to {len(cps)} counterparties",
    )


# Preconditions (see ``RuleSpec.when``), each implied by the first checks of the rules using it.
def _is_flow(t: Traits) -> bool:
    return t.flow


def _is_cash(t: Traits) -> bool:
    return t.type in _CASH_TYPES


def _is_out_transfer(t: Traits) -> bool:
    return t.type in _TRANSFER_TYPES and t.direction is _OUT and t.counterparty


def _is_transfer(t: Traits) -> bool:
    return t.type in _TRANSFER_TYPES and t.counterparty


def _is_in_with_counterparty(t: Traits) -> bool:
    return t.direction is _IN and t.counterparty


def _is_out_with_counterparty(t: Traits) -> bool:
    return t.direction is _OUT and t.counterparty


def _is_out(t: Traits) -> bool:
    return t.direction is _OUT


def _is_in(t: Traits) -> bool:
    return t.direction is _IN


def _is_directed_with_counterparty(t: Traits) -> bool:
    return t.counterparty and t.direction is not _NONE


def _is_agent(t: Traits) -> bool:
    return t.agent


def _is_agent_in(t: Traits) -> bool:
    return t.agent and t.direction is _IN


def _is_agent_id_out(t: Traits) -> bool:
    return t.agent_id and t.direction is _OUT


def _may_spend_loan(t: Traits) -> bool:
    # _loan_view: an outflow that is neither loan servicing nor a disbursement.
    return t.direction is _OUT and t.type not in _LOAN_SERVICING and t.type is not _DISBURSEMENT


def _may_cash_out_loan(t: Traits) -> bool:
    return _may_spend_loan(t) and t.type is TransactionType.WITHDRAWAL


def _may_split_loan(t: Traits) -> bool:
    return _may_spend_loan(t) and t.type in _TRANSFER_TYPES


# History bounds (see ``RuleSpec.min_moves``), each the early return of the rule using it.
def _rapid_moves(p: RuleParams) -> int:
    return p.rapid_count - 1


def _new_counterparty_moves(p: RuleParams) -> int:
    return p.new_counterparty_min_prior


def _pair_moves(p: RuleParams) -> int:
    return p.pair_count - 1


def _fan_moves(p: RuleParams) -> int:
    return p.fan_min - 1


def _scatter_moves(p: RuleParams) -> int:
    return p.scatter_min_senders


def _bipartite_moves(p: RuleParams) -> int:
    return 2 * p.bipartite_min - 1


def _collection_moves(p: RuleParams) -> int:
    return p.collection_min_senders - 1


def _agent_rapid_txs(p: RuleParams) -> int:
    return p.agent_rapid_count - 1


CATALOG: tuple[RuleSpec, ...] = (
    RuleSpec("large_amount", "amount", large_amount, needs_thresholds=True),
    RuleSpec("structuring", "pattern", structuring, needs_thresholds=True),
    RuleSpec(
        "cross_account_structuring", "pattern", cross_account_structuring, True, when=_is_flow
    ),
    RuleSpec("round_number", "pattern", round_number, True, enabled_by_default=False),
    RuleSpec("cash_threshold_report", "reporting", cash_threshold_report, True, when=_is_cash),
    RuleSpec("high_value_anonymous_payment", "merchant", high_value_anonymous_payment, True),
    RuleSpec("rapid_transactions", "velocity", rapid_transactions, min_moves=_rapid_moves),
    RuleSpec("high_velocity_volume", "velocity", high_velocity_volume, True),
    RuleSpec("unusual_hours", "timing", unusual_hours),
    RuleSpec(
        "new_counterparty",
        "transfer",
        new_counterparty,
        when=_is_out_transfer,
        min_moves=_new_counterparty_moves,
    ),
    RuleSpec(
        "rapid_pair_transfers",
        "transfer",
        rapid_pair_transfers,
        when=_is_transfer,
        min_moves=_pair_moves,
    ),
    RuleSpec("circular_transfer", "transfer", circular_transfer, when=_is_flow),
    RuleSpec("stacking", "network", stacking, when=_is_flow),
    RuleSpec("fan_in", "network", fan_in, when=_is_in_with_counterparty, min_moves=_fan_moves),
    RuleSpec("fan_out", "network", fan_out, when=_is_out_with_counterparty, min_moves=_fan_moves),
    RuleSpec("scatter_gather", "network", scatter_gather, when=_is_out, min_moves=_scatter_moves),
    RuleSpec(
        "bipartite_layering",
        "network",
        bipartite_layering,
        when=_is_directed_with_counterparty,
        min_moves=_bipartite_moves,
    ),
    RuleSpec(
        "merchant_collection_account",
        "merchant",
        merchant_collection_account,
        True,
        when=_is_in,
        min_moves=_collection_moves,
    ),
    RuleSpec(
        "agent_rapid_transactions",
        "agent",
        agent_rapid_transactions,
        when=_is_agent,
        min_agent_txs=_agent_rapid_txs,
    ),
    RuleSpec("agent_float_volume", "agent", agent_float_volume, True, when=_is_agent),
    RuleSpec("agent_float_anomaly", "agent", agent_float_anomaly, True, when=_is_agent),
    RuleSpec("agent_structuring", "agent", agent_structuring, True, when=_is_agent_in),
    RuleSpec("agent_account_farming", "agent", agent_account_farming, when=_is_agent),
    RuleSpec("agent_customer_collusion", "agent", agent_customer_collusion, when=_is_agent_id_out),
    RuleSpec("loan_and_run", "loan", loan_and_run, when=_may_spend_loan, needs_disbursement=True),
    RuleSpec(
        "immediate_cash_out",
        "loan",
        immediate_cash_out,
        when=_may_cash_out_loan,
        needs_disbursement=True,
    ),
    RuleSpec(
        "post_disbursement_structuring",
        "loan",
        post_disbursement_structuring,
        True,
        when=_may_split_loan,
        needs_disbursement=True,
    ),
    RuleSpec(
        "loan_dispersal", "loan", loan_dispersal, when=_may_spend_loan, needs_disbursement=True
    ),
)

RULES: dict[str, RuleSpec] = {spec.rule_id: spec for spec in CATALOG}
RULE_IDS: frozenset[str] = frozenset(RULES)
