"""An account's history summary kept up to date from one transaction to the next.

:func:`aml.features.summarise` reads the transaction's whole 7-day history (counts, sums and
maxima over 1 h, 24 h and 7 days, distinct counterparties, IPs, devices, countries), once per
transaction: a busy account's cost grows with its activity (an agent's float with 1,000
movements in its week: 225 µs of features per transaction). Serving scores an account's
transactions one after another, and each sees the previous one's history, the same objects in
the same order, with the transactions since appended and the oldest few dropped as the window
moves on (:func:`aml.history.continuation`). :class:`SummaryCache` keeps, per account, each
history record decoded once and running aggregates over the three windows: a new history costs
what was appended or dropped, and a transaction the windows' moves (records that crossed the
hour, the day or the week since the previous one) and three bisections.

The answer is always exactly ``summarise(tx, history)``: money is summed in minor units (ints),
so adding and taking away give the same totals as one pass; maxima come from a stack of the
running maxima; distinct values are counted, not kept as sets. Where the incremental answer
could differ, the pass is made instead:

* a counterparty-side record that may mirror one of the account's own (same other account,
  amount, currency and direction; ``summarise`` folds it into one within a tolerance, in history
  order): as long as any key is on both sides, or the transaction's own key is among the
  counterparty-side records;
* a transaction in another currency than the one the account's sums are kept in;
* a history with a record after the transaction (not a point-in-time history) or out of time
  order.

Not thread-safe: one per feature computer (a rule replica, an in-process scoring core), which
computes one transaction at a time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from aml.domain import Direction, Transaction, TransactionType
from aml.features import (
    _DAY,
    _FLIP,
    _HOUR,
    _LOAN,
    _WEEK,
    AccountSummary,
    float_unit,
    in_major_units,
    summarise,
)
from aml.features import _NOT_MONEY_STATUSES as _NOT_MONEY
from aml.history import continuation

# The windows and readings are summarise's own (imported, never restated).
_REVERSAL = TransactionType.REVERSAL
_IN, _OUT = Direction.IN, Direction.OUT


class _Row(NamedTuple):
    """A record as the account sees it (``summarise``'s reading of it)."""

    own: bool  # on the account itself (else: the account is its counterparty)
    direction: Direction  # as the account sees it
    other: str | None  # the other account
    minor: int | None  # amount, when in the currency the sums are kept in
    ip: str | None  # own records only
    device: str | None
    country: str | None
    type: TransactionType
    key: tuple[Any, ...] | None  # mirror key (other account, amount, currency, direction)


# ``_Row(*fields)`` without the named tuple's Python-level ``__new__``.
_new_row: Callable[[tuple[Any, ...]], _Row] = partial(tuple.__new__, _Row)  # type: ignore[assignment]


def _inc(counts: dict[Any, int], key: Any) -> None:
    counts[key] = counts.get(key, 0) + 1


def _dec(counts: dict[Any, int], key: Any) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]


class _Running:
    """One account's history (as last followed), its decoded rows and the running aggregates
    of the 1 h, 24 h and 7 d windows ending at the last transaction answered.

    Positions are absolute (``base`` is the number of ``txs[0]``), so that dropping records at
    the front moves nothing kept by number (window starts, the maxima stack, loan records).
    """

    __slots__ = (
        "account",
        "ats",
        "base",
        "collisions",
        "cp_keys",
        "currency",
        "last_row",
        "loans",
        "own_keys",
        "rows",
        "s1",
        "s7",
        "s24",
        "top_minor",
        "tops",
        "txs",
        "unit",
        "used",
        "w1",
        "w7",
        "w7_sets",
        "w24",
        "w24_sets",
        "w24_types",
    )

    def __init__(self, account: str, currency: str) -> None:
        self.account = account
        self.currency = currency
        self.unit = float_unit(currency)
        self.txs: list[Transaction] = []
        self.rows: list[_Row | None] = []
        self.ats: list[datetime] = []
        self.base = 0
        # Window starts (absolute positions); every window runs to the end of the history.
        self.s7 = self.s24 = self.s1 = 0
        # [count, amounts counted, sum] (7 d); [count, amounts, sum, inflow, outflow] (24 h);
        # [count, sum] (1 h). Sums in minor units.
        self.w7 = [0, 0, 0]
        self.w24 = [0, 0, 0, 0, 0]
        self.w1 = [0, 0]
        # 7 d: counterparties, senders, receivers, IPs, devices, countries; 24 h:
        # counterparties, IPs. Value -> records.
        self.w7_sets: tuple[dict[str, int], ...] = ({}, {}, {}, {}, {}, {})
        self.w24_sets: tuple[dict[str, int], ...] = ({}, {})
        self.w24_types: dict[TransactionType, int] = {}
        # Positions of records with an amount, each above every one after it: the maximum of
        # a window is the first one at or after its start.
        self.tops: list[int] = []
        self.top_minor: list[int] = []  # their amounts
        self.loans: list[int] = []  # positions of loan disbursements
        self.last_row = -1  # position of the last counted record (-1: none)
        # Mirror keys of the own and the counterparty-side records, and how many keys are on
        # both sides (then ``summarise`` may fold records: the pass is made instead).
        self.own_keys: dict[tuple[Any, ...], int] = {}
        self.cp_keys: dict[tuple[Any, ...], int] = {}
        self.collisions = 0
        self.used = 0  # the cache's call count when last used

    @property
    def size(self) -> int:
        return len(self.txs)

    # -- following the history -------------------------------------------------------------

    def follow(self, history: Sequence[Transaction]) -> bool:
        """Make ``history`` the one kept: from the previous one when it continues it, else
        False (nothing usable is left: the caller starts a new one)."""
        prev = self.txs
        if prev:
            run = continuation(prev, history)
            if run is None:
                return False
            dropped, same = run
            if dropped:
                self._drop_front(dropped)
            if same < len(self.txs):
                self._take_back(same)
            added = history[same:]
        else:
            added = history
        return self._append(added)

    def _row(self, o: Transaction) -> _Row | None:
        """``o`` as ``summarise`` reads it for this account (None: not counted)."""
        if o.status in _NOT_MONEY or o.type is _REVERSAL:
            return None
        acct = self.account
        if o.account_id == acct:
            direction = o.direction
            other = o.counterparty_account_id
            if other == acct:
                other = None
            key = (other, o.amount_minor, o.currency, direction) if other else None
            return _new_row(
                (
                    True,
                    direction,
                    other,
                    o.amount_minor if o.currency == self.currency else None,
                    o.ip_address,
                    o.device_id,
                    o.country_code,
                    o.type,
                    key,
                )
            )
        if o.counterparty_account_id == acct:
            direction = _FLIP[o.direction]
            other = o.account_id
            return _new_row(
                (
                    False,
                    direction,
                    other,
                    o.amount_minor if o.currency == self.currency else None,
                    None,
                    None,
                    None,
                    o.type,
                    (other, o.amount_minor, o.currency, direction),
                )
            )
        return None

    def _append(self, added: Sequence[Transaction]) -> bool:
        txs, rows, ats = self.txs, self.rows, self.ats
        end = self.base + len(txs)
        last = ats[-1] if ats else None
        for o in added:
            at = o.occurred_at
            if last is not None and at < last:
                return False  # out of time order: not a history ``summarise`` windows by bisection
            last = at
            row = self._row(o)
            txs.append(o)
            rows.append(row)
            ats.append(at)
            if row is not None:
                self._keyed(row, 1)
                # A new record is after every window's start: in all three.
                self._in7(row, 1)
                self._in24(row, 1)
                self._in1(row, 1)
                minor = row.minor
                if minor is not None:
                    tops, top_minor = self.tops, self.top_minor
                    while top_minor and top_minor[-1] <= minor:
                        tops.pop()
                        top_minor.pop()
                    tops.append(end)
                    top_minor.append(minor)
                if row.type is _LOAN:
                    self.loans.append(end)
                self.last_row = end
            end += 1
        return True

    def _drop_front(self, dropped: int) -> None:
        """Forget the first ``dropped`` records (out of the history's window now)."""
        cut = self.base + dropped
        self._move(max(self.s7, cut), max(self.s24, cut), max(self.s1, cut))
        rows = self.rows
        for row in rows[:dropped]:
            if row is not None:
                self._keyed(row, -1)
        del self.txs[:dropped], rows[:dropped], self.ats[:dropped]
        self.base = cut
        k = bisect_left(self.tops, cut)
        del self.tops[:k], self.top_minor[:k]
        del self.loans[: bisect_left(self.loans, cut)]

    def _take_back(self, same: int) -> None:
        """Forget the records after the first ``same`` (a late arrival inserted among them, or
        a history answered before them): they are appended again as the new history has them."""
        base, rows = self.base, self.rows
        cut = base + same
        end = base + len(rows)
        for pos in range(cut, end):
            row = rows[pos - base]
            if row is None:
                continue
            self._keyed(row, -1)
            if pos >= self.s7:
                self._in7(row, -1)
            if pos >= self.s24:
                self._in24(row, -1)
            if pos >= self.s1:
                self._in1(row, -1)
        self.s7, self.s24, self.s1 = min(self.s7, cut), min(self.s24, cut), min(self.s1, cut)
        del self.txs[same:], rows[same:], self.ats[same:]
        del self.loans[bisect_left(self.loans, cut) :]
        # The maxima after the cut hid earlier ones: built again over what is left.
        tops: list[int] = []
        top_minor: list[int] = []
        for pos, row in enumerate(rows, base):
            minor = row.minor if row is not None else None
            if minor is not None:
                while top_minor and top_minor[-1] <= minor:
                    tops.pop()
                    top_minor.pop()
                tops.append(pos)
                top_minor.append(minor)
        self.tops, self.top_minor = tops, top_minor
        last = -1
        for pos in range(cut - 1, base - 1, -1):
            if rows[pos - base] is not None:
                last = pos
                break
        self.last_row = last

    # -- the windows ---------------------------------------------------------------------

    def _keyed(self, row: _Row, sign: int) -> None:
        key = row.key
        if key is None:
            return
        mine, theirs = (self.own_keys, self.cp_keys) if row.own else (self.cp_keys, self.own_keys)
        if sign > 0:
            _inc(mine, key)
            if mine[key] == 1 and key in theirs:
                self.collisions += 1
        else:
            _dec(mine, key)
            if key not in mine and key in theirs:
                self.collisions -= 1

    def _in7(self, row: _Row, sign: int) -> None:
        w = self.w7
        w[0] += sign
        minor = row.minor
        if minor is not None:
            w[1] += sign
            w[2] += sign * minor
        cps, senders, receivers, ips, devices, countries = self.w7_sets
        step = _inc if sign > 0 else _dec
        other = row.other
        if other:
            step(cps, other)
            direction = row.direction
            if direction is _IN:
                step(senders, other)
            elif direction is _OUT:
                step(receivers, other)
        if row.own:
            if row.ip:
                step(ips, row.ip)
            if row.device:
                step(devices, row.device)
            if row.country:
                step(countries, row.country)

    def _in24(self, row: _Row, sign: int) -> None:
        w = self.w24
        w[0] += sign
        step = _inc if sign > 0 else _dec
        step(self.w24_types, row.type)
        cps, ips = self.w24_sets
        other = row.other
        if other:
            step(cps, other)
        if row.own and row.ip:
            step(ips, row.ip)
        minor = row.minor
        if minor is not None:
            w[1] += sign
            w[2] += sign * minor
            direction = row.direction
            if direction is _IN:
                w[3] += sign * minor
            elif direction is _OUT:
                w[4] += sign * minor

    def _in1(self, row: _Row, sign: int) -> None:
        w = self.w1
        w[0] += sign
        minor = row.minor
        if minor is not None:
            w[1] += sign * minor

    def _move(self, s7: int, s24: int, s1: int) -> None:
        """Move the windows' starts (forward: the records passed leave; back: they return)."""
        self.s7 = self._shift(self.s7, s7, self._in7)
        self.s24 = self._shift(self.s24, s24, self._in24)
        self.s1 = self._shift(self.s1, s1, self._in1)

    def _shift(self, start: int, to: int, apply: Any) -> int:
        rows, base = self.rows, self.base
        if to > start:
            for row in rows[start - base : to - base]:
                if row is not None:
                    apply(row, -1)
        elif to < start:
            for row in rows[to - base : start - base]:
                if row is not None:
                    apply(row, 1)
        return to

    # -- answering -------------------------------------------------------------------------

    def answer(self, tx: Transaction) -> AccountSummary | None:
        """``summarise(tx, history)`` for the history followed last, or None where the pass
        must be made instead (see the module notes)."""
        ats = self.ats
        t = tx.occurred_at
        if tx.currency != self.currency or self.collisions or (ats and ats[-1] > t):
            return None
        other = tx.counterparty_account_id
        if (
            other
            and other != self.account
            and (other, tx.amount_minor, tx.currency, tx.direction) in self.cp_keys
            and tx.status not in _NOT_MONEY
            and tx.type is not _REVERSAL
        ):
            return None
        base = self.base
        i7 = bisect_left(ats, t - _WEEK)
        i24 = bisect_left(ats, t - _DAY, i7)
        i1 = bisect_left(ats, t - _HOUR, i24)
        self._move(base + i7, base + i24, base + i1)
        (count_7d, n_7d, total_7d), w24, (count_1h, total_1h) = self.w7, self.w24, self.w1
        count_24h, n_24h, total_24h, inflow, outflow = w24
        tops, top_minor = self.tops, self.top_minor
        max_7d = max_24h = 0
        k = bisect_left(tops, base + i7)
        if k < len(tops):
            max_7d = max(top_minor[k], 0)
            k = bisect_left(tops, base + i24, k)
            if k < len(tops):
                max_24h = max(top_minor[k], 0)
        last_at = ats[self.last_row - base] if self.last_row >= base + i7 else None
        loans = self.loans
        loan_at = ats[loans[-1] - base] if loans and loans[-1] >= base + i7 else None
        cps_7d, senders, receivers, ips_7d, devices_7d, countries = self.w7_sets
        cps_24h, ips_24h = self.w24_sets
        return in_major_units(
            (count_1h, count_24h, count_7d, total_1h, total_24h, total_7d, n_24h, n_7d),
            (max_24h, max_7d, self.w24_types.get(tx.type, 0), inflow, outflow, last_at, loan_at),
            (cps_24h, cps_7d, senders, receivers, ips_24h, ips_7d, devices_7d, countries),
            self.unit,
        )


class SummaryCache:
    """:func:`aml.features.summarise` of each account's history, kept from the account's
    previous call (see the module notes).

    Only histories of ``min_items`` or more go through it (below that one pass costs less than
    the bookkeeping), for at most ``max_accounts`` accounts and ``max_items`` records in all.
    Keeping a history costs a few passes the first time, so a full cache does not make room for
    a newcomer by evicting a history in use: only one idle for ``idle_calls`` calls goes (least
    recently used first), else the newcomer is summarised by a pass. With more busy accounts
    than fit, the ones kept stay kept instead of all of them being built again in turn. The
    collections in an answer (distinct counterparties, IPs, devices, countries) are the cache's
    own counts, valid until its next call: read them at once.
    """

    def __init__(
        self,
        *,
        min_items: int = 32,
        max_accounts: int = 8192,
        max_items: int = 200_000,
        idle_calls: int = 100_000,
    ) -> None:
        self.min_items = min_items
        self.max_accounts = max_accounts
        self.max_items = max_items
        self.idle_calls = idle_calls
        self.items = 0  # records held, over all accounts
        self.calls = 0
        # Observability and tests: answers from a kept history moved on; histories kept but
        # answered by a pass (mirrors, another currency); newcomers left out of a full cache.
        self.extended = 0
        self.passes = 0
        self.declined = 0
        self._last: OrderedDict[tuple[str, str], _Running] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def clear(self) -> None:
        """Forget every history (the next call of each account starts anew)."""
        self._last.clear()
        self.items = 0

    def summarise(self, tx: Transaction, history: Sequence[Transaction]) -> AccountSummary:
        """Exactly ``summarise(tx, history)``, for ``history`` the point-in-time history of
        ``tx``'s account."""
        self.calls += 1
        if len(history) < self.min_items:
            return summarise(tx, history)
        slot = (tx.tenant, tx.account_id)
        state = self._last.pop(slot, None)
        if state is not None:
            self.items -= state.size
            if state.follow(history):
                self.extended += 1
            else:
                state = None
        if state is None:
            if not self._room_for(len(history)):
                self.declined += 1
                return summarise(tx, history)
            state = _Running(tx.account_id, tx.currency)
            if not state.follow(history):
                return summarise(tx, history)
        state.used = self.calls
        answer = state.answer(tx)
        self._keep(slot, state)
        if answer is None:
            self.passes += 1
            return summarise(tx, history)
        return answer

    def _room_for(self, size: int) -> bool:
        """Whether a new history of ``size`` records may be kept, after evicting histories idle
        for ``idle_calls`` calls or more (least recently used first), never one in use."""
        last = self._last
        while len(last) >= self.max_accounts or self.items + size > self.max_items:
            if not last:
                return size <= self.max_items
            slot, oldest = next(iter(last.items()))
            if self.calls - oldest.used < self.idle_calls:
                return False
            del last[slot]
            self.items -= oldest.size
        return True

    def _keep(self, slot: tuple[str, str], state: _Running) -> None:
        self._last[slot] = state
        self.items += state.size
        # Kept histories grow: past the bounds, the least recently used go (the one just kept
        # last of all).
        while self._last and (len(self._last) > self.max_accounts or self.items > self.max_items):
            _, old = self._last.popitem(last=False)
            self.items -= old.size
