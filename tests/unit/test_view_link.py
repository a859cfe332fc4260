"""Views over a link (``actors.view_link``): each transaction crosses once, and every view comes
back exact whatever the order of replies; lost replies, shard restarts and reloaded windows
fail only the batches they concern, and the link recovers."""

from __future__ import annotations

import asyncio
import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from actors.view_link import LinkBroken, LinkedViews, StaleReply, ViewLink, ViewSender
from aml.domain import Transaction
from tests.factories import make_tx

Views = Sequence[Sequence[Transaction]]


def _txs(n: int) -> list[Transaction]:
    return [make_tx(id=f"t{i}", dedupe_key=f"t{i}", amount_minor=100 + i) for i in range(n)]


def _wire(reply: LinkedViews) -> LinkedViews:
    """What crossing a process boundary does to the reply (copies, not the shard's objects)."""
    out = pickle.loads(pickle.dumps(reply))
    assert isinstance(out, LinkedViews)
    return out


def _same(got: Sequence[tuple[Transaction, ...]], want: Views) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)  # field by field: the description marks reloaded copies


def _ask(sender: ViewSender, link: ViewLink, views: Views) -> tuple[object, LinkedViews]:
    ticket, link_id = link.request()
    return ticket, _wire(sender.encode(link_id, views))


async def _round(sender: ViewSender, link: ViewLink, views: Views) -> LinkedViews:
    ticket, reply = _ask(sender, link, views)
    _same(await link.receive(ticket, reply), views)  # type: ignore[arg-type]
    return reply


async def test_each_transaction_crosses_once() -> None:
    txs = _txs(200)
    rng = random.Random(1)
    sender, link = ViewSender(), ViewLink()
    sent = 0
    for _ in range(50):
        views = [tuple(rng.sample(txs, rng.randrange(0, 12))) for _ in range(30)]
        sent += len((await _round(sender, link, views)).new)
    # 50 x 30 views of up to 11 transactions each name every one of the 200 many times over.
    assert sent == len(txs)
    assert link.held == len(txs)


async def test_the_callers_own_transactions_never_come_back() -> None:
    earlier = _txs(3)
    batch = [make_tx(id=f"b{i}", dedupe_key=f"b{i}") for i in range(4)]
    sender, link = ViewSender(), ViewLink()
    await _round(sender, link, [tuple(earlier)])
    # The shard observed its own copies of the batch (unpickled from what the caller sent).
    observed = [pickle.loads(pickle.dumps(t)) for t in batch]
    views = [(*earlier, observed[0]), (observed[0], observed[2]), ()]
    ticket, link_id = link.request()
    reply = _wire(sender.encode(link_id, views, observed))
    assert reply.new == []  # named by the slots both sides gave the batch
    got = await link.receive(ticket, reply, batch)  # type: ignore[arg-type]
    _same(got, views)
    assert got[1][0] is batch[0]  # the caller's own object
    # Later batches name them by those slots too.
    reply = await _round(sender, link, [(observed[3], earlier[1])])
    assert reply.new == []


async def test_a_transaction_named_twice_in_one_reply_crosses_once() -> None:
    a, b = _txs(2)
    reply = await _round(ViewSender(), ViewLink(), [(a, b), (a,), (), (b, a)])
    assert [t.id for t in reply.new] == ["t0", "t1"]


async def test_a_reply_that_arrives_early_waits_for_the_ones_before_it() -> None:
    a, b = _txs(2)
    sender, link = ViewSender(), ViewLink()
    t1, first = _ask(sender, link, [(a,)])
    t2, second = _ask(sender, link, [(a, b)])
    assert [t.id for t in second.new] == ["t1"]  # names ``a`` by the slot the first carried
    early = asyncio.create_task(link.receive(t2, second))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not early.done()
    _same(await link.receive(t1, first), [(a,)])  # type: ignore[arg-type]
    _same(await early, [(a, b)])


async def test_a_reloaded_copy_is_sent_under_a_new_slot() -> None:
    a, b = _txs(2)
    sender, link = ViewSender(capacity=1), ViewLink()
    await _round(sender, link, [(a,)])
    reloaded = a.replace(description="from the store")  # same id, another object
    reply = await _round(sender, link, [(reloaded,)])
    assert len(reply.new) == 1
    # The old copy's slot ages out like any other (capacity 1).
    reply = await _round(sender, link, [(b, reloaded)])
    assert len(reply.forget) == 1 and [t.id for t in reply.new] == ["t1"]
    assert link.held == 2


async def test_two_copies_of_one_transaction_each_cross_once() -> None:
    # An account's and a client's window loaded from the store each hold their own copy.
    (a,) = _txs(1)
    other = pickle.loads(pickle.dumps(a))
    sender, link = ViewSender(), ViewLink()
    sent = 0
    for _ in range(5):
        sent += len((await _round(sender, link, [(a,), (other,)])).new)
    assert sent == 2


async def test_a_lost_reply_fails_the_ones_waiting_for_it_and_a_new_link_recovers() -> None:
    txs = _txs(3)
    sender, link = ViewSender(), ViewLink()
    lost, _ = _ask(sender, link, [tuple(txs)])
    t2, second = _ask(sender, link, [tuple(txs)])
    waiting = asyncio.create_task(link.receive(t2, second))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    link.failed(lost)  # type: ignore[arg-type]
    with pytest.raises(LinkBroken):
        await waiting
    reply = await _round(sender, link, [tuple(txs)])  # a new link: everything again
    assert len(reply.new) == 3


async def test_a_restarted_shard_sends_everything_again_and_its_predecessor_is_stale() -> None:
    txs = _txs(5)
    first, link = ViewSender(), ViewLink()
    await _round(first, link, [tuple(txs)])
    t_gap, _ = _ask(first, link, [tuple(txs)])  # answered, never delivered: the shard died
    t_old, old_reply = _ask(first, link, [tuple(txs)])
    waiting = asyncio.create_task(link.receive(t_old, old_reply))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    restarted = ViewSender()
    reply = await _round(restarted, link, [tuple(txs)])
    assert reply.seq == 0 and len(reply.new) == 5
    with pytest.raises(StaleReply):  # its predecessor will never come
        await waiting
    late_ticket, late = _ask(first, link, [tuple(txs)])
    with pytest.raises(StaleReply):
        await link.receive(late_ticket, late)  # type: ignore[arg-type]
    # Stale replies do not drop the link: the restarted shard names what it sent by slot.
    assert (await _round(restarted, link, [tuple(txs)])).new == []
    del t_gap


async def test_a_slot_never_received_breaks_the_link() -> None:
    txs = _txs(3)
    sender, link = ViewSender(), ViewLink()
    await _round(sender, link, [tuple(txs)])
    ticket, reply = _ask(sender, link, [tuple(txs)])
    ticket.mirrors[reply.epoch].slots.clear()  # type: ignore[attr-defined]
    with pytest.raises(LinkBroken):
        await link.receive(ticket, reply)  # type: ignore[arg-type]
    assert len((await _round(sender, link, [tuple(txs)])).new) == 3


async def test_capacity_bounds_what_both_sides_hold() -> None:
    txs = _txs(500)
    rng = random.Random(3)
    sender, link = ViewSender(capacity=50), ViewLink()
    for _ in range(100):
        await _round(sender, link, [tuple(rng.sample(txs, 5)) for _ in range(4)])
        assert link.held <= 50 + 20
    assert sender.stats()["slots"] <= 50 + 20


@dataclass
class _Call:
    ticket: object
    reply: LinkedViews
    views: Views
    own: list[Transaction]
    excused: bool = False  # a loss or restart happened while it was in flight
    lost: bool = False
    task: asyncio.Task[list[tuple[Transaction, ...]]] | None = field(default=None)


@pytest.mark.parametrize("seed", range(8))
async def test_random_interleavings_give_exact_views(seed: int) -> None:
    """Replies delivered in any order, some lost, the shard restarting, windows reloaded as
    new copies, and a small capacity so slots are forgotten all the time: every reply resolves
    exactly, or fails only when a loss or restart happened while it was in flight."""
    rng = random.Random(seed)
    current = {t.id: t for t in _txs(80)}
    made = 0
    sender, link = ViewSender(capacity=rng.choice([10, 40, 1_000])), ViewLink()
    calls: list[_Call] = []
    undelivered: list[_Call] = []
    for step in range(800):
        roll = rng.random()
        if roll < 0.45 or roll >= 0.98 or not undelivered:
            # A batch: some new transactions the shard observes (its own copies), which the
            # views may name at once, beside earlier ones.
            own = [
                make_tx(id=f"n{made + j}", dedupe_key=f"n{made + j}")
                for j in range(rng.randrange(0, 4))
            ]
            made += len(own)
            observed = [pickle.loads(pickle.dumps(t)) for t in own]
            current.update((t.id, t) for t in observed)
            ids = list(current)
            views = [
                tuple(current[i] for i in rng.sample(ids, rng.randrange(0, 8)))
                for _ in range(rng.randrange(1, 6))
            ]
            ticket, link_id = link.request()
            reply = _wire(sender.encode(link_id, views, observed))
            call = _Call(ticket, reply, views, own)
            calls.append(call)
            undelivered.append(call)
        elif roll < 0.88:
            call = undelivered.pop(rng.randrange(len(undelivered)))
            call.task = asyncio.create_task(link.receive(call.ticket, call.reply, call.own))  # type: ignore[arg-type]
        elif roll < 0.9:
            call = undelivered.pop(rng.randrange(len(undelivered)))
            call.lost = True
            link.failed(call.ticket)  # type: ignore[arg-type]
            for other in calls:
                if other.ticket is call.ticket:
                    other.excused = True
        elif roll < 0.97:
            t = current[rng.choice(list(current))]
            current[t.id] = t.replace(description=f"reloaded at {step}")
        elif roll < 0.98:
            sender = ViewSender(capacity=sender.capacity)
            for other in calls:
                if other.task is None or not other.task.done():
                    other.excused = True
        await asyncio.sleep(0)
    for call in undelivered:
        call.task = asyncio.create_task(link.receive(call.ticket, call.reply, call.own))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    for call in undelivered:  # what is still waiting after all were delivered never resolves
        if call.task is not None and not call.task.done():
            assert call.excused
            call.task.cancel()
    exact = 0
    for call in calls:
        if call.lost:
            continue
        assert call.task is not None
        try:
            got = await call.task
        except (LinkBroken, asyncio.CancelledError):
            assert call.excused
            continue
        _same(got, call.views)
        exact += 1
    assert exact >= 10  # not vacuous: many resolve despite the trouble
