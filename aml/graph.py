"""Bounded, time-windowed search over transfer edges: cycles and layering chains.

Nothing here enumerates the whole graph. Every search starts from the one new edge, walks
*backwards in time* from its source over edges that happened earlier than the hop after them
(time-respecting paths), keeps only the ``max_fanout`` most recent candidate edges per node and
stops after ``max_expansions`` edge expansions. The cost of one search is therefore at most
``max_expansions`` regardless of graph size; :class:`SearchStats` reports what was spent so
callers and tests can see it.

:class:`EdgeIndex` is the incremental structure a per-tenant actor holds: it evicts edges older
than its window (relative to the newest edge it has seen, never the wall clock), caps its size
and the edges kept per node, and runs the same searches over its own per-account lists
(:meth:`EdgeIndex.rule_edges`), so that a transfer's context carries only the edges of the cycles
and chains it closes instead of its whole neighbourhood.
"""

from __future__ import annotations

import bisect
import heapq
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aml.history import TransferEdge

DEFAULT_MAX_FANOUT = 32
DEFAULT_MAX_EXPANSIONS = 2_000
DEFAULT_MAX_RESULTS = 16


@dataclass(slots=True)
class SearchStats:
    """What one search spent (filled in by the search when passed)."""

    expansions: int = 0
    truncated: bool = False  # the expansion budget ran out before the search finished


def _key(edge: TransferEdge) -> tuple[datetime, str]:
    return (edge.at, edge.tx_id)


# Same key as ``_key`` without a Python-level call per edge (sorting is on the hot path).
_KEY = operator.attrgetter("at", "tx_id")


# Predecessors of a node: the edges into it strictly before a ``(at, tx_id)`` key and not older
# than the search's window, newest first.
Incoming = Callable[[str, tuple[datetime, str]], Iterable[TransferEdge]]


def _incoming(edges: Iterable[TransferEdge]) -> Incoming:
    """Predecessors over a list of candidate edges (grouped by destination, newest first)."""
    by_dst: dict[str, list[TransferEdge]] = {}
    for e in edges:
        by_dst.setdefault(e.dst, []).append(e)
    for items in by_dst.values():
        items.sort(key=_KEY, reverse=True)

    def incoming(node: str, before: tuple[datetime, str]) -> Iterator[TransferEdge]:
        for e in by_dst.get(node, ()):
            if (e.at, e.tx_id) < before:
                yield e

    return incoming


def _incoming_before(
    edges: Iterable[TransferEdge], new_edge: TransferEdge, window: timedelta
) -> Incoming:
    """Predecessors among the ``edges`` that lie within ``window`` before ``new_edge``."""
    start = new_edge.at - window
    limit = _key(new_edge)
    return _incoming([e for e in edges if start <= e.at and (e.at, e.tx_id) < limit])


@dataclass(frozen=True, slots=True)
class GraphSearch:
    """What the cycle and layering-chain rules search for (built from the rule configuration by
    ``aml.rules.catalog.graph_search``); ``0`` hops turns a search off.

    The transfer graph runs these searches where the edges live and hands a transfer only the
    edges of what it found; the rules then search that small set again with the same values.
    """

    cycle_max_hops: int
    cycle_window: timedelta
    cycle_tolerance: float
    cycle_results: int
    chain_min_hops: int
    chain_window: timedelta
    chain_ratio: tuple[float, float]
    chain_results: int


def _within(a: float, b: float, tolerance: float) -> bool:
    top = max(abs(a), abs(b))
    return top == 0 or abs(a - b) <= tolerance * top


def find_cycles(
    edges: Sequence[TransferEdge],
    new_edge: TransferEdge,
    *,
    max_hops: int,
    window: timedelta,
    amount_tolerance: float,
    max_fanout: int = DEFAULT_MAX_FANOUT,
    max_expansions: int = DEFAULT_MAX_EXPANSIONS,
    max_results: int = DEFAULT_MAX_RESULTS,
    stats: SearchStats | None = None,
) -> list[list[TransferEdge]]:
    """Cycles closed by ``new_edge``: money that left ``new_edge.dst`` comes back to it.

    A cycle is a simple, time-respecting path ``dst -> ... -> src`` of earlier edges followed by
    ``new_edge`` (``src -> dst``). All of it lies within ``window`` before ``new_edge.at`` and
    each hop's amount is within ``amount_tolerance`` (relative) of the hop after it, so money
    that shrinks by small fees along the way still matches.

    Args:
        edges: candidate edges (any order; later ones and ``new_edge`` itself are ignored).
        new_edge: the edge being scored.
        max_hops: longest cycle, counting ``new_edge`` (2 = A->B then B->A).
        window: how far back the cycle's first hop may lie.
        amount_tolerance: e.g. 0.2 for +/-20 % between consecutive hops.
        max_fanout: most recent candidate predecessors considered per node.
        max_expansions: budget of edge expansions for the whole search.
        max_results: stop after this many cycles.
        stats: filled with the expansions spent.

    Returns:
        Cycles as edge lists in time order, each ending with ``new_edge``.
    """
    return _cycles(
        _incoming_before(edges, new_edge, window),
        new_edge,
        max_hops=max_hops,
        amount_tolerance=amount_tolerance,
        max_fanout=max_fanout,
        max_expansions=max_expansions,
        max_results=max_results,
        stats=stats,
    )


def _cycles(
    incoming: Incoming,
    new_edge: TransferEdge,
    *,
    max_hops: int,
    amount_tolerance: float,
    max_fanout: int,
    max_expansions: int,
    max_results: int,
    stats: SearchStats | None,
) -> list[list[TransferEdge]]:
    """:func:`find_cycles` over a predecessor source (a list's or an index's)."""
    st = stats if stats is not None else SearchStats()
    if new_edge.src == new_edge.dst or max_hops < 2:
        return []
    found: list[list[TransferEdge]] = []
    # Stack of (node reached, path of edges backwards from new_edge, nodes on the path).
    stack: list[tuple[str, list[TransferEdge], frozenset[str]]] = [
        (new_edge.src, [new_edge], frozenset({new_edge.src}))
    ]
    while stack and len(found) < max_results:
        node, path, seen = stack.pop()
        nxt = path[-1]
        taken = 0
        for e in incoming(node, (nxt.at, nxt.tx_id)):
            if taken >= max_fanout:
                break
            if e.src == e.dst:
                continue
            if not _within(e.amount, nxt.amount, amount_tolerance):
                continue
            if st.expansions >= max_expansions:
                st.truncated = True
                return found
            st.expansions += 1
            taken += 1
            if e.src == new_edge.dst:
                found.append([e, *reversed(path)])
                if len(found) >= max_results:
                    break
                continue
            if e.src in seen or len(path) + 1 >= max_hops:
                continue
            stack.append((e.src, [*path, e], seen | {e.src}))
    return found


def find_chains(
    edges: Sequence[TransferEdge],
    new_edge: TransferEdge,
    *,
    min_hops: int,
    window: timedelta,
    ratio: tuple[float, float],
    max_hops: int = 8,
    max_fanout: int = DEFAULT_MAX_FANOUT,
    max_expansions: int = DEFAULT_MAX_EXPANSIONS,
    max_results: int = DEFAULT_MAX_RESULTS,
    stats: SearchStats | None = None,
) -> list[list[TransferEdge]]:
    """Layering chains ending with ``new_edge`` (stacking).

    A chain is a simple, time-respecting path ``a -> b -> ... -> new_edge.src -> new_edge.dst``
    of at least ``min_hops`` edges (counting ``new_edge``) within ``window`` before
    ``new_edge.at``, where each hop's amount is ``ratio[0]..ratio[1]`` times the previous hop's.

    Returns:
        Chains in time order, each ending with ``new_edge``; only maximal ones are returned
        (a chain is not repeated as a shorter suffix of a longer one found).
    """
    return _chains(
        _incoming_before(edges, new_edge, window),
        new_edge,
        min_hops=min_hops,
        ratio=ratio,
        max_hops=max_hops,
        max_fanout=max_fanout,
        max_expansions=max_expansions,
        max_results=max_results,
        stats=stats,
    )


def _chains(
    incoming: Incoming,
    new_edge: TransferEdge,
    *,
    min_hops: int,
    ratio: tuple[float, float],
    max_hops: int,
    max_fanout: int,
    max_expansions: int,
    max_results: int,
    stats: SearchStats | None,
) -> list[list[TransferEdge]]:
    """:func:`find_chains` over a predecessor source (a list's or an index's)."""
    st = stats if stats is not None else SearchStats()
    lo, hi = ratio
    if new_edge.src == new_edge.dst or min_hops < 1:
        return []
    found: list[list[TransferEdge]] = []
    stack: list[tuple[str, list[TransferEdge], frozenset[str]]] = [
        (new_edge.src, [new_edge], frozenset({new_edge.src, new_edge.dst}))
    ]
    while stack and len(found) < max_results:
        node, path, seen = stack.pop()
        nxt = path[-1]
        extended = False
        if len(path) < max_hops:
            taken = 0
            for e in incoming(node, (nxt.at, nxt.tx_id)):
                if taken >= max_fanout:
                    break
                if e.src in seen or e.amount <= 0:
                    continue
                if not lo <= nxt.amount / e.amount <= hi:
                    continue
                if st.expansions >= max_expansions:
                    st.truncated = True
                    stack.clear()
                    break
                st.expansions += 1
                taken += 1
                extended = True
                stack.append((e.src, [*path, e], seen | {e.src}))
        if not extended and len(path) >= min_hops:
            found.append(list(reversed(path)))
    return found


class EdgeIndex:
    """Recent transfer edges of one tenant, indexed by account, bounded in time and size.

    Eviction is relative to the newest edge seen (a replay of old data behaves like live
    traffic). Late edges are inserted in time order; edges older than the window on arrival
    are dropped. Per node only the ``max_per_node`` most recent edges are kept in each
    direction, which bounds the work around hub accounts (agents, merchants, pooled accounts).
    """

    def __init__(
        self,
        window: timedelta,
        *,
        max_edges: int = 200_000,
        max_per_node: int = 256,
    ) -> None:
        """Create an empty index.

        Args:
            window: edges older than ``newest seen - window`` are evicted.
            max_edges: hard cap on edges held; the oldest go first.
            max_per_node: cap per account and direction.
        """
        if window <= timedelta(0) or max_edges < 1 or max_per_node < 1:
            raise ValueError("window, max_edges and max_per_node must be positive")
        self.window = window
        self.max_edges = max_edges
        self.max_per_node = max_per_node
        self._edges: dict[str, TransferEdge] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._out: dict[str, list[tuple[datetime, str]]] = {}
        self._in: dict[str, list[tuple[datetime, str]]] = {}
        self._watermark: datetime | None = None

    def __len__(self) -> int:
        return len(self._edges)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._edges

    def add(self, edge: TransferEdge) -> bool:
        """Insert ``edge`` (idempotent by ``tx_id``); returns whether it is now held."""
        if edge.tx_id in self._edges or edge.src == edge.dst:
            return edge.tx_id in self._edges
        if self._watermark is None or edge.at > self._watermark:
            self._watermark = edge.at
        if edge.at < self._watermark - self.window:
            return False
        self._edges[edge.tx_id] = edge
        heapq.heappush(self._heap, _key(edge))
        self._insert(self._out, edge.src, edge)
        self._insert(self._in, edge.dst, edge)
        self._evict()
        return edge.tx_id in self._edges

    def _insert(
        self, side: dict[str, list[tuple[datetime, str]]], node: str, e: TransferEdge
    ) -> None:
        items = side.get(node)
        if items is None:
            items = side[node] = []
        bisect.insort(items, (e.at, e.tx_id))
        if len(items) > self.max_per_node:
            del items[0]

    def _remove(self, tx_id: str) -> None:
        e = self._edges.pop(tx_id, None)
        if e is None:
            return
        for side, node in ((self._out, e.src), (self._in, e.dst)):
            items = side.get(node)
            if not items:
                continue
            i = bisect.bisect_left(items, _key(e))
            if i < len(items) and items[i] == _key(e):
                del items[i]
            if not items:
                del side[node]

    def _evict(self) -> None:
        assert self._watermark is not None
        horizon = self._watermark - self.window
        while self._heap and (self._heap[0][0] < horizon or len(self._edges) > self.max_edges):
            _, tx_id = heapq.heappop(self._heap)
            self._remove(tx_id)

    def _incoming_since(self, start: datetime) -> Incoming:
        """Predecessors straight from the per-account lists (no edges copied or grouped)."""
        sides_in = self._in
        edges = self._edges
        bisect_left = bisect.bisect_left

        def incoming(node: str, before: tuple[datetime, str]) -> Iterator[TransferEdge]:
            keys = sides_in.get(node)
            if not keys:
                return
            i = bisect_left(keys, before)
            while i > 0:
                i -= 1
                at, tx_id = keys[i]
                if at < start:
                    return
                e = edges.get(tx_id)
                if e is not None:
                    yield e

        return incoming

    def rule_edges(
        self, new_edge: TransferEdge, search: GraphSearch, *, max_hops: int
    ) -> list[TransferEdge]:
        """The earlier edges of the cycles ``new_edge`` closes and of the layering chains it
        ends, time-ordered: what the cycle and chain rules need to find them again.

        The searches are :func:`find_cycles` and :func:`find_chains` with the rules' values,
        over this index's edges, with paths of at most ``max_hops`` transfers. However dense
        the graph around a hub account, the answer holds a handful of edges.
        """
        found: list[list[TransferEdge]] = []
        if search.cycle_max_hops >= 2:
            found += _cycles(
                self._incoming_since(new_edge.at - search.cycle_window),
                new_edge,
                max_hops=min(search.cycle_max_hops, max_hops),
                amount_tolerance=search.cycle_tolerance,
                max_fanout=DEFAULT_MAX_FANOUT,
                max_expansions=DEFAULT_MAX_EXPANSIONS,
                max_results=search.cycle_results,
                stats=None,
            )
        if search.chain_min_hops >= 1:
            found += _chains(
                self._incoming_since(new_edge.at - search.chain_window),
                new_edge,
                min_hops=search.chain_min_hops,
                ratio=search.chain_ratio,
                max_hops=max_hops,
                max_fanout=DEFAULT_MAX_FANOUT,
                max_expansions=DEFAULT_MAX_EXPANSIONS,
                max_results=search.chain_results,
                stats=None,
            )
        edges = {e.tx_id: e for path in found for e in path if e.tx_id != new_edge.tx_id}
        return sorted(edges.values(), key=_KEY)

    def edges_near(
        self,
        account: str,
        hops: int,
        *,
        before: tuple[datetime, str] | None = None,
        max_edges: int = 5_000,
    ) -> list[TransferEdge]:
        """Edges within ``hops`` of ``account`` (either direction), time-ordered.

        Args:
            account: the account at the centre.
            hops: neighbourhood radius in edges (a cycle of ``n`` hops needs ``n - 1``).
            before: only edges strictly before this ``(at, tx_id)`` (point-in-time context).
            max_edges: cap on edges returned; the breadth-first walk stops there.
        """
        # Hot path (every transaction asks): the index's own (at, tx_id) keys are compared with
        # ``before`` directly, so an edge is only fetched when it is in time.
        edges = self._edges
        sides = (self._out, self._in)
        seen_nodes = {account}
        frontier = [account]
        out: dict[str, TransferEdge] = {}
        for _ in range(max(hops, 0)):
            nxt: list[str] = []
            for node in frontier:
                for side in sides:
                    keys = side.get(node)
                    if not keys:
                        continue
                    for k in keys:
                        if before is not None and k >= before:
                            continue
                        tx_id = k[1]
                        e = edges.get(tx_id)
                        if e is None:
                            continue
                        if tx_id not in out:
                            out[tx_id] = e
                            if len(out) >= max_edges:
                                return sorted(out.values(), key=_KEY)
                        other = e.src
                        if other not in seen_nodes:
                            seen_nodes.add(other)
                            nxt.append(other)
                        other = e.dst
                        if other not in seen_nodes:
                            seen_nodes.add(other)
                            nxt.append(other)
            frontier = nxt
        return sorted(out.values(), key=_KEY)
