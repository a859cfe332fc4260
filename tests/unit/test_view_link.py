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

from actors.view_link import (
    LinkBroken,
    LinkedViews,
    StaleReply,
    ViewLink,
    ViewSender,
)
from aml.domain import Transaction
from aml.history import MAX_DROPPED
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


async def _keyed(
    sender: ViewSender, link: ViewLink, views: Sequence[Sequence[Transaction]], keys: list[int]
) -> LinkedViews:
    ticket, link_id = link.request()
    reply = _wire(sender.encode(link_id, views, (), keys))
    got = await link.receive(ticket, reply)  # type: ignore[arg-type]
    _same(got, views)
    return reply


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


async def test_idle_links_and_links_beyond_the_bound_go_and_their_callers_recover() -> None:
    txs = _txs(6)
    now = [0.0]
    sender = ViewSender(max_links=3, idle_s=600.0, clock=lambda: now[0])
    gone, busy = ViewLink(), ViewLink()
    await _round(sender, gone, [tuple(txs)])
    for step in range(1, 8):
        now[0] = 100.0 * step
        await _round(sender, busy, [tuple(txs[:step])])
    assert sender.stats()["links"] == 1  # the first caller's link went idle at 700 s
    # It comes back: its reply cannot be placed, and the next link starts over.
    ticket, reply = _ask(sender, gone, [tuple(txs)])
    with pytest.raises(LinkBroken):
        await gone.receive(ticket, reply)  # type: ignore[arg-type]
    assert len((await _round(sender, gone, [tuple(txs)])).new) == 6
    # No more than three links, the least recently used out first.
    others = [ViewLink() for _ in range(3)]
    for link in others:
        await _round(sender, link, [tuple(txs[:2])])
    assert sender.stats()["links"] == 3
    ticket, reply = _ask(sender, busy, [tuple(txs[:2])])  # its link was among the dropped
    with pytest.raises(LinkBroken):
        await busy.receive(ticket, reply)  # type: ignore[arg-type]
    assert len((await _round(sender, busy, [tuple(txs[:2])])).new) == 2


async def test_capacity_bounds_what_both_sides_hold() -> None:
    txs = _txs(500)
    rng = random.Random(3)
    sender, link = ViewSender(capacity=50), ViewLink()
    for _ in range(100):
        await _round(sender, link, [tuple(rng.sample(txs, 5)) for _ in range(4)])
        assert link.held <= 50 + 20
    assert sender.stats()["slots"] <= 50 + 20


async def test_a_moving_window_names_only_what_it_gained() -> None:
    txs = _txs(300)
    sender, link = ViewSender(), ViewLink()
    first = await _keyed(sender, link, [tuple(txs[0:100])], [7])
    assert len(first.slots) == 100
    # The window moves on: three records out at the front, five in at the end.
    reply = await _keyed(sender, link, [tuple(txs[3:105])], [7])
    assert list(reply.slots) == list(range(100, 105))  # only the five, sent once each
    assert list(reply.heads) == [0, 3, 97, 5]
    # Another key over the same window keeps its own previous view.
    reply = await _keyed(sender, link, [tuple(txs[3:105]), tuple(txs[5:106])], [8, 7])
    assert len(reply.slots) == 102 + 1


async def test_a_view_list_changed_after_it_was_sent_does_not_change_what_was_sent() -> None:
    txs = _txs(40)
    sender, link = ViewSender(), ViewLink()
    window = list(txs[:20])
    await _keyed(sender, link, [window], [3])
    window[5] = txs[30]  # the list, reused: the caller still holds the record it was sent
    await _keyed(sender, link, [(*window, txs[20])], [3])


async def test_two_views_of_one_key_in_a_reply_continue_each_other() -> None:
    txs = _txs(60)
    sender, link = ViewSender(), ViewLink()
    reply = await _keyed(
        sender, link, [tuple(txs[:40]), tuple(txs[:41]), tuple(txs[2:45])], [1] * 3
    )
    assert len(reply.slots) == 40 + 1 + 4


async def test_a_view_that_does_not_continue_the_last_is_named_again() -> None:
    txs = _txs(200)
    sender, link = ViewSender(), ViewLink()
    await _keyed(sender, link, [tuple(txs[:40])], [1])
    # A late arrival among the latest records: the shared run ends there.
    late = (*txs[:30], txs[70], *txs[30:41])
    reply = await _keyed(sender, link, [late], [1])
    assert list(reply.heads)[1:] == [0, 30, 12]
    # A window rebuilt from the store: other objects, nothing continues.
    reloaded = tuple(t.replace(description="from the store") for t in late)
    reply = await _keyed(sender, link, [reloaded], [1])
    assert list(reply.heads)[1:] == [0, 0, 42] and len(reply.new) == 42
    # Starting further into the last view than a window drops between two views: in full.
    long = tuple(txs[: MAX_DROPPED + 20])
    await _keyed(sender, link, [long], [2])
    reply = await _keyed(sender, link, [long[MAX_DROPPED + 1 :]], [2])
    assert list(reply.heads)[1:] == [0, 0, 19]
    # An earlier transaction's view of the same window: a shorter run, nothing named.
    reply = await _keyed(sender, link, [long[MAX_DROPPED + 1 : -1]], [2])
    assert list(reply.heads)[1:] == [0, 18, 0]


async def test_view_numbers_shared_by_different_windows_stay_exact() -> None:
    # A number names a likely continuation only (a window's number may come back for
    # another): the identity check decides.
    a, b = _txs(40), [make_tx(id=f"b{i}", dedupe_key=f"b{i}") for i in range(40)]
    sender, link = ViewSender(), ViewLink()
    for step in range(6):
        await _keyed(sender, link, [tuple(a[step : 20 + step]), tuple(b[step : 20 + step])], [5, 5])


async def test_kept_views_are_bounded_on_both_sides() -> None:
    txs = _txs(400)
    rng = random.Random(5)
    sender, link = ViewSender(capacity=60), ViewLink()
    for step in range(200):
        keys = rng.sample(range(30), 4)
        views = [tuple(txs[k * 10 + step % 7 : k * 10 + step % 7 + 9]) for k in keys]
        await _keyed(sender, link, views, keys)
        kept = link._gen.mirrors[sender.epoch].kept  # type: ignore[attr-defined]
        assert sender.stats()["views"] == len(kept)
        assert sum(len(v) + 1 for v in kept.values()) <= 60


async def test_a_reply_keeping_what_the_caller_lacks_breaks_the_link() -> None:
    txs = _txs(30)
    sender, link = ViewSender(), ViewLink()
    await _keyed(sender, link, [tuple(txs[:20])], [1])
    ticket, link_id = link.request()
    reply = _wire(sender.encode(link_id, [tuple(txs[1:21])], (), [1]))
    ticket.mirrors[reply.epoch].kept.clear()  # type: ignore[attr-defined]
    with pytest.raises(LinkBroken):
        await link.receive(ticket, reply)  # type: ignore[arg-type]
    # A new link: everything named again, nothing kept from the old one.
    reply = await _keyed(sender, link, [tuple(txs[2:22])], [1])
    assert len(reply.slots) == 20 and len(reply.new) == 20


@dataclass
class _Call:
    ticket: object
    reply: LinkedViews
    views: Views
    own: list[Transaction]
    excused: bool = False  # a loss or restart happened while it was in flight
    lost: bool = False
    task: asyncio.Task[list[tuple[Transaction, ...]]] | None = field(default=None)


def _window_views(
    rng: random.Random, windows: dict[int, list[str]], current: dict[str, Transaction]
) -> tuple[list[tuple[Transaction, ...]], list[int]]:
    """Views as shards answer them: each a run of one window's records (ids in ``windows``,
    objects as ``current`` holds them now), from a moving start to the window's end or a little
    before it; keys mostly the window's, sometimes another window's (a number come back)."""
    views, keys = [], []
    for _ in range(rng.randrange(1, 6)):
        key = rng.choice(list(windows))
        ids = windows[key]
        lo = rng.randrange(0, max(1, len(ids) // 3))
        hi = len(ids) - (rng.randrange(0, 3) if rng.random() < 0.2 else 0)
        views.append(tuple(current[i] for i in ids[lo:hi]))
        keys.append(key if rng.random() < 0.9 else rng.choice(list(windows)))
    return views, keys


def _move_windows(
    rng: random.Random, windows: dict[int, list[str]], new_ids: Sequence[str], all_ids: list[str]
) -> None:
    """Records join windows (mostly at the end, sometimes late, among the latest), and the
    oldest leave."""
    for tx_id in (*new_ids, *rng.sample(all_ids, min(2, len(all_ids)))):
        ids = windows[rng.choice(list(windows))]
        if tx_id in ids:
            continue
        if ids and rng.random() < 0.1:
            ids.insert(len(ids) - rng.randrange(0, min(4, len(ids)) + 1), tx_id)
        else:
            ids.append(tx_id)
    for ids in windows.values():
        if len(ids) > 30 and rng.random() < 0.5:
            del ids[: rng.randrange(1, 4)]


@pytest.mark.parametrize("keyed", [False, True], ids=["slots", "keyed"])
@pytest.mark.parametrize("seed", range(8))
async def test_random_interleavings_give_exact_views(seed: int, keyed: bool) -> None:
    """Replies delivered in any order, some lost, the shard restarting, windows reloaded as
    new copies, and a small capacity so slots are forgotten all the time: every reply resolves
    exactly, or fails only when a loss or restart happened while it was in flight. ``keyed``:
    views are moving windows continuing earlier ones (with late arrivals, shorter views and
    numbers that name another window), as the shards answer them."""
    rng = random.Random(seed)
    current = {t.id: t for t in _txs(80)}
    windows: dict[int, list[str]] = {k: [] for k in range(6)}
    _move_windows(rng, windows, list(current), list(current))
    made = 0
    sender, link = ViewSender(capacity=rng.choice([10, 40, 1_000])), ViewLink()
    continued = 0
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
            keys: list[int] | None = None
            if keyed:
                _move_windows(rng, windows, [t.id for t in observed], ids)
                views, keys = _window_views(rng, windows, current)
            else:
                views = [
                    tuple(current[i] for i in rng.sample(ids, rng.randrange(0, 8)))
                    for _ in range(rng.randrange(1, 6))
                ]
            ticket, link_id = link.request()
            reply = _wire(sender.encode(link_id, views, observed, keys))
            continued += sum(reply.heads[2::4])
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
    if keyed:
        assert continued > 1_000  # records kept from earlier views rather than named
