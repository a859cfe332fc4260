"""Views from a state shard to one caller, each transaction sent to that caller once.

A shard answers every batch with the views of its items: the transactions before each one in
its windows. On the scoring benchmark's stream a batch of 2,048 names 9,562 distinct earlier
transactions, and each of them is named again by the batches that follow (a transaction sits in
its account's, its counterparty's, its agent's and its client's windows for days): pickled whole
every time, the same transactions crossed from the shard to the rule replica several times
over, and rebuilding them on arrival was a quarter of the replica's CPU.

A *link* is the pair (caller, shard). Over a link the shard sends a transaction once, under a
*slot* number, and from then on names it by slot; the caller keeps the slots it was sent:

* The shard numbers its replies on the link (``seq``) in the order it answers them, and the
  caller applies them in that order, whatever the order in which its concurrent batches get
  them back: a reply that arrives early waits for the ones before it. A reply may therefore
  name any slot an earlier reply carried.
* The caller's own batch needs no sending back: the shard gives the transactions it observed
  from the batch the next slots in batch order, and so does the caller, which has them.
* The shard keeps at most ``capacity`` slots per link; the oldest are dropped, and the reply
  that drops them lists them in ``forget`` (applied in order, nothing later names them). Slots
  go by object: a transaction the shard holds as another object (a window loaded from the
  store) has its own slot, and the caller gets that object.
* A view continues the previous view of the same window (its *view key*: the role and the
  window the shard answered it from) over the link: a window moving on drops a few records at
  its front and gains a few at its end, so the reply says how many of the previous view's
  records to drop and keep and names only the rest by slot. Both sides keep each key's last
  view; the shard keeps at most ``capacity`` records in them (the least recently used keys go,
  and the reply lists their numbers in ``drop``). A busy account's view of 40 records was 40
  slots in every reply: encoding, pickling and resolving them were most of the link's cost.
* A reply that never reaches the caller (the call failed or the batch was cancelled) would
  hold back every later one, so the caller then drops the link: the replies waiting on it fail
  (their batches are retried, and observing a batch twice changes nothing) and later batches
  use a new link, over which the shard sends everything again. A shard that restarts has a new
  ``epoch`` and no links, and starts numbering again; the previous incarnation's replies still
  waiting fail the same way.

Pure Python, no Ray: ``actors.factory`` runs the sending side in the shard actors and the
receiving side in :class:`~actors.factory.ShardedState`.
"""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from aml.domain import Transaction
from aml.history import continuation

# Slots a shard keeps per link (and the caller holds as objects, per shard). About a minute of
# 2,000 transactions/s over two shards (each transaction takes a slot on every shard it is
# observed on): a view naming a transaction whose slot was dropped sends it again, and with
# 50,000 a busy account's minute-old records crossed the link again and again (see
# docs/operating.md).
DEFAULT_LINK_CAPACITY = 150_000
# Links a shard keeps (one per caller: rule replicas, and each one's restarts).
MAX_LINKS = 8
# Seconds a link may go unused before the shard drops it (its caller is gone, or idle).
IDLE_LINK_S = 600.0
# Numbers per item in ``LinkedViews.heads``: view number, records of the previous view dropped,
# records kept, slots that follow.
_HEAD = 4


class LinkBroken(RuntimeError):
    """A reply cannot be resolved on its link (the link is dropped; retry the batch)."""


class StaleReply(LinkBroken):
    """A reply from a shard incarnation that has been replaced (retry the batch; the link
    itself is fine)."""


def _load_linked(data: bytes) -> LinkedViews:
    return LinkedViews(*pickle.loads(data))


@dataclass(frozen=True, slots=True)
class LinkedViews:
    """A shard's answer over a link.

    Attributes:
        epoch: the shard's incarnation (ordered by start time).
        seq: this reply's number on the link (0, 1, ... per epoch).
        own_base: slot of the first of the caller's own transactions (see ``ViewSender.encode``):
            the ``j``-th has slot ``own_base + j``.
        base: slot of ``new[0]``; ``new[j]`` has slot ``base + j``.
        new: transactions sent in this reply.
        forget: slots the caller deletes after applying this reply.
        heads: the items' views, in item order, four numbers each: its view number (-1: none
            kept), how many records of that number's previous view to drop and then keep, and
            how many of ``slots`` follow them (the view is the kept records, then those slots'
            transactions).
        slots: the slots the views name beyond what they keep, in item order.
        drop: view numbers the caller forgets after applying this reply.
    """

    epoch: str
    seq: int
    own_base: int
    base: int
    new: list[Transaction]
    forget: list[int]
    heads: array[int]
    slots: array[int]
    drop: list[int]

    def __reduce__(self) -> tuple[Any, ...]:
        # One blob with the standard pickler (see aml.domain.PackedList).
        fields = (
            self.epoch,
            self.seq,
            self.own_base,
            self.base,
            self.new,
            self.forget,
            self.heads,
            self.slots,
            self.drop,
        )
        return _load_linked, (pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL),)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()


class _Sender:
    """The shard's side of one link.

    Slots go by object, not by transaction id: windows loaded from the store hold their own
    copies (an account's and a client's window each load one), and keyed by id two copies
    named in turn would each replace the other's slot and be sent again every time. The
    objects are held here, so an identity is never reused while its slot lives (nor while a
    kept view holds it).
    """

    __slots__ = (
        "_held",
        "_next_slot",
        "_next_view",
        "_order",
        "_slot_of",
        "_view_records",
        "_views",
        "capacity",
        "seq",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seq = -1
        self._next_slot = 0
        self._slot_of: dict[int, int] = {}  # id(object) -> slot
        self._held: dict[int, Transaction] = {}  # id(object) -> object
        self._order: deque[int] = deque()  # the same ids, oldest first
        # view key -> (view number, the last view sent under it), least recently used first (a
        # plain dict: a key used is popped and put back at the end, cheaper than an OrderedDict)
        self._views: dict[Hashable, tuple[int, tuple[Transaction, ...]]] = {}
        self._view_records = 0  # records in the kept views (plus one per view)
        self._next_view = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def _add(self, tx: Transaction, slot: int, forget: list[int]) -> None:
        key = id(tx)
        old = self._slot_of.get(key)
        if old is None:
            self._held[key] = tx
            self._order.append(key)
        else:  # registered before under another slot (keeps its place in the order)
            forget.append(old)
        self._slot_of[key] = slot

    def encode(
        self,
        epoch: str,
        views: Sequence[Sequence[Transaction]],
        own: Sequence[Transaction],
        keys: Sequence[Hashable] | None,
    ) -> LinkedViews:
        self.seq += 1
        slot_of, held, order = self._slot_of, self._held, self._order
        forget: list[int] = []
        # Dropped before encoding, so neither this reply nor a later one names them.
        while len(order) > self.capacity:
            gone = order.popleft()
            forget.append(slot_of.pop(gone))
            del held[gone]
        # The caller's own transactions: it holds them already, under the same slots.
        own_base = self._next_slot
        for j, tx in enumerate(own):
            self._add(tx, own_base + j, forget)
        base = next_slot = own_base + len(own)
        new: list[Transaction] = []
        heads: list[int] = []
        head = heads.extend
        named: list[int] = []
        name = named.extend
        get = slot_of.get
        kept = self._views
        records = self._view_records
        for i, view in enumerate(views):
            number, dropped, same = -1, 0, 0
            if keys is not None:
                view_key = keys[i]
                last = kept.pop(view_key, None)
                if last is None:
                    number = self._next_view
                    self._next_view += 1
                else:
                    number, prev = last
                    records -= len(prev) + 1
                    run = continuation(prev, view)  # None beyond MAX_DROPPED: named by slots
                    if run is not None:
                        dropped, same = run
                # Kept as a tuple: a view the caller changed afterwards would no longer be what
                # the other side holds.
                kept[view_key] = (number, view if type(view) is tuple else tuple(view))
                records += len(view) + 1
            rest = view[same:] if same else view
            if not rest:
                head((number, dropped, same, 0))
                continue
            known = tuple(map(get, map(id, rest)))
            if None in known:
                slots = []
                for tx, slot in zip(rest, known, strict=True):
                    if slot is None:
                        slot = get(id(tx))  # sent earlier in this same reply
                        if slot is None:
                            slot = next_slot
                            next_slot += 1
                            self._add(tx, slot, forget)
                            new.append(tx)
                    slots.append(slot)
                known = tuple(slots)
            head((number, dropped, same, len(known)))
            name(known)  # type: ignore[arg-type]
        # The least recently used views go last: none this reply continued is dropped before
        # the caller has applied it.
        drop: list[int] = []
        if records > self.capacity:
            oldest = []
            for view_key, (number, prev) in kept.items():
                if records <= self.capacity:
                    break
                oldest.append(view_key)
                records -= len(prev) + 1
                drop.append(number)
            for view_key in oldest:
                del kept[view_key]
        self._view_records = records
        self._next_slot = next_slot
        return LinkedViews(
            epoch, self.seq, own_base, base, new, forget, array("q", heads), array("q", named), drop
        )

    def views(self) -> int:
        return len(self._views)


class ViewSender:
    """The shard's side of every link to it (bounded: the least recently used links go, and
    links unused for ``idle_s``).

    A link's slots and kept views keep their transactions alive in the shard. Rule replicas
    come and go (autoscaling, restarts), and each new one opens a link: an idle link is
    dropped rather than held until eight newer ones push it out. A caller that comes back over
    a dropped link gets a reply it cannot place, drops the link and retries on a new one.
    """

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_LINK_CAPACITY,
        max_links: int = MAX_LINKS,
        idle_s: float = IDLE_LINK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Incarnations order by start time (a restart is seconds after its predecessor's start).
        self.epoch = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.capacity = capacity
        self.max_links = max_links
        self.idle_s = idle_s
        self._clock = clock
        self._links: OrderedDict[str, _Sender] = OrderedDict()
        self._used: dict[str, float] = {}  # link -> when it was last used

    def encode(
        self,
        link: str,
        views: Sequence[Sequence[Transaction]],
        own: Sequence[Transaction] = (),
        keys: Sequence[Hashable] | None = None,
    ) -> LinkedViews:
        """The views as the next reply over ``link`` (a link id this shard has not seen starts
        a new link).

        ``own``: the transactions of the caller's batch that this shard observed, each once, in
        batch order; the caller lists the same ones (it has them: it sent them) and gives them
        the same slots, so a view naming one never sends it back. ``keys``: each view's view
        key (the role and window it was answered from); a view continues its key's previous
        one over the link. Without keys every view is named by slots alone.
        """
        now = self._clock()
        sender = self._links.get(link)
        if sender is None:
            sender = self._links[link] = _Sender(self.capacity)
        else:
            self._links.move_to_end(link)
        self._used[link] = now
        # Least recently used first: the idle ones, then any beyond the bound.
        for old in list(self._links):
            if old == link or (
                len(self._links) <= self.max_links and now - self._used[old] <= self.idle_s
            ):
                break
            del self._links[old], self._used[old]
        return sender.encode(self.epoch, views, own, keys)

    def stats(self) -> dict[str, int]:
        return {
            "links": len(self._links),
            "slots": sum(len(s) for s in self._links.values()),
            "views": sum(s.views() for s in self._links.values()),
        }


Views = list[tuple[Transaction, ...]]


class _Mirror:
    """The caller's slots and kept views from one shard epoch, and the replies waiting for
    their turn."""

    __slots__ = ("kept", "next_seq", "slots", "waiting")

    def __init__(self) -> None:
        self.slots: dict[int, Transaction] = {}
        self.kept: dict[int, tuple[Transaction, ...]] = {}  # view number -> last view
        self.next_seq = 0
        self.waiting: dict[
            int, tuple[LinkedViews, Sequence[Transaction], asyncio.Future[Views]]
        ] = {}

    def apply(self, reply: LinkedViews, own: Sequence[Transaction]) -> Views:
        slots = self.slots
        base = reply.own_base
        for j, tx in enumerate(own):
            slots[base + j] = tx
        base = reply.base
        for j, tx in enumerate(reply.new):
            slots[base + j] = tx
        kept = self.kept
        heads = reply.heads.tolist()
        if len(heads) % _HEAD:
            raise LinkBroken(f"reply {reply.seq} is malformed")
        try:
            # Every slot resolved in one pass (in C), then cut per view.
            named = list(map(slots.__getitem__, reply.slots.tolist()))
        except KeyError as exc:
            raise LinkBroken(f"reply {reply.seq} names slot {exc}, not held here") from exc
        views: Views = []
        append = views.append
        pos = 0
        quads = zip(heads[0::4], heads[1::4], heads[2::4], heads[3::4], strict=True)
        for number, dropped, same, k in quads:
            if same:
                prev = kept.get(number)
                if prev is None or dropped + same > len(prev):
                    raise LinkBroken(f"reply {reply.seq} keeps records view {number} lacks")
                view = prev[dropped : dropped + same]
                if k:
                    view += tuple(named[pos : pos + k])
            else:
                view = tuple(named[pos : pos + k]) if k else ()
            pos += k
            if number >= 0:
                kept[number] = view
            append(view)
        if pos != len(named):
            raise LinkBroken(f"reply {reply.seq} is malformed")
        for slot in reply.forget:
            slots.pop(slot, None)
        for number in reply.drop:
            kept.pop(number, None)
        self.next_seq = reply.seq + 1
        return views

    def fail(self, error: LinkBroken) -> None:
        for _, _, future in self.waiting.values():
            if not future.done():
                future.set_exception(error)
        self.waiting.clear()


class _Generation:
    """One link id and the mirrors of the shard epochs seen over it."""

    __slots__ = ("dead", "epoch", "link", "mirrors")

    def __init__(self) -> None:
        self.link = uuid.uuid4().hex
        self.epoch: str | None = None
        self.mirrors: dict[str, _Mirror] = {}
        self.dead = False

    def kill(self, why: str) -> None:
        self.dead = True
        for mirror in self.mirrors.values():
            mirror.fail(LinkBroken(why))

    def _mirror(self, epoch: str) -> _Mirror:
        mirror = self.mirrors.get(epoch)
        if mirror is not None:
            return mirror
        if self.epoch is not None and epoch < self.epoch:
            raise StaleReply("a reply from a shard incarnation since replaced")
        # A restarted shard: what the previous incarnation has not answered by now, it never
        # will (the calls were retried on this one), so its waiting replies cannot complete.
        for old in self.mirrors.values():
            old.fail(StaleReply("the shard restarted"))
        mirror = _Mirror()
        self.mirrors = {epoch: mirror}
        self.epoch = epoch
        return mirror

    async def receive(self, reply: LinkedViews, own: Sequence[Transaction]) -> Views:
        if self.dead:
            raise LinkBroken("the link was dropped")
        mirror = self._mirror(reply.epoch)
        if reply.seq != mirror.next_seq:
            if reply.seq < mirror.next_seq or reply.seq in mirror.waiting:
                raise LinkBroken(f"reply {reply.seq} seen twice")
            future: asyncio.Future[Views] = asyncio.get_running_loop().create_future()
            mirror.waiting[reply.seq] = (reply, own, future)
            return await future
        try:
            views = mirror.apply(reply, own)
            while mirror.next_seq in mirror.waiting:
                nxt, nxt_own, future = mirror.waiting.pop(mirror.next_seq)
                views_next = mirror.apply(nxt, nxt_own)  # applied even if its batch was cancelled
                if not future.done():
                    future.set_result(views_next)
        except LinkBroken as exc:
            self.kill(str(exc))
            raise
        return views


class ViewLink:
    """The caller's side of its link to one shard.

    Usage: ``ticket, link_id = link.request()``; the id goes with the call, and the reply is
    turned back into views with ``await link.receive(ticket, reply)``. A call that will never
    deliver its reply (it failed, or its batch was cancelled) must be reported with
    ``link.failed(ticket)``: later calls then use a new link.
    """

    def __init__(self) -> None:
        self._gen = _Generation()

    def request(self) -> tuple[_Generation, str]:
        """A ticket (kept by the caller) and the link id sent with the call."""
        return self._gen, self._gen.link

    async def receive(
        self, ticket: _Generation, reply: LinkedViews, own: Sequence[Transaction] = ()
    ) -> Views:
        """The views of ``reply``, as transactions (after every earlier reply on the link);
        ``own``: the batch's transactions the shard observed, as the shard lists them (see
        :meth:`ViewSender.encode`).

        Raises:
            LinkBroken: the reply cannot be resolved (its link was dropped, an earlier reply
                will never come, or it names a slot never received); retry the batch.
        """
        try:
            return await ticket.receive(reply, own)
        except StaleReply:
            raise
        except LinkBroken:
            self.failed(ticket)
            raise

    def failed(self, ticket: _Generation) -> None:
        """The call made with ``ticket`` delivers no reply: the link is dropped."""
        ticket.kill("an earlier reply on the link was lost")
        if ticket is self._gen:
            self._gen = _Generation()

    @property
    def held(self) -> int:
        """Transactions held for the current link."""
        return sum(len(m.slots) for m in self._gen.mirrors.values())
