"""Per-customer windows: exact point-in-time contexts, equal to ``aml.history.build_context``."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from actors.customer_state import (
    CustomerState,
    LocalContextBuilder,
    ShardState,
    TransferGraph,
    WindowKey,
    route,
    shard_of,
)
from aml.domain import Direction, Transaction, TransactionType
from aml.history import MAX_LOOKBACK, build_context
from tests.factories import T0, make_tx

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
    txs = [make_tx(account_id=f"savings:{i}") for i in range(3)]
    plan = route(txs, 1)[0]
    need = shard.missing(plan)
    assert {r.key.name for r in need} == {"savings:0", "savings:1", "savings:2"}
    for req in need:
        shard.load(req, [t for t in txs if t.account_id == req.key.name])
    shard.answer(plan)
    # Only two windows fit: the least recently used one was dropped and must be rebuilt.
    assert len(shard.windows) == 2
    again = shard.missing(route([make_tx(account_id="savings:0")], 1)[0])
    assert [r.key.name for r in again] == ["savings:0"]


def test_late_event_beyond_memory_triggers_a_rebuild_of_its_window() -> None:
    shard = ShardState(late_slack=timedelta(hours=1))
    recent = make_tx(occurred_at=T0 + timedelta(days=20))
    (req,) = shard.missing(route([recent], 1)[0])
    shard.load(req, [recent])
    shard.answer(route([recent], 1)[0])
    late = make_tx(occurred_at=T0 + timedelta(days=10))
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


def test_graph_gives_point_in_time_neighbourhood_across_accounts() -> None:
    def transfer(src: str, dst: str, minute: int) -> Transaction:
        return make_tx(
            account_id=src,
            counterparty_account_id=dst,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            occurred_at=T0 + timedelta(minutes=minute),
        )

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
