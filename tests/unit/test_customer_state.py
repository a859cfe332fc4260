"""Per-customer windows: exact point-in-time contexts, equal to ``aml.history.build_context``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from actors import customer_state
from actors.customer_state import (
    ClientWindow,
    CustomerState,
    LocalContextBuilder,
    RebuildRequest,
    Role,
    ShardState,
    TransferGraph,
    WindowKey,
    keys_for,
    route,
    shard_of,
)
from aml.domain import Direction, Transaction, TransactionType
from aml.history import MAX_LOOKBACK, build_context
from tests.factories import T0, make_transfer, make_tx

ACCOUNTS = [f"savings:{i}" for i in range(6)]
AGENTS = ["ag1", "ag2", None]


def _random_stream(seed: int, n: int) -> list[Transaction]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        acct = rng.choice(ACCOUNTS)
        cp = rng.choice([None, None, *ACCOUNTS])
        out.append(
            make_tx(
                account_id=acct,
                counterparty_account_id=cp,
                type=TransactionType.TRANSFER if cp else TransactionType.DEPOSIT,
                direction=Direction.OUT if cp else Direction.IN,
                agent_id=rng.choice(AGENTS),
                amount_minor=rng.randint(1, 10_000) * 100,
                # Spread over 12 days with many exact ties to exercise the (time, id) order.
                occurred_at=T0 + timedelta(hours=rng.randint(0, 12 * 24) / 2),
            )
        )
    return out


@pytest.mark.parametrize(("seed", "n_shards", "batch_size"), [(1, 1, 1), (2, 3, 17), (3, 4, 64)])
def test_contexts_equal_build_context_over_the_same_stream(
    seed: int, n_shards: int, batch_size: int
) -> None:
    # Arrival order is shuffled relative to event time: late events must still see exactly
    # what happened before them, as the training path computes it.
    stream = _random_stream(seed, 400)
    builder = LocalContextBuilder([ShardState(cold_start_complete=True) for _ in range(n_shards)])
    seen: list[Transaction] = []
    for start in range(0, len(stream), batch_size):
        batch = stream[start : start + batch_size]
        seen.extend(batch)
        got = builder.contexts(batch)
        for tx, ctx in zip(batch, got, strict=True):
            assert ctx == build_context(tx, seen), tx.id


def test_window_never_contains_the_transaction_itself_or_later_ones() -> None:
    win = CustomerState(WindowKey("account", "default", "savings:12"), complete_since=None)
    txs = [make_tx(occurred_at=T0 + timedelta(minutes=m)) for m in (30, 10, 20)]
    for t in txs:
        win.add(t)
    assert not win.add(txs[0])  # a replay is kept once
    view = win.before(txs[2], MAX_LOOKBACK)  # the 20-minute one
    assert [t.occurred_at for t in view] == [T0 + timedelta(minutes=10)]


def test_old_entries_are_evicted_relative_to_the_newest_event() -> None:
    shard = ShardState(cold_start_complete=True, late_slack=timedelta(0))
    builder = LocalContextBuilder([shard])
    old = make_tx(occurred_at=T0)
    builder.contexts([old])
    new = make_tx(occurred_at=T0 + MAX_LOOKBACK + timedelta(hours=1))
    (ctx,) = builder.contexts([new])
    assert ctx.account == []
    win = shard.windows[WindowKey("account", "default", "savings:12")]
    assert len(win) == 1 and win.complete_since == new.occurred_at - MAX_LOOKBACK


def test_unknown_and_evicted_windows_are_requested_from_the_store() -> None:
    shard = ShardState(max_keys=2)
    # No client: only account windows here (client windows have their own tests).
    txs = [make_tx(account_id=f"savings:{i}", client_id=None) for i in range(3)]
    plan = route(txs, 1)[0]
    need = shard.missing(plan)
    assert {r.key.name for r in need} == {"savings:0", "savings:1", "savings:2"}
    for req in need:
        shard.load(req, [t for t in txs if t.account_id == req.key.name])
    shard.answer(plan)
    # Only two windows fit: the least recently used one was dropped and must be rebuilt.
    assert len(shard.windows) == 2
    again = shard.missing(route([make_tx(account_id="savings:0", client_id=None)], 1)[0])
    assert [r.key.name for r in again] == ["savings:0"]


def _entries(txs: Sequence[Transaction]) -> list[tuple[Role, str, str, str, Transaction]]:
    return [(i.role, i.key.kind, i.key.tenant, i.key.name, i.tx) for i in route(txs, 1)[0]]


def test_view_keys_name_one_role_of_one_window_object() -> None:
    shard = ShardState(cold_start_complete=True)
    a1 = make_tx(account_id="savings:1", counterparty_account_id="savings:2", client_id=None)
    a2 = make_tx(account_id="savings:2", counterparty_account_id="savings:1", client_id=None)
    _, keys = shard.observe_keyed(_entries([a1]))
    _, keys2 = shard.observe_keyed(_entries([a2]))
    assert len(keys) == 2 and len(set(keys)) == 2
    # savings:2's window answered in the counterparty role, then in the account role.
    assert keys[1] != keys2[0] and keys[0] != keys2[1]
    later = make_tx(account_id="savings:1", counterparty_account_id="savings:2", client_id=None)
    views, keys3 = shard.observe_keyed(_entries([later]))
    assert keys3 == keys
    assert views == shard.observe_local(_entries([later]))  # the views observe_local answers
    # A window rebuilt from the store is another object: another key.
    key = WindowKey(kind="account", tenant=a1.tenant, name="savings:1")
    shard.load(RebuildRequest(key, T0 - MAX_LOOKBACK), [a1, a2])
    assert shard.observe_keyed(_entries([a1]))[1][0] != keys[0]


def test_late_event_beyond_memory_triggers_a_rebuild_of_its_window() -> None:
    shard = ShardState(late_slack=timedelta(hours=1))
    recent = make_tx(occurred_at=T0 + timedelta(days=20), client_id=None)
    (req,) = shard.missing(route([recent], 1)[0])
    shard.load(req, [recent])
    shard.answer(route([recent], 1)[0])
    late = make_tx(occurred_at=T0 + timedelta(days=10), client_id=None)
    (again,) = shard.missing(route([late], 1)[0])
    assert again.since == late.occurred_at - MAX_LOOKBACK


def test_summary_counts_amounts_and_distinct_counterparties() -> None:
    win = CustomerState(WindowKey("account", "default", "savings:12"), complete_since=None)
    for i, cp in enumerate(["savings:1", "savings:2", "savings:1"]):
        win.add(
            make_tx(
                counterparty_account_id=cp,
                amount_minor=(i + 1) * 100,
                device_id=f"d{i % 2}",
                occurred_at=T0 + timedelta(hours=i),
            )
        )
    s = win.summary(T0 + timedelta(days=1))
    assert (s.count, s.total, s.max_amount) == (3, 600.0, 300.0)  # XAF has no minor unit
    assert (s.distinct_counterparties, s.distinct_devices, s.distinct_ips) == (2, 2, 0)


def test_shard_assignment_is_stable_and_spreads_keys() -> None:
    keys = [WindowKey("account", "default", f"savings:{i}") for i in range(1000)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]
    assert all(150 < shards.count(s) < 350 for s in range(4))


@pytest.mark.parametrize("cache_max", [500_000, 7])
def test_route_gives_every_key_of_every_transaction_on_its_shard(
    cache_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``route`` inlines ``keys_for`` and ``shard_of`` (with a cache of the keys' hashes, here
    # also one cleared every few keys): the same items, in the same order, on the same shards.
    monkeypatch.setattr(customer_state, "_TOKEN_CACHE_MAX", cache_max)
    customer_state._TOKEN_CRC.clear()
    txs = _random_stream(12, 300) + _client_stream(13, 200)
    for n_shards in (1, 2, 3):
        expected: dict[int, list[tuple[int, Role, WindowKey]]] = {}
        for i, tx in enumerate(txs):
            for role, key in keys_for(tx):
                expected.setdefault(shard_of(key, n_shards), []).append((i, role, key))
        for _ in range(2):  # hashes computed, then cached
            plan = route(txs, n_shards)
            got = {s: [(it.index, it.role, it.key) for it in items] for s, items in plan.items()}
            assert got == expected
            assert all(it.tx is txs[it.index] for items in plan.values() for it in items)
            for s in range(n_shards):
                only = route(txs, n_shards, only=s)
                assert list(only) == ([s] if s in expected else [])
                assert [(it.index, it.role, it.key) for it in only.get(s, [])] == expected.get(
                    s, []
                )
    assert len(customer_state._TOKEN_CRC) <= cache_max


def test_graph_gives_point_in_time_neighbourhood_across_accounts() -> None:
    def transfer(src: str, dst: str, minute: int) -> Transaction:
        return make_transfer(src, dst, T0 + timedelta(minutes=minute))

    a_b, b_c, c_a = transfer("A", "B", 1), transfer("B", "C", 2), transfer("C", "A", 3)
    builder = LocalContextBuilder(
        [ShardState(cold_start_complete=True) for _ in range(3)], graph=TransferGraph(hops=2)
    )
    builder.contexts([a_b, b_c])
    (ctx,) = builder.contexts([c_a])
    # B->C touches neither end of C->A's owner A directly; it is two hops away: cycle visible.
    assert [e.tx_id for e in ctx.edges] == [a_b.id, b_c.id]
    (late,) = builder.contexts([transfer("A", "B", 0)])
    assert late.edges == ()  # nothing happened before it


# --- the client role ---------------------------------------------------------------------------


class ListSource:
    """A history source over a list (what the store answers, for tests without a store)."""

    def __init__(self, stored: list[Transaction]) -> None:
        self.stored = stored
        self.asked: list[tuple[str, str, datetime]] = []

    def _between(
        self, txs: list[Transaction], since: datetime, until: datetime | None
    ) -> list[Transaction]:
        inside = [
            t for t in txs if since <= t.occurred_at and (until is None or t.occurred_at < until)
        ]
        return sorted(inside, key=lambda t: t.occurred_at)

    async def windows(
        self, reads: Sequence[tuple[str, str, str, datetime]], *, limit: int = 10_000
    ) -> list[list[Transaction]]:
        out: list[list[Transaction]] = []
        for kind, tenant, name, since in reads:
            self.asked.append((kind, name, since))
            if kind == "client":
                mine = [t for t in self.stored if t.tenant == tenant and t.client_id == name]
            else:
                mine = [
                    t
                    for t in self.stored
                    if t.tenant == tenant and name in (t.account_id, t.counterparty_account_id)
                ]
            out.append(self._between(mine, since, None)[:limit])
        return out


def _client_stream(seed: int, n: int) -> list[Transaction]:
    """Clients with two accounts each (c1, c2), one with a single account (c3), and a
    transaction without a client; transfers between and across clients; shuffled arrival."""
    rng = random.Random(seed)
    owners = {
        "savings:1": "c1",
        "savings:2": "c1",
        "savings:3": "c2",
        "savings:4": "c2",
        "savings:5": "c3",
    }
    out = []
    for _ in range(n):
        acct = rng.choice([*owners, "savings:9"])
        cp = rng.choice([None, None, *owners])
        out.append(
            make_tx(
                account_id=acct,
                client_id=owners.get(acct),
                counterparty_account_id=cp,
                type=TransactionType.TRANSFER if cp else TransactionType.WITHDRAWAL,
                direction=Direction.OUT,
                amount_minor=rng.randint(1, 10_000) * 100,
                occurred_at=T0 + timedelta(hours=rng.randint(0, 12 * 24) / 2),
            )
        )
    rng.shuffle(out)
    return out


def test_a_transaction_is_routed_to_its_clients_window() -> None:
    tx = make_tx(account_id="savings:13", client_id="7", tenant="t1")
    key = WindowKey("client", "t1", "7")
    assert (Role.CLIENT, key) in keys_for(tx)
    plan = route([make_tx(client_id=None), tx], 5)
    # In the same per-shard call as the shard's other roles: one item list per shard.
    items = [i for i in plan[shard_of(key, 5)] if i.role is Role.CLIENT]
    assert [(i.index, i.key) for i in items] == [(1, key)]
    # A transaction without a client has no client item anywhere.
    assert not [i for part in plan.values() for i in part if i.index == 0 and i.role is Role.CLIENT]
    assert not any(r is Role.CLIENT for r, _ in keys_for(make_tx(client_id=None)))


@pytest.mark.parametrize(("seed", "n_shards", "batch_size"), [(4, 1, 1), (5, 3, 23), (6, 4, 64)])
def test_client_views_equal_build_context_for_two_account_clients(
    seed: int, n_shards: int, batch_size: int
) -> None:
    stream = _client_stream(seed, 300)
    builder = LocalContextBuilder([ShardState(cold_start_complete=True) for _ in range(n_shards)])
    seen: list[Transaction] = []
    cross = 0
    for start in range(0, len(stream), batch_size):
        batch = stream[start : start + batch_size]
        seen.extend(batch)
        for tx, ctx in zip(batch, builder.contexts(batch), strict=True):
            assert ctx == build_context(tx, seen), tx.id
            cross += bool(ctx.client)
            # Only the client's own transactions on its other accounts.
            assert all(o.client_id == tx.client_id for o in ctx.client)
            assert all(
                tx.account_id not in (o.account_id, o.counterparty_account_id) for o in ctx.client
            )
            if tx.client_id in (None, "c3"):
                assert ctx.client == []  # one account, or no client: nothing more to send
    assert cross > len(stream) // 3  # the parity is not one of empty views


async def test_client_window_is_rebuilt_from_the_store_by_client_id() -> None:
    stream = sorted(_client_stream(7, 200), key=lambda t: (t.occurred_at, t.id))
    now = make_tx(account_id="savings:2", client_id="c1", occurred_at=T0 + timedelta(days=9))
    source = ListSource([*stream, now])
    # A restarted shard: empty, backed by the store.
    builder = LocalContextBuilder([ShardState(), ShardState()], source=source)
    (ctx,) = await builder.observe_and_context([now])
    expected = build_context(now, [*stream, now])
    assert ctx == expected and len(ctx.client) > 0
    assert ("client", "c1", now.occurred_at - MAX_LOOKBACK) in source.asked
    # The window is now in memory: the next transaction of the client asks nothing more.
    source.asked.clear()
    after = make_tx(account_id="savings:1", client_id="c1", occurred_at=T0 + timedelta(days=9.5))
    source.stored.append(after)
    (ctx2,) = await builder.observe_and_context([after])
    assert ("client", "c1") not in {(kind, name) for kind, name, _ in source.asked}
    assert ctx2 == build_context(after, [*stream, now, after])
    assert now in ctx2.client


def test_late_transaction_lands_in_time_order_in_the_client_window() -> None:
    builder = LocalContextBuilder([ShardState(cold_start_complete=True)])
    on13 = make_tx(account_id="savings:13", occurred_at=T0 + timedelta(minutes=60))
    on14 = make_tx(account_id="savings:14", occurred_at=T0 + timedelta(minutes=90))
    builder.contexts([on13, on14])
    late = make_tx(account_id="savings:14", occurred_at=T0 + timedelta(minutes=30))
    (ctx,) = builder.contexts([late])
    assert ctx.client == []  # the later savings:13 movement is not history yet
    now = make_tx(account_id="savings:12", occurred_at=T0 + timedelta(minutes=120))
    (ctx,) = builder.contexts([now])
    assert [o.id for o in ctx.client] == [late.id, on13.id, on14.id]


def test_client_windows_are_evicted_and_then_rebuilt() -> None:
    shard = ShardState(cold_start_complete=True, late_slack=timedelta(0))
    builder = LocalContextBuilder([shard])
    old = make_tx(account_id="savings:13", occurred_at=T0)
    builder.contexts([old])
    new = make_tx(account_id="savings:12", occurred_at=T0 + MAX_LOOKBACK + timedelta(hours=1))
    (ctx,) = builder.contexts([new])
    assert ctx.client == []  # older than the look-back
    win = shard.windows[WindowKey("client", "default", "7")]
    assert len(win) == 1 and win.complete_since == new.occurred_at - MAX_LOOKBACK
    # Bounded in count like every window: the least recently used client window goes first and
    # is then requested from the store again.
    backed = ShardState(max_keys=2)
    txs = [make_tx(account_id="savings:1", client_id=f"c{i}") for i in range(2)]
    plan = route(txs, 1)[0]
    for req in backed.missing(plan):
        backed.load(req, [])
    backed.answer(plan)
    assert WindowKey("client", "default", "c0") not in backed.windows
    again = backed.missing(route([txs[0]], 1)[0])
    assert WindowKey("client", "default", "c0") in {r.key for r in again}


def test_client_window_answers_the_other_accounts_through_replays_and_eviction() -> None:
    win = ClientWindow(WindowKey("client", "default", "7"), complete_since=None)
    on13 = make_tx(account_id="savings:13", occurred_at=T0)
    on12 = [make_tx(account_id="savings:12", occurred_at=T0 + timedelta(days=d)) for d in (1, 2)]
    for t in [on13, *on12, on13]:  # the replay of on13 is kept once
        win.add(t)
    now = make_tx(account_id="savings:12", occurred_at=T0 + timedelta(days=3))
    win.add(now)
    assert win.other_accounts_before(now, MAX_LOOKBACK) == (on13,)
    win.evict(T0 + timedelta(hours=1))
    assert win.other_accounts_before(now, MAX_LOOKBACK) == ()
    # The account comes back into use: it is in the view again.
    back = make_tx(account_id="savings:13", occurred_at=T0 + timedelta(days=2, hours=1))
    win.add(back)
    assert win.other_accounts_before(now, MAX_LOOKBACK) == (back,)
    # Seen from savings:13, the client's other account is savings:12.
    later = make_tx(account_id="savings:13", occurred_at=T0 + timedelta(days=4))
    win.add(later)
    assert win.other_accounts_before(later, MAX_LOOKBACK) == (*on12, now)


def test_state_shards_stay_synchronous_actors() -> None:
    # Ray runs a caller's calls to a synchronous actor in the order they were made, and does
    # not for an async one (any coroutine method makes the actor async): batches in flight
    # together must be observed in the order sent, or a view can miss an earlier batch.
    import inspect

    from actors.factory import StateShard

    coroutines = [
        name
        for name, fn in inspect.getmembers(StateShard, inspect.isfunction)
        if inspect.iscoroutinefunction(fn)
    ]
    assert coroutines == []
