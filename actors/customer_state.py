"""Per-customer sliding windows and the point-in-time context built from them (no Ray here).

A transaction is *observed* by up to four keys, each of which may live on a different shard:
the owner account, the counterparty account, the agent and the client. Each key keeps an exact,
time-sorted window of the transactions that touch it, so the four parts of a
:class:`~aml.history.HistoryContext` come from four windows and are merged by the caller
(:func:`merge_views`). The client window holds every transaction recorded for the client; the
shard answers only the part of it on the client's *other* accounts, so a single-account client
sends back nothing more than before. Every shard is called once per batch with all of its roles
at once (:func:`route`), never once per transaction.

The context equals :func:`aml.history.build_context` over the same transactions (parity test):
strictly before ``(occurred_at, id)``, never the transaction itself, same look-backs.

Memory is bounded twice: entries older than the longest look-back (plus a slack for late events)
relative to the newest time a shard has seen are evicted, and each shard keeps at most
``max_keys`` windows (least recently used first out). A window that was never loaded, was evicted,
or does not reach back far enough for a late event is reported by :meth:`ShardState.missing` and
rebuilt from the store by the actor before the batch is answered.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Protocol

from aml.domain import Direction, PackedList, Transaction, fast_init, fast_pickle
from aml.graph import EdgeIndex, GraphSearch
from aml.history import (
    AGENT_LOOKBACK,
    COUNTERPARTY_LOOKBACK,
    MAX_LOOKBACK,
    HistoryContext,
    TransferEdge,
)
from aml.rules import RuleEngine, default_rule_config

if TYPE_CHECKING:
    from actors.ordering import BatchOrder

# How late an event may arrive (relative to the newest one a shard has seen) and still find its
# full look-back in memory; later ones trigger a rebuild of the window from the store.
DEFAULT_LATE_SLACK = timedelta(days=1)
DEFAULT_MAX_KEYS = 200_000

_Key = tuple[datetime, str]


class Role(StrEnum):
    """Why a shard receives a transaction."""

    ACCOUNT = "account"  # owner account: the shard answers the account view
    COUNTERPARTY = "counterparty"  # counterparty account: answers the counterparty view
    AGENT = "agent"  # agent: answers the agent view
    CLIENT = "client"  # owner's client: answers the view of the client's other accounts


@fast_pickle
@dataclass(frozen=True, slots=True)
class WindowKey:
    """Identity of one window: ``kind`` is ``"account"``, ``"agent"`` or ``"client"``."""

    kind: str
    tenant: str
    name: str

    @property
    def shard_token(self) -> str:
        return f"{self.kind}\x1f{self.tenant}\x1f{self.name}"


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """Aggregates over one window (what a dashboard or a quick rule reads without features)."""

    count: int
    total: float  # major units
    max_amount: float
    distinct_counterparties: int
    distinct_devices: int
    distinct_ips: int


@dataclass(frozen=True, slots=True)
class RebuildRequest:
    """A window the shard needs from the store before it can answer: all movements touching
    ``key`` since ``since``."""

    key: WindowKey
    since: datetime


# crc32 of each window key's shard token, by (kind, tenant, name): a batch's keys come back
# batch after batch (an account, its agent, its client), and the token's formatting, encoding
# and hashing cost more than one lookup. Cleared when it reaches _TOKEN_CACHE_MAX keys.
_TOKEN_CRC: dict[tuple[str, str, str], int] = {}
_TOKEN_CACHE_MAX = 500_000


def _token_crc(kind: str, tenant: str, name: str) -> int:
    """``crc32`` of the window key's shard token (``WindowKey.shard_token``), cached."""
    ident = (kind, tenant, name)
    crc = _TOKEN_CRC.get(ident)
    if crc is None:
        if len(_TOKEN_CRC) >= _TOKEN_CACHE_MAX:
            _TOKEN_CRC.clear()
        crc = _TOKEN_CRC[ident] = zlib.crc32(f"{kind}\x1f{tenant}\x1f{name}".encode())
    return crc


def shard_of(key: WindowKey, n_shards: int) -> int:
    """Stable shard index for a window key (the same in every process, unlike ``hash``)."""
    return _token_crc(key.kind, key.tenant, key.name) % n_shards


# Several keys and items are built for every transaction: the fast constructors build the same
# objects as the classes.
_new_key = fast_init(WindowKey)


def window_names(tx: Transaction) -> list[tuple[Role, str, str]]:
    """``(role, kind, name)`` of each window a transaction belongs to, in a fixed order (the
    window's tenant is the transaction's): its account, its counterparty account, its agent,
    its client."""
    account = tx.account_id
    out = [(_ACCOUNT, "account", account)]
    cp = tx.counterparty_account_id
    if cp and cp != account:
        out.append((_COUNTERPARTY, "account", cp))
    agent = tx.agent_id
    if agent:
        out.append((_AGENT, "agent", agent))
    client = tx.client_id
    if client:
        out.append((_CLIENT, "client", client))
    return out


# Read for every transaction: module names, not enum attribute look-ups.
_ACCOUNT, _COUNTERPARTY, _AGENT, _CLIENT = Role.ACCOUNT, Role.COUNTERPARTY, Role.AGENT, Role.CLIENT


def keys_for(tx: Transaction) -> list[tuple[Role, WindowKey]]:
    """The windows a transaction belongs to, with the role each answers for it."""
    tenant = tx.tenant
    return [
        (role, _new_key(kind=kind, tenant=tenant, name=name))
        for role, kind, name in window_names(tx)
    ]


@fast_pickle
@dataclass(frozen=True, slots=True)
class ShardItem:
    """One (transaction, role) pair sent to a shard; ``index`` is the position in the batch."""

    index: int
    role: Role
    key: WindowKey
    tx: Transaction


_new_item = fast_init(ShardItem)


def route(
    batch: Sequence[Transaction], n_shards: int, only: int | None = None
) -> dict[int, list[ShardItem]]:
    """Split a batch into one list of items per shard (one call per shard per batch);
    ``only``: that shard's items alone.

    The items are those of :func:`keys_for`, in its order, each on the shard :func:`shard_of`
    gives its key; keys and items are built only for the shard asked (every shard routes every
    batch it is sent).
    """
    plan: dict[int, list[ShardItem]] = {}
    crcs = _TOKEN_CRC
    new_item = _new_item
    new_key = _new_key
    for i, tx in enumerate(batch):
        tenant = tx.tenant
        for role, kind, name in window_names(tx):
            crc = crcs.get((kind, tenant, name))
            if crc is None:
                crc = _token_crc(kind, tenant, name)
            shard = crc % n_shards
            if only is not None and shard != only:
                continue
            items = plan.get(shard)
            if items is None:
                # Packed: each list is one shard actor's argument (see PackedList).
                items = plan[shard] = PackedList()
            key = new_key(kind=kind, tenant=tenant, name=name)
            items.append(new_item(index=i, role=role, key=key, tx=tx))
    return plan


def merge_views(
    batch: Sequence[Transaction],
    answers: Iterable[tuple[Sequence[ShardItem], Sequence[tuple[Transaction, ...]]]],
    edges: Sequence[Sequence[TransferEdge]] | None = None,
) -> list[HistoryContext]:
    """Assemble one context per transaction from the shards' per-role views."""
    n = len(batch)
    empty: tuple[Transaction, ...] = ()
    acct = [empty] * n
    cp = [empty] * n
    agent = [empty] * n
    client = [empty] * n
    targets = {Role.ACCOUNT: acct, Role.COUNTERPARTY: cp, Role.AGENT: agent, Role.CLIENT: client}
    for items, views in answers:
        for item, view in zip(items, views, strict=True):
            targets[item.role][item.index] = view
    return _contexts(batch, acct, cp, agent, client, edges)


def _contexts(
    batch: Sequence[Transaction],
    acct: Sequence[tuple[Transaction, ...]],
    cp: Sequence[tuple[Transaction, ...]],
    agent: Sequence[tuple[Transaction, ...]],
    client: Sequence[tuple[Transaction, ...]],
    edges: Sequence[Sequence[TransferEdge]] | None,
) -> list[HistoryContext]:
    """One context per transaction from its views by role."""
    out = []
    new = _new_context
    for i, (tx, a, c, g, k) in enumerate(zip(batch, acct, cp, agent, client, strict=True)):
        # A self-transfer has no separate counterparty item: its counterparty view is its own.
        if tx.counterparty_account_id == tx.account_id:
            c = a
        out.append(
            new(
                account=list(a) if a else [],
                counterparty=list(c) if c else [],
                agent=list(g) if g else [],
                edges=tuple(edges[i]) if edges is not None else (),
                client=list(k) if k else [],
            )
        )
    return out


_new_context = fast_init(HistoryContext)


_ROLE_INDEX = {role: i for i, role in enumerate(Role)}


def _entries(items: Sequence[ShardItem]) -> list[tuple[Role, str, str, str, Transaction]]:
    """``(role, kind, tenant, name, tx)`` per item: what :meth:`ShardState.observe_local`
    takes."""
    return [(i.role, i.key.kind, i.key.tenant, i.key.name, i.tx) for i in items]


class CustomerState:
    """Exact sliding window of the transactions touching one account (or of one agent or
    client).

    Entries are kept sorted by ``(occurred_at, id)`` with bisect inserts, so out-of-order
    arrivals land in the right place; a transaction seen twice is kept once.
    """

    __slots__ = ("_ids", "_keys", "_txs", "complete_since", "key")

    def __init__(self, key: WindowKey, *, complete_since: datetime | None) -> None:
        """Args:
        key: whose window this is.
        complete_since: every transaction at or after this time is in the window
            (``None``: complete since the beginning, i.e. nothing is missing).
        """
        self.key = key
        self.complete_since = complete_since
        self._keys: list[_Key] = []
        self._txs: list[Transaction] = []
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._txs)

    def add(self, tx: Transaction) -> bool:
        """Insert ``tx`` in time order. Returns False when it was already there."""
        tx_id = tx.id
        ids = self._ids
        if tx_id in ids:
            return False
        k = (tx.occurred_at, tx_id)
        keys = self._keys
        if not keys or k > keys[-1]:
            # Arrivals are mostly in time order: no search, no shifting.
            keys.append(k)
            self._txs.append(tx)
        else:
            pos = bisect_left(keys, k)
            keys.insert(pos, k)
            self._txs.insert(pos, tx)
        ids.add(tx_id)
        return True

    def covers(self, start: datetime) -> bool:
        """True when the window holds everything from ``start`` on."""
        return self.complete_since is None or self.complete_since <= start

    def before(self, tx: Transaction, span: timedelta) -> tuple[Transaction, ...]:
        """Entries with ``tx.occurred_at - span <= occurred_at`` strictly before ``tx``."""
        lo = bisect_left(self._keys, (tx.occurred_at - span, ""))
        hi = bisect_left(self._keys, (tx.occurred_at, tx.id))
        return tuple(self._txs[lo:hi])

    def other_accounts_before(self, tx: Transaction, span: timedelta) -> tuple[Transaction, ...]:
        """Like :meth:`before`, without the entries touching ``tx.account_id`` (the client view:
        what the account window does not already hold)."""
        lo = bisect_left(self._keys, (tx.occurred_at - span, ""))
        hi = bisect_left(self._keys, (tx.occurred_at, tx.id))
        acct = tx.account_id
        return tuple(
            o
            for o in self._txs[lo:hi]
            if o.account_id != acct and o.counterparty_account_id != acct
        )

    def evict(self, older_than: datetime) -> int:
        """Drop entries before ``older_than``; the window is then complete only from there."""
        keys = self._keys
        # Usually nothing is old enough yet: the oldest entry says so without a search.
        cut = bisect_left(keys, (older_than, "")) if keys and keys[0][0] < older_than else 0
        if cut:
            for t in self._txs[:cut]:
                self._ids.discard(t.id)
            del self._keys[:cut]
            del self._txs[:cut]
        if self.complete_since is None or self.complete_since < older_than:
            self.complete_since = older_than
        return cut

    def summary(self, end: datetime, span: timedelta = MAX_LOOKBACK) -> WindowSummary:
        """Counts, sums, max and distinct counterparties/devices/IPs in ``[end - span, end)``."""
        lo = bisect_left(self._keys, (end - span, ""))
        hi = bisect_left(self._keys, (end, ""))
        items = self._txs[lo:hi]
        amounts = [t.amount for t in items]
        return WindowSummary(
            count=len(items),
            total=float(sum(amounts)),
            max_amount=max(amounts, default=0.0),
            distinct_counterparties=len(
                {t.counterparty_account_id for t in items if t.counterparty_account_id}
            ),
            distinct_devices=len({t.device_id for t in items if t.device_id}),
            distinct_ips=len({t.ip_address for t in items if t.ip_address}),
        )


class ClientWindow(CustomerState):
    """Window of every transaction recorded for one client, on any of its accounts.

    It also counts its entries per owner account: most clients are seen on one account only,
    and their client view (nothing beyond the account window) is then answered without a scan,
    however busy the account.
    """

    __slots__ = ("_owners",)

    def __init__(self, key: WindowKey, *, complete_since: datetime | None) -> None:
        super().__init__(key, complete_since=complete_since)
        self._owners: dict[str, int] = {}

    def add(self, tx: Transaction) -> bool:
        if not CustomerState.add(self, tx):  # not super(): one lookup less per call
            return False
        owners = self._owners
        account = tx.account_id
        owners[account] = owners.get(account, 0) + 1
        return True

    def evict(self, older_than: datetime) -> int:
        keys = self._keys
        if not keys or keys[0][0] >= older_than:
            return super().evict(older_than)  # nothing to cut
        cut = bisect_left(keys, (older_than, ""))
        owners = self._owners
        for t in self._txs[:cut]:
            left = owners[t.account_id] - 1
            if left:
                owners[t.account_id] = left
            else:
                del owners[t.account_id]
        return super().evict(older_than)

    def other_accounts_before(self, tx: Transaction, span: timedelta) -> tuple[Transaction, ...]:
        owners = self._owners
        if len(owners) == 1 and tx.account_id in owners:
            return ()
        return super().other_accounts_before(tx, span)


def _new_window(key: WindowKey, complete_since: datetime | None) -> CustomerState:
    if key.kind == "client":
        return ClientWindow(key, complete_since=complete_since)
    return CustomerState(key, complete_since=complete_since)


_SPAN = {
    Role.ACCOUNT: MAX_LOOKBACK,
    Role.COUNTERPARTY: COUNTERPARTY_LOOKBACK,
    Role.AGENT: AGENT_LOOKBACK,
    Role.CLIENT: MAX_LOOKBACK,
}
# Window kinds rebuilt from the store when missing (agent windows are memory-only).
_REBUILT = frozenset({"account", "client"})


class ShardState:
    """All windows of one shard, LRU-bounded, with eviction by time.

    Agent windows are kept in memory only: the store has no index by agent, and the agent
    look-back is 24 hours, so after a restart the agent view refills within a day (documented
    trade-off: a query per agent per batch would cost more than the view is worth). Account
    windows (owner and counterparty views) and client windows are rebuilt exactly from the
    store (by account, and by client id).
    """

    def __init__(
        self,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        late_slack: timedelta = DEFAULT_LATE_SLACK,
        cold_start_complete: bool = False,
    ) -> None:
        """Args:
        max_keys: most windows kept in memory (least recently used are dropped first).
        late_slack: how far behind the newest event a late event may be and still be
            answered from memory.
        cold_start_complete: True when there is no store behind the shard, so an unknown
            window is empty rather than missing.
        """
        self.max_keys = max_keys
        self.retention = MAX_LOOKBACK + late_slack
        self.cold_start_complete = cold_start_complete
        self.windows: dict[WindowKey, CustomerState] = {}
        # The same windows by ``(kind, tenant, name)``, least recently used first. A WindowKey
        # hashes and compares in Python; a tuple of strings in C, and every item of a batch
        # looks its window up and marks it used.
        self._lru: OrderedDict[tuple[str, str, str], CustomerState] = OrderedDict()
        self.newest: datetime | None = None
        self.rebuilds = 0

    def _lookback_start(self, item: ShardItem) -> datetime:
        return item.tx.occurred_at - _SPAN[item.role]

    def missing(self, items: Sequence[ShardItem]) -> list[RebuildRequest]:
        """Account and client windows that must be (re)loaded from the store before
        :meth:`answer`."""
        if self.cold_start_complete:
            return []
        need: dict[WindowKey, datetime] = {}
        for item in items:
            if item.key.kind not in _REBUILT:
                continue
            start = self._lookback_start(item)
            win = self.windows.get(item.key)
            if win is not None and win.covers(start):
                continue
            if item.key not in need or start < need[item.key]:
                need[item.key] = start
        return [RebuildRequest(k, since) for k, since in need.items()]

    def load(self, request: RebuildRequest, txs: Iterable[Transaction]) -> None:
        """Install a window rebuilt from the store (merging what is already in memory)."""
        key = request.key
        token = (key.kind, key.tenant, key.name)
        old = self.windows.pop(key, None)
        self._lru.pop(token, None)
        win = _new_window(key, request.since)
        for t in txs:
            win.add(t)
        if old is not None:
            for t in old._txs:
                win.add(t)
        self.windows[key] = win
        self._lru[token] = win
        self.rebuilds += 1

    def answer(self, items: Sequence[ShardItem]) -> list[tuple[Transaction, ...]]:
        """Observe every item, then return each item's view (in the order of ``items``).

        Observing first means transactions of the same batch see each other in time order,
        exactly as :func:`aml.history.build_context` over the whole stream would.
        """
        return self._observe(_entries(items))[0]

    def answer_keyed(
        self, items: Sequence[ShardItem]
    ) -> tuple[list[tuple[Transaction, ...]], list[int]]:
        """:meth:`answer`, and each view's view key (see :meth:`observe_keyed`)."""
        return self.observe_keyed(_entries(items))

    def observe_local(
        self, entries: Sequence[tuple[Role, str, str, str, Transaction]]
    ) -> list[tuple[Transaction, ...]]:
        """:meth:`answer` from ``(role, kind, tenant, name, tx)`` entries: what in-process
        callers pass directly (no item or key objects per transaction; a key is built only for a
        new window, windows are looked up by their key's strings, see ``_lru``)."""
        return self._observe(entries)[0]

    def observe_keyed(
        self, entries: Sequence[tuple[Role, str, str, str, Transaction]]
    ) -> tuple[list[tuple[Transaction, ...]], list[int]]:
        """:meth:`observe_local`, and each view's *view key*: the same number for views
        answered in the same role from the same window object (a window rebuilt from the store
        is a new object). Consecutive views of one key usually continue each other (see
        ``actors.view_link``); a number may come back for another window once this one is
        gone, so it names a likely continuation, never a certain one."""
        views, wins = self._observe(entries)
        # Windows are 16-byte aligned objects: their address plus the role's index is unique.
        index = _ROLE_INDEX
        return views, [id(w) + index[e[0]] for e, w in zip(entries, wins, strict=True)]

    def _observe(
        self, entries: Sequence[tuple[Role, str, str, str, Transaction]]
    ) -> tuple[list[tuple[Transaction, ...]], list[CustomerState]]:
        wins: list[CustomerState] = []
        lru = self._lru
        newest = self.newest
        for role, kind, tenant, name, tx in entries:
            token = (kind, tenant, name)
            win = lru.get(token)
            if win is None:
                key = _new_key(kind=kind, tenant=tenant, name=name)
                since = None if self.cold_start_complete else tx.occurred_at - _SPAN[role]
                win = lru[token] = self.windows[key] = _new_window(key, since)
            else:
                lru.move_to_end(token)
            win.add(tx)
            wins.append(win)
            if newest is None or tx.occurred_at > newest:
                newest = tx.occurred_at
        self.newest = newest
        return self._views([(e[0], e[4]) for e in entries], wins), wins

    def _views(
        self, asks: Sequence[tuple[Role, Transaction]], wins: Sequence[CustomerState]
    ) -> list[tuple[Transaction, ...]]:
        """Each observed item's view, then eviction and the LRU bound (end of a batch)."""
        newest = self.newest
        lru = self._lru
        # Packed: the views are what a shard actor sends back (see PackedList).
        views: list[tuple[Transaction, ...]] = PackedList()
        append = views.append
        client, spans = Role.CLIENT, _SPAN
        for (role, tx), win in zip(asks, wins, strict=True):
            if role is client:
                # ClientWindow.other_accounts_before's answer for a client seen on this one
                # account only (most clients), without the call.
                owners = win._owners  # type: ignore[attr-defined]
                if len(owners) == 1 and tx.account_id in owners:
                    append(())
                else:
                    append(win.other_accounts_before(tx, MAX_LOOKBACK))
                continue
            # CustomerState.before, inlined (one per item of every batch).
            keys = win._keys
            at = tx.occurred_at
            lo = bisect_left(keys, (at - spans[role], ""))
            hi = bisect_left(keys, (at, tx.id))
            append(tuple(win._txs[lo:hi]))
        if newest is not None:
            cutoff = newest - self.retention
            # Each window touched, once, in first-touch order.
            for win in dict.fromkeys(wins):
                keys = win._keys
                if keys and keys[0][0] < cutoff:
                    win.evict(cutoff)
                else:
                    # What evict does when nothing is old enough, without the call.
                    since = win.complete_since
                    if since is None or since < cutoff:
                        win.complete_since = cutoff
        while len(lru) > self.max_keys:
            _, old = lru.popitem(last=False)
            del self.windows[old.key]
        return views

    def summary(self, key: WindowKey, end: datetime) -> WindowSummary | None:
        win = self.windows.get(key)
        return win.summary(end) if win is not None else None


class HistorySource(Protocol):
    """Where windows are rebuilt from (``store.transactions`` satisfies it)."""

    async def windows(
        self, reads: Sequence[tuple[str, str, str, datetime]], *, limit: int = 10_000
    ) -> list[list[Transaction]]:
        """For each ``(kind, tenant, name, since)`` (kind ``"account"``: movements touching
        the account on either side; ``"client"``: movements of the client's accounts), the
        movements since ``since``, oldest first, at most ``limit``."""
        ...


async def observe_with_rebuild(
    state: ShardState, items: Sequence[ShardItem], source: HistorySource | None
) -> list[tuple[Transaction, ...]]:
    """Rebuild the windows ``items`` need from ``source`` (read together), then answer.

    A rebuild reads at most the store's default page (10,000 movements per account or client
    and look-back): a hub account above that gets a truncated window, so hubs with such volume
    should be served from memory (raise ``max_keys`` rather than rely on rebuilds).
    """
    need = state.missing(items)
    if need and source is not None:
        install(state, need, await read_windows(source, need))
    return state.answer(items)


async def read_windows(
    source: HistorySource, need: Sequence[RebuildRequest]
) -> list[list[Transaction]]:
    """The stored transactions of each window to rebuild (read together)."""
    return await source.windows([(r.key.kind, r.key.tenant, r.key.name, r.since) for r in need])


def install(
    state: ShardState, need: Sequence[RebuildRequest], loaded: Sequence[Sequence[Transaction]]
) -> None:
    """Install the windows :func:`read_windows` read."""
    for req, txs in zip(need, loaded, strict=True):
        state.load(req, txs)


# Longest path the graph searches walk back from a transfer, in earlier transfers: the layering
# chain search's own bound (chains of up to 8 transfers); cycles are bounded by the rules.
DEFAULT_GRAPH_HOPS = 7
DEFAULT_GRAPH_WINDOW = MAX_LOOKBACK


@cache
def default_graph_search() -> GraphSearch:
    """The graph searches of the default rule configuration."""
    return RuleEngine(default_rule_config()).graph_search


def transfer_edge(tx: Transaction) -> TransferEdge | None:
    """The money edge of a transfer between two accounts (``None`` for anything else)."""
    cp = tx.counterparty_account_id
    if not cp or cp == tx.account_id or tx.direction is Direction.NONE:
        return None
    src, dst = (tx.account_id, cp) if tx.direction is Direction.OUT else (cp, tx.account_id)
    return _new_edge(src=src, dst=dst, amount=tx.amount, at=tx.occurred_at, tx_id=tx.id)


_new_edge = fast_init(TransferEdge)


def tenant_edges(batch: Sequence[Transaction]) -> list[tuple[str, TransferEdge] | None]:
    """Each transaction's tenant and money edge (``None`` when it has none), in batch order."""
    out: list[tuple[str, TransferEdge] | None] = PackedList()
    for tx in batch:
        edge = transfer_edge(tx)
        out.append(None if edge is None else (tx.tenant, edge))
    return out


class TransferGraph:
    """Recent transfer edges per tenant (one :class:`~aml.graph.EdgeIndex` each).

    The graph is not sharded by account: a cycle crosses accounts that live on different
    shards. It is memory-only: after a restart the edges refill within the index window, so
    cycle/chain rules may miss a cycle whose older legs arrived before the restart (documented
    trade-off; account windows, by contrast, are rebuilt exactly).
    """

    def __init__(
        self, *, hops: int = DEFAULT_GRAPH_HOPS, window: timedelta = DEFAULT_GRAPH_WINDOW
    ) -> None:
        self.hops = hops
        self.window = window
        self.indexes: dict[str, EdgeIndex] = {}

    def observe_and_edges(
        self, batch: Sequence[Transaction], search: GraphSearch | None = None
    ) -> list[list[TransferEdge]]:
        """Add the batch's edges, then return each transfer's edges for the graph rules.

        The cycle and chain rules are the only readers of ``HistoryContext.edges``. Their
        searches (``search``, from the rule configuration; the defaults when ``None``) run
        here, over the index, and a transfer gets the earlier edges of the cycles it closes
        and the chains it ends (point in time: strictly before it), usually none. Handing out
        the transfer's whole neighbourhood instead cost its size in copying, pickling and
        re-indexing on every batch, and grew with the graph: up to 5,000 edges per transfer
        around a busy account. Paths are at most ``hops + 1`` transfers long. Every other
        transaction gets an empty list.
        """
        return self.observe_edges(tenant_edges(batch), search)

    def observe_edges(
        self, edges: Sequence[tuple[str, TransferEdge] | None], search: GraphSearch | None = None
    ) -> list[list[TransferEdge]]:
        """:meth:`observe_and_edges` from each transaction's ``(tenant, edge)`` (``None``: not
        a transfer between two accounts), see :func:`tenant_edges`: what the graph actor is
        sent instead of the batch."""
        if search is None:
            search = default_graph_search()
        max_hops = self.hops + 1
        indexes = self.indexes
        for item in edges:
            if item is not None:
                index = indexes.get(item[0])
                if index is None:
                    index = indexes[item[0]] = EdgeIndex(self.window)
                index.add(item[1])
        out: list[list[TransferEdge]] = PackedList()  # the graph actor's answer
        for item in edges:
            if item is None:
                out.append([])
            else:  # its tenant's index was created when the edge was added above
                out.append(indexes[item[0]].rule_edges(item[1], search, max_hops=max_hops))
        return out


class LocalContextBuilder:
    """Contexts from in-process shards (no Ray): the fallback and the reference for tests."""

    def __init__(
        self,
        shards: Sequence[ShardState],
        *,
        source: HistorySource | None = None,
        graph: TransferGraph | None = None,
    ) -> None:
        self.shards = list(shards)
        self.source = source
        self.graph = graph

    def contexts(
        self,
        batch: Sequence[Transaction],
        edges: Sequence[Sequence[TransferEdge]] | None = None,
        search: GraphSearch | None = None,
    ) -> list[HistoryContext]:
        """Contexts for a batch from memory only (no store behind the shards).

        The same routing, windows and views as :func:`route`, :meth:`ShardState.answer` and
        :func:`merge_views` (what the shard actors do), without building an item and a key per
        transaction and role: the shards are in this process.
        """
        n_shards = len(self.shards)
        plan: dict[int, list[tuple[Role, str, str, str, Transaction]]] = {}
        slots: dict[int, list[int]] = {}
        for i, tx in enumerate(batch):
            tenant = tx.tenant
            for role, kind, name in window_names(tx):
                shard = _token_crc(kind, tenant, name) % n_shards
                entries = plan.get(shard)
                if entries is None:
                    entries = plan[shard] = []
                    slots[shard] = []
                entries.append((role, kind, tenant, name, tx))
                slots[shard].append(i)
        n = len(batch)
        empty: tuple[Transaction, ...] = ()
        views_of = {role: [empty] * n for role in Role}
        for shard, entries in plan.items():
            views = self.shards[shard].observe_local(entries)
            for entry, i, view in zip(entries, slots[shard], views, strict=True):
                views_of[entry[0]][i] = view
        if edges is None and self.graph is not None:
            edges = self.graph.observe_and_edges(batch, search)
        return _contexts(
            batch,
            views_of[Role.ACCOUNT],
            views_of[Role.COUNTERPARTY],
            views_of[Role.AGENT],
            views_of[Role.CLIENT],
            edges,
        )

    async def observe_and_context(
        self,
        batch: Sequence[Transaction],
        search: GraphSearch | None = None,
        order: BatchOrder | None = None,
    ) -> list[HistoryContext]:
        """Contexts for a batch, rebuilding windows from the store as needed; ``search`` is
        what the graph rules look for (see :meth:`TransferGraph.observe_and_edges`).

        ``order`` is accepted as :meth:`actors.factory.ShardedState.observe_and_context`
        accepts it, so that either serves a rule replica: in one process batches are observed
        in the order they are given, and there is nothing to wait for."""
        plan = route(batch, len(self.shards))
        answers = [
            (items, await observe_with_rebuild(self.shards[s], items, self.source))
            for s, items in plan.items()
        ]
        edges = self.graph.observe_and_edges(batch, search) if self.graph is not None else None
        return merge_views(batch, answers, edges)
