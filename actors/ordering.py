"""Batches observed by the state actors in the order their sender handed them over.

A sender (the ingress's hand-off, one per process) may have several pipeline calls in flight,
and Serve's router does not keep their order: measured in the scoring benchmark, a batch
handed over second often reached the rule replica, and so the shards, first. Its transactions
were then decided without the earlier batch's in their history (a burst split across the two
batches was seen in part), and the decisions depended on which call won the race.

Each batch therefore carries a :class:`BatchOrder`, the sender's id and the batch's number in
hand-over order. A state actor admits a sender's batch only after that sender's previous one
(:class:`OrderGate`); an early batch is answered "not yet" at once (the actor never blocks, so
the batch it waits for can get through) and its caller asks again after a short wait
(:func:`admitted`). A predecessor that never comes (its call failed for good: its transactions
stay pending for the sweeper) holds the batches after it for :data:`ORDER_WAIT_S` at most:
then the caller insists and the gate moves past the gap. A batch sent again (a retry after the
actor already observed it) is admitted at once: observing is idempotent. Each batch also says
which of its sender's batches were still unfinished when it was handed over, so an actor that
restarted (or never saw the sender) knows where the sequence stood then; only a batch whose
predecessor was observed by the previous incarnation and finished meanwhile (it is not sent
again) waits out :data:`ORDER_WAIT_S`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aml.domain import fast_pickle

_T = TypeVar("_T")

# The longest a batch waits for its sender's previous batch before it is observed anyway.
ORDER_WAIT_S = 1.0
# First pause before asking again, doubled up to the cap.
FIRST_RETRY_S = 0.002
MAX_RETRY_S = 0.05
# Senders remembered per actor (the least recently seen is forgotten: its next batch is then
# taken as a new sender's).
DEFAULT_MAX_SENDERS = 1024


@fast_pickle
@dataclass(frozen=True, slots=True)
class BatchOrder:
    """A batch's place in its sender's sequence.

    ``seq`` counts the sender's batches from 0 in hand-over order; ``since`` is the oldest of
    its batches still unfinished when this one was handed over (every batch before it was
    decided or failed for good), so an actor that never saw the sender, or restarted, knows
    where its sequence stands.
    """

    sender: str
    seq: int
    since: int


class OrderStamp:
    """A sender's side: numbers its batches and knows which are unfinished."""

    def __init__(self, sender: str | None = None) -> None:
        self.sender = sender or uuid.uuid4().hex
        self._seq = 0
        self._open: set[int] = set()

    def next(self) -> BatchOrder:
        """The order of the batch handed over now (call :meth:`done` when it has finished)."""
        seq = self._seq
        self._seq += 1
        self._open.add(seq)
        return BatchOrder(self.sender, seq, min(self._open))

    def done(self, order: BatchOrder) -> None:
        """The batch was decided, or failed for good."""
        self._open.discard(order.seq)


class OrderGate:
    """A state actor's side: which batch of each sender comes next."""

    def __init__(self, max_senders: int = DEFAULT_MAX_SENDERS) -> None:
        self.max_senders = max_senders
        self._next: OrderedDict[str, int] = OrderedDict()
        self.held = 0  # "not yet" answers given (stats, tests)
        self.skipped = 0  # batches admitted past a gap

    def admit(self, order: BatchOrder | None, *, insist: bool = False) -> bool:
        """Whether the batch may be observed now (and, if so, it counts as observed).

        ``None`` (an unordered caller) is always admitted. A batch is admitted when every
        batch of its sender before it was admitted here or had finished when it was handed
        over (``since``); a batch sent again or late is admitted at once. ``insist``: the
        caller has waited long enough; admit it and move past whatever is missing before it.
        """
        if order is None:
            return True
        nxt = self._expected(order)
        if order.seq > nxt:
            if not insist:
                self.held += 1
                return False
            self.skipped += 1
        self._next[order.sender] = max(nxt, order.seq + 1)
        self._next.move_to_end(order.sender)
        while len(self._next) > self.max_senders:
            self._next.popitem(last=False)
        return True

    def run(self, order: BatchOrder | None, insist: bool, work: Callable[[], _T]) -> _T | None:
        """``work()`` (the observation) once the batch is admitted, ``None`` when it is not.

        A ``work`` that raises puts the sender back where it was: the batch was not observed
        after all (a store read failed, say), and the sender's later batches wait for its
        retry as they waited for this call.
        """
        position = self._next.get(order.sender) if order is not None else None
        if not self.admit(order, insist=insist):
            return None
        try:
            return work()
        except BaseException:
            if order is not None:
                if position is None:
                    self._next.pop(order.sender, None)
                else:
                    self._next[order.sender] = position
            raise

    def ready(self, order: BatchOrder | None) -> bool:
        """Whether :meth:`admit` would admit the batch now (nothing changes)."""
        return order is None or order.seq <= self._expected(order)

    def _expected(self, order: BatchOrder) -> int:
        """The sender's batch to observe next, as far as this gate and ``order`` know."""
        nxt = self._next.get(order.sender)
        return order.since if nxt is None or order.since > nxt else nxt

    def stats(self) -> dict[str, int]:
        return {
            "order_senders": len(self._next),
            "order_held": self.held,
            "order_skipped": self.skipped,
        }


async def admitted(
    call: Callable[[bool], Awaitable[_T | None]],
    ready: Callable[[], Awaitable[bool]],
    *,
    wait_s: float = ORDER_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
) -> _T:
    """Make ``call(insist)`` until it returns a reply (``None`` means "not yet": the actor
    awaits the sender's previous batch).

    After a "not yet", ``ready()`` (a call that carries no batch: the batch is not sent again
    and again) is asked after growing pauses until the turn has come, then the call is made
    again; after ``wait_s`` the call insists and is answered.
    """
    reply = await call(False)
    if reply is not None:
        return reply
    deadline = clock() + wait_s
    pause = FIRST_RETRY_S
    while True:
        await asyncio.sleep(pause)
        pause = min(2 * pause, MAX_RETRY_S)
        insist = clock() >= deadline
        if insist or await ready():
            reply = await call(insist)
            if reply is not None:
                return reply
            if insist:
                raise RuntimeError("a state actor refused a batch it was told to admit")
