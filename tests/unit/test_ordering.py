"""Batches of one sender observed in hand-over order (actors.ordering), without Ray."""

from __future__ import annotations

import asyncio
import pickle
from datetime import timedelta

import pytest

from actors.factory import StateShard
from actors.ordering import BatchOrder, OrderGate, OrderStamp, admitted
from actors.view_link import ViewLink
from tests.factories import T0, make_tx


def test_stamp_numbers_batches_and_names_the_oldest_unfinished() -> None:
    stamp = OrderStamp("ingress-1")
    a, b, c = stamp.next(), stamp.next(), stamp.next()
    assert [(o.seq, o.since) for o in (a, b, c)] == [(0, 0), (1, 0), (2, 0)]
    stamp.done(b)
    assert stamp.next().since == 0  # a is still running
    stamp.done(a)
    assert stamp.next().since == 2  # c is the oldest unfinished
    assert {o.sender for o in (a, b, c)} == {"ingress-1"}
    assert OrderStamp().sender != OrderStamp().sender
    assert pickle.loads(pickle.dumps(c)) == c


def test_gate_admits_a_senders_batches_in_order_only() -> None:
    gate = OrderGate()
    stamp = OrderStamp()
    first, second, third = stamp.next(), stamp.next(), stamp.next()
    # The first batch seen starts where its "since" says: the sequence's start here.
    assert not gate.admit(third)
    assert not gate.admit(second)
    assert not gate.ready(second)
    assert gate.admit(first)
    assert gate.ready(second) and not gate.ready(third)
    assert gate.admit(second)
    assert gate.admit(third)
    assert gate.stats() == {"order_senders": 1, "order_held": 2, "order_skipped": 0}
    # Sent again (a retry after the actor observed it) or unordered: admitted at once.
    assert gate.admit(first)
    assert gate.admit(None) and gate.ready(None)


def test_gate_keeps_senders_apart() -> None:
    gate = OrderGate()
    a, b = OrderStamp("a"), OrderStamp("b")
    a0, a1 = a.next(), a.next()
    b0, b1 = b.next(), b.next()
    assert gate.admit(b0) and gate.admit(b1)
    assert not gate.admit(a1)
    assert gate.admit(a0) and gate.admit(a1)


def test_a_batch_handed_over_after_its_predecessor_finished_does_not_wait() -> None:
    """The predecessor failed for good (its transactions stay pending): the next batch says
    so, and the gate moves on without a wait; an actor that restarted picks the sequence up
    where the sender's "since" says."""
    stamp = OrderStamp()
    gate = OrderGate()
    zero, lost = stamp.next(), stamp.next()
    assert gate.admit(zero)
    stamp.done(zero)
    stamp.done(lost)  # never reached this actor
    after = stamp.next()
    assert after.since == 2
    assert gate.admit(after)
    assert gate.stats()["order_skipped"] == 0
    fresh = OrderGate()  # a restarted actor
    running, later = stamp.next(), stamp.next()
    assert not fresh.admit(later)
    assert not fresh.admit(running)  # "after" had not finished: it may still come
    assert fresh.admit(after)
    assert fresh.admit(running) and fresh.admit(later)
    # Handed over once the batches before it finished: admitted at once by a new actor.
    for order in (after, running, later):
        stamp.done(order)
    assert OrderGate().admit(stamp.next())


def test_insisting_moves_past_a_gap() -> None:
    gate = OrderGate()
    stamp = OrderStamp()
    zero, gap, two = stamp.next(), stamp.next(), stamp.next()
    assert gate.admit(zero)
    assert not gate.admit(two)
    assert gate.admit(two, insist=True)
    assert gate.stats()["order_skipped"] == 1
    assert gate.admit(gap)  # late: admitted, nothing waits for it any more
    assert gate.ready(stamp.next())


def test_gate_forgets_the_least_recently_seen_sender() -> None:
    gate = OrderGate(max_senders=2)
    for name in ("a", "b", "c"):
        assert gate.admit(BatchOrder(name, 5, 5))
    assert gate.stats()["order_senders"] == 2
    # "a" was forgotten: its next batch starts where its "since" says.
    assert gate.admit(BatchOrder("a", 9, 9))
    assert not gate.admit(BatchOrder("c", 7, 6))


class _Actor:
    """An actor answering "not yet" until ``opens`` turns, as a state actor's gate does."""

    def __init__(self, opens: int) -> None:
        self.opens = opens
        self.calls: list[bool] = []
        self.polls = 0

    async def call(self, insist: bool) -> str | None:
        self.calls.append(insist)
        return "views" if insist or self.polls >= self.opens else None

    async def ready(self) -> bool:
        self.polls += 1
        return self.polls >= self.opens


async def test_admitted_polls_without_the_batch_until_its_turn() -> None:
    actor = _Actor(opens=3)
    assert await admitted(actor.call, actor.ready, wait_s=5.0) == "views"
    # Sent once, refused; asked three times without it; sent again and answered.
    assert actor.calls == [False, False]
    assert actor.polls == 3


async def test_admitted_insists_after_the_wait() -> None:
    actor = _Actor(opens=10**6)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await admitted(actor.call, actor.ready, wait_s=0.05) == "views"
    assert actor.calls[-1] is True and actor.calls.count(True) == 1
    assert loop.time() - started >= 0.05


async def test_admitted_raises_when_an_insisting_call_is_refused() -> None:
    async def refuse(insist: bool) -> None:
        return None

    async def never() -> bool:
        return False

    with pytest.raises(RuntimeError, match="refused"):
        await admitted(refuse, never, wait_s=0.0)


def test_state_shard_observes_an_early_batch_only_in_its_turn() -> None:
    """The shard's gate answers before anything is observed or sent over the link."""
    shard = StateShard(None, "unused")
    link = ViewLink()
    _, link_id = link.request()
    stamp = OrderStamp()
    first_order, second_order = stamp.next(), stamp.next()
    earlier = make_tx(account_id="savings:1", occurred_at=T0)
    later = make_tx(account_id="savings:1", occurred_at=T0 + timedelta(minutes=5))
    assert shard.observe_transactions([later], 0, 1, link_id, second_order) is None
    assert not shard.turn(second_order)
    assert shard.stats()["windows"] == 0 and shard.stats()["slots"] == 0
    first = shard.observe_transactions([earlier], 0, 1, link_id, first_order)
    assert first is not None and shard.turn(second_order)
    second = shard.observe_transactions([later], 0, 1, link_id, second_order)
    assert second is not None
    views = asyncio.run(_receive(link, [(first, [earlier]), (second, [later])]))
    # The later transaction's account view holds the earlier one.
    assert earlier in views[1][0]
    assert shard.stats()["order_held"] == 1


async def _receive(link: ViewLink, replies: list[tuple[object, list[object]]]) -> list[object]:
    ticket, _ = link.request()
    return [await link.receive(ticket, reply, own) for reply, own in replies]  # type: ignore[arg-type]


def test_a_batch_whose_observation_failed_is_waited_for_again() -> None:
    """The gate counts a batch as observed only once its call succeeded: the batches after a
    failed one wait for its retry, not just for its first attempt."""
    shard = StateShard(None, "unused")
    _, link_id = ViewLink().request()
    stamp = OrderStamp()
    first_order, second_order = stamp.next(), stamp.next()
    earlier = make_tx(account_id="savings:1", occurred_at=T0)

    def broken(items: object) -> object:
        raise OSError("store unreachable")

    shard.state.answer_keyed = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        shard.observe_transactions([earlier], 0, 1, link_id, first_order)
    assert not shard.turn(second_order)
    del shard.state.answer_keyed  # the retry finds the store back
    assert shard.observe_transactions([earlier], 0, 1, link_id, first_order) is not None
    assert shard.turn(second_order)


def test_gate_runs_the_observation_in_turn_and_forgets_a_failed_one() -> None:
    gate = OrderGate()
    stamp = OrderStamp("s")
    zero, one = stamp.next(), stamp.next()
    assert gate.run(one, False, lambda: "views") is None  # not its turn: not run

    def fail() -> str:
        raise OSError("store unreachable")

    with pytest.raises(OSError):
        gate.run(zero, False, fail)
    assert not gate.ready(one)  # the sender is where it was: "zero" is awaited again
    assert gate.run(zero, False, lambda: "views") == "views"
    assert gate.ready(one)
    with pytest.raises(OSError):
        gate.run(one, False, fail)
    assert gate.run(one, False, lambda: "again") == "again"
    assert gate.run(None, False, lambda: "unordered") == "unordered"
