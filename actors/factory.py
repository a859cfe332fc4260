"""Ray actors for per-customer state: the one place ``ray.remote`` is applied to state classes.

Windows are sharded by a stable hash of (tenant, account) (:func:`actors.customer_state.shard_of`).
A batch costs one actor call per shard it touches, never one per transaction.

Crash safety: shard actors restart without limit (``max_restarts=-1``) and in-flight calls are
retried (``max_task_retries=-1``). A restarted shard starts empty and rebuilds each window from
the store on first use; transactions are stored before they are scored, so a retried call sees
them all and no decision is lost.

Counterparty and agent views: each transaction is also sent, in the same per-shard call, to the
shard owning its counterparty account and its agent, which keep those windows (an in-memory index
per key) instead of the scorer querying the store per transaction. Account windows are exact
after a restart (rebuilt from the store); agent windows are memory-only and refill within their
24-hour look-back (see :class:`actors.customer_state.ShardState`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import ray

from actors.customer_state import (
    DEFAULT_GRAPH_HOPS,
    DEFAULT_LATE_SLACK,
    DEFAULT_MAX_KEYS,
    RebuildRequest,
    ShardItem,
    ShardState,
    TransferGraph,
    install,
    merge_views,
    read_windows,
    route,
    tenant_edges,
)
from actors.ordering import ORDER_WAIT_S, BatchOrder, OrderGate, admitted
from actors.view_link import DEFAULT_LINK_CAPACITY, LinkedViews, ViewLink, ViewSender
from aml.domain import SealedBatch, Transaction, sealed
from aml.gc_tuning import collect_rarely
from aml.graph import GraphSearch
from aml.history import HistoryContext, TransferEdge
from storage.store import Store, open_store

NAMESPACE = "fineract-aml"

_T = TypeVar("_T")

SHARD_NAME = "aml-state-{group}-{index}-of-{count}"


def own_transactions(items: Sequence[ShardItem]) -> list[Transaction]:
    """The transactions a shard's items carry, each object once, in batch order: what the shard
    and its caller both give link slots (see ``actors.view_link``)."""
    out: list[Transaction] = []
    seen: set[int] = set()
    for item in items:
        # By object: a batch holding one object twice holds it twice on both sides too.
        key = id(item.tx)
        if key not in seen:
            seen.add(key)
            out.append(item.tx)
    return out


async def _read_for(shard: StateShard, need: Sequence[RebuildRequest]) -> list[list[Transaction]]:
    # On the shard's store loop: the client is opened there (it belongs to the loop it first
    # runs on). A module function: a coroutine method would make StateShard an async actor.
    return await read_windows(shard._get_store().transactions, need)


class StateShard:
    """One shard of customer windows, backed by the store for rebuilds (run as a Ray actor)."""

    def __init__(
        self,
        mongo_uri: str | None,
        db_name: str,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        late_slack_s: float = DEFAULT_LATE_SLACK.total_seconds(),
        link_capacity: int = DEFAULT_LINK_CAPACITY,
    ) -> None:
        """Args:
        mongo_uri: store to rebuild windows from; ``None`` keeps state in memory only.
        db_name: database name in that store.
        max_keys: most windows held (least recently used are dropped, then rebuilt).
        late_slack_s: lateness answered from memory before a window is rebuilt.
        link_capacity: transactions sent once per caller and then named by slot (see
            :mod:`actors.view_link`).
        """
        self.state = ShardState(
            max_keys=max_keys,
            late_slack=timedelta(seconds=late_slack_s),
            cold_start_complete=mongo_uri is None,
        )
        self._uri = mongo_uri
        self._db_name = db_name
        self._store: Store | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links = ViewSender(capacity=link_capacity)
        self._gate = OrderGate()
        collect_rarely()

    def _get_store(self) -> Store:
        if self._store is None:
            assert self._uri is not None
            # Opened lazily on the store loop; each actor has its own client.
            self._store = open_store(self._uri, self._db_name, appname="fineract-aml-state")
        return self._store

    def _on_store_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on this actor's store loop (a thread of its own) and wait for it."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(
                target=self._loop.run_forever, name="state-shard-store", daemon=True
            ).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def observe_transactions(
        self,
        txs: Sequence[Transaction],
        shard: int,
        shards: int,
        link: str,
        order: BatchOrder | None = None,
        insist: bool = False,
    ) -> LinkedViews | None:
        """Observe this shard's items among ``txs`` and answer each one's view (see
        ``ShardState.answer``) over the caller's link, after rebuilding from the store the
        windows they need (as :func:`actors.customer_state.observe_with_rebuild` does).

        ``None`` when ``order`` says the batch comes after one of its sender's not yet seen
        here (see :mod:`actors.ordering`): nothing is observed, the caller asks again.

        The caller sends the whole batch (as the bytes it received it in, see
        :class:`~aml.domain.SealedBatch`) rather than this shard's items: a transaction with
        several roles on a shard crosses once and no item is pickled. :func:`route` picks this
        shard's items in the same order as the caller's plan, so the answers line up with it.

        Args:
            txs: the batch, in batch order.
            shard: this shard's index.
            shards: the number of shards the caller routes to.
            link: the caller's link id (see :mod:`actors.view_link`): each transaction is sent
                to that caller once and named by slot afterwards.
            order: the batch's place in its sender's sequence (``None``: unordered).
            insist: observe it even if an earlier batch of the sender has not come.
        """
        return self._gate.run(order, insist, lambda: self._observe(txs, shard, shards, link))

    def _observe(
        self, txs: Sequence[Transaction], shard: int, shards: int, link: str
    ) -> LinkedViews:
        items = route(txs, shards, only=shard).get(shard, [])
        need = self.state.missing(items)
        if need and self._uri is not None:
            install(self.state, need, self._on_store_loop(_read_for(self, need)))
        views, keys = self.state.answer_keyed(items)
        return self._links.encode(link, views, own_transactions(items), keys)

    def turn(self, order: BatchOrder) -> bool:
        """Whether a batch answered "not yet" would be observed now (it is not sent along)."""
        return self._gate.ready(order)

    def stats(self) -> dict[str, Any]:
        """Windows held, entries held, rebuilds done and the process id (health pages, tests)."""
        return {
            "pid": os.getpid(),
            "windows": len(self.state.windows),
            "entries": sum(len(w) for w in self.state.windows.values()),
            "rebuilds": self.state.rebuilds,
            **self._links.stats(),
            **self._gate.stats(),
            "newest": self.state.newest.isoformat() if self.state.newest else None,
        }

    def ping(self) -> bool:
        return True


# A synchronous actor with one thread (no method of StateShard may be a coroutine function, or
# Ray makes it an async actor): Ray runs a caller's calls in the order they were made
# (it does not for async actors), so batches in flight together are observed in the order the
# caller sent them, and a transaction's view holds the earlier batches' transactions. Store reads
# for rebuilds run on the actor's own event loop thread while the call waits. Throughput comes
# from batching and from the number of shards.
StateShardActor = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(StateShard)


class TransferGraphActor(TransferGraph):
    """The transfer graph as a long-lived actor (its process collects garbage rarely)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = OrderGate()
        collect_rarely()

    def observe_edges_in_order(
        self,
        edges: Sequence[tuple[str, TransferEdge] | None],
        search: GraphSearch | None,
        order: BatchOrder | None,
        insist: bool = False,
    ) -> list[list[TransferEdge]] | None:
        """:meth:`observe_edges` once the batch's turn has come (``None``: not yet, see
        :mod:`actors.ordering`)."""
        return self._gate.run(order, insist, lambda: self.observe_edges(edges, search))

    def turn(self, order: BatchOrder) -> bool:
        """Whether a batch answered "not yet" would be observed now."""
        return self._gate.ready(order)

    def order_stats(self) -> dict[str, int]:
        return self._gate.stats()


GraphActor = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(TransferGraphActor)
# Every batch calls the graph and each shard: no task events for them (they would cost each
# call in the actor and in the GCS, for a task list nobody reads at this rate).
_QUIET = {"enable_task_events": False}
GRAPH_NAME = "aml-graph-{group}"


def create_graph(
    *,
    group: str = "default",
    namespace: str = NAMESPACE,
    detached: bool = True,
    hops: int = DEFAULT_GRAPH_HOPS,
) -> Any:
    """Get or create the named transfer-graph actor (one per group, all tenants inside)."""
    opts: dict[str, Any] = {
        "name": GRAPH_NAME.format(group=group),
        "namespace": namespace,
        "get_if_exists": True,
        "max_concurrency": 1,
        **_QUIET,
    }
    if detached:
        opts["lifetime"] = "detached"
    return GraphActor.options(**opts).remote(hops=hops)  # type: ignore[attr-defined]


def create_state_shards(
    count: int,
    *,
    mongo_uri: str | None,
    db_name: str,
    max_keys: int = DEFAULT_MAX_KEYS,
    link_capacity: int = DEFAULT_LINK_CAPACITY,
    group: str = "default",
    namespace: str = NAMESPACE,
    detached: bool = True,
) -> list[Any]:
    """Get or create the ``count`` named shard actors (shared by every pipeline replica).

    Detached named actors outlive the replica that created them, so a pipeline replica restart
    does not drop the windows; ``get_if_exists`` makes concurrent creation by several replicas
    safe. ``group`` separates independent sets of shards (one per database in tests).
    """
    handles = []
    for i in range(count):
        opts: dict[str, Any] = {
            "name": SHARD_NAME.format(group=group, index=i, count=count),
            "namespace": namespace,
            "get_if_exists": True,
            "max_concurrency": 1,
            **_QUIET,
        }
        if detached:
            opts["lifetime"] = "detached"
        handles.append(
            StateShardActor.options(**opts).remote(  # type: ignore[attr-defined]
                mongo_uri, db_name, max_keys=max_keys, link_capacity=link_capacity
            )
        )
    return handles


class ShardedState:
    """Caller side of the shards: one call per touched shard per batch, views merged; the
    transfer graph (when given) is asked in parallel with the shards.

    Each shard sends this caller a transaction once and names it by slot afterwards (one
    :class:`~actors.view_link.ViewLink` per shard): see :mod:`actors.view_link`.
    """

    def __init__(
        self, shards: Sequence[Any], graph: Any | None = None, *, order_wait_s: float = ORDER_WAIT_S
    ) -> None:
        """Args:
        shards, graph: the actors' handles.
        order_wait_s: longest a batch waits for its sender's previous one (see
            :mod:`actors.ordering`).
        """
        self.shards = list(shards)
        self.graph = graph
        self.links = [ViewLink() for _ in self.shards]
        self.order_wait_s = order_wait_s

    async def observe_and_context(
        self,
        batch: Sequence[Transaction],
        search: GraphSearch | None = None,
        order: BatchOrder | None = None,
    ) -> list[HistoryContext]:
        """Observe ``batch`` and return each transaction's point-in-time context (``search``:
        what the graph rules look for, see ``TransferGraph.observe_and_edges``).

        ``order``: the batch's place in its sender's sequence; each actor then observes it
        after the sender's earlier batches (see :mod:`actors.ordering`), and every shard is
        called, with or without items, so that each knows the batch has passed.
        """
        if not batch:
            return []
        batch = sealed(batch)
        plan = route(batch, len(self.shards))
        if order is not None:
            for s in range(len(self.shards)):
                plan.setdefault(s, [])
        parts = list(plan.items())
        calls = [self._linked(batch, s, items, order) for s, items in parts]
        if self.graph is not None:
            edges = tenant_edges(batch)
            graph = self.graph
            calls.append(
                admitted(
                    lambda insist: graph.observe_edges_in_order.remote(
                        edges, search, order, insist
                    ),
                    lambda: graph.turn.remote(order),
                    wait_s=self.order_wait_s,
                )
            )
        results = await asyncio.gather(*calls)
        found = results.pop() if self.graph is not None else None
        answers = [(items, res) for (_, items), res in zip(parts, results, strict=True)]
        return merge_views(batch, answers, found)

    async def _linked(
        self,
        batch: SealedBatch[Transaction],
        shard: int,
        items: Sequence[ShardItem],
        order: BatchOrder | None,
    ) -> Any:
        """One shard's views over this caller's link (applied as soon as the reply is in,
        whatever happens to the rest of the batch)."""
        link = self.links[shard]
        own = own_transactions(items)  # what the shard keeps of the batch, as it lists them
        ticket, link_id = link.request()
        actor = self.shards[shard]
        count = len(self.shards)
        delivered = False
        try:
            # The whole batch, as the bytes it arrived in; the shard picks its own items. A
            # "not yet" answer observed nothing and touched no link.
            reply = await admitted(
                lambda insist: actor.observe_transactions.remote(
                    batch, shard, count, link_id, order, insist
                ),
                lambda: actor.turn.remote(order),
                wait_s=self.order_wait_s,
            )
            delivered = True
        finally:
            if not delivered:  # failed or cancelled: later replies must not wait for it
                link.failed(ticket)
        return await link.receive(ticket, reply, own)
