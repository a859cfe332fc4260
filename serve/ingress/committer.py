"""Durable acknowledgement with group commit.

Requests put a ``Submission`` (the ``ingest_log`` record plus the transaction it became, if any)
on a queue and wait for its ``Ack``. A flusher task takes up to ``batch_max`` submissions (waiting
at most ``batch_wait`` for more), writes ONE unordered bulk insert into ``transactions`` and one
into ``ingest_log``, then resolves every waiting request; up to ``max_in_flight`` such batches are
written at once. A request is answered 2xx only after that write succeeded, or after the batch
was ``fsync``-ed to the spool when the store is down.

Duplicates are detected per document by the unique ``(tenant, dedupe_key)`` index and inside a
batch before writing, so the same hook delivered N times yields one transaction and one hand-off.

While the store is unreachable (or falling behind) every batch goes to the spool; a drainer
retries the store with back-off and replays the spool in order, always before anything newer
reaches the store: once little is left to replay, new events wait for that rest (in memory) and
then go straight to the store again. A process started with a non-empty spool drains it before it
accepts new events.

Acknowledgements come first: a replay batch costs this process decoding, encoding and a hand-off
to scoring, and sets the store and the scorers to work, all competing with the requests being
answered. While acks come from the spool, the drainer therefore replays only when the event loop
has time to spare (its lag, measured every few milliseconds, is within a budget), and at least
one batch every ``replay_max_defer`` seconds so that decisions never stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pymongo
from pymongo.errors import ConnectionFailure, PyMongoError

from aml.domain import IngestOutcome, IngestRecord, Transaction, TransactionStatus
from aml.errors import ServiceUnavailable
from serve.ingress.handoff import HandoffDispatcher
from serve.ingress.spool import Spool
from serve.metrics import IngressMetrics
from storage.codec import from_doc, to_doc
from storage.store import Store

log = logging.getLogger(__name__)

_SPOOL_FORMAT = 2


@dataclass(frozen=True, slots=True)
class Submission:
    """One received event: its log record (raw body, parser outcome) and its transaction."""

    record: IngestRecord
    transaction: Transaction | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """What the sender is told once its event is durable.

    An event acknowledged from the spool (``spooled``) carries the parser's outcome: whether it
    duplicates an earlier one is only known when it is replayed, and is then recorded in
    ``ingest_log``.
    """

    outcome: IngestOutcome
    transaction_id: str | None
    record_id: str
    spooled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the 200 response."""
        body: dict[str, Any] = {
            "status": self.outcome.value,
            "transaction_id": self.transaction_id,
            "event_id": self.record_id,
        }
        if self.spooled:
            body["spooled"] = True
        return body


class LoopLag:
    """How late the event loop runs timers: the largest lag of the last ``window`` ticks.

    A tick sleeps ``tick`` seconds and records how much longer it took; a loop busy with
    requests (or starved of CPU) shows as lag before its senders time out.
    """

    def __init__(self, tick: float = 0.01, window: int = 20) -> None:
        self._tick = tick
        self._samples: list[float] = [0.0] * window
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    @property
    def recent(self) -> float:
        """Largest lag (seconds) of the last ticks."""
        return max(self._samples)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._tick)
            self._samples[self._next] = max(0.0, loop.time() - started - self._tick)
            self._next = (self._next + 1) % len(self._samples)


@dataclass(slots=True)
class _Waiting:
    submission: Submission
    future: asyncio.Future[Ack]
    queued_at: float  # loop time of ``submit``


# --- spool (de)serialisation ------------------------------------------------------------------
# Format 2 (written): the store's own documents, which the spool keeps as BSON. Format 1 (read
# only, spools left by earlier releases): JSON with tagged datetimes, decimals and bytes.


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$dt":
                return datetime.fromisoformat(inner)
            if tag == "$date":
                return date.fromisoformat(inner)
            if tag == "$dec":
                return Decimal(inner)
            if tag == "$b64":
                return base64.b64decode(inner)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def submissions_to_payload(subs: Sequence[Submission]) -> dict[str, Any]:
    """A batch as one spool record: the documents the store would be given."""
    items = [
        {
            "record": to_doc(s.record),
            "transaction": to_doc(s.transaction) if s.transaction else None,
        }
        for s in subs
    ]
    return {"v": _SPOOL_FORMAT, "items": items}


def payload_to_submissions(payload: Mapping[str, Any]) -> list[Submission]:
    """The batch of one spool record (either format)."""
    read: Callable[[Any], Any] = _from_json if payload.get("v") == 1 else _as_is
    subs = []
    for item in payload.get("items", []):
        record = from_doc(IngestRecord, read(item["record"]))
        tx_doc = item.get("transaction")
        tx = from_doc(Transaction, read(tx_doc)) if tx_doc else None
        subs.append(Submission(record=record, transaction=tx))
    return subs


def _as_is(value: Any) -> Any:
    return value


def _stored_by(sub: Submission, existing: Transaction, origin: str | None) -> bool:
    """Whether ``existing`` was stored from the delivery ``sub`` (by an interrupted replay of
    it). Documents stored by releases that did not keep the delivery's record are recognised
    by transaction id and receive time instead, which a redelivery received in the same
    millisecond would also match."""
    if origin is not None:
        return origin == sub.record.id
    tx = sub.transaction
    # BSON dates keep milliseconds only.
    return (
        tx is not None
        and existing.id == tx.id
        and abs((existing.received_at - tx.received_at).total_seconds()) < 0.001
    )


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended. A cancellation that lands inside a driver
    call can be swallowed there (the drainer pings and writes through pymongo), so it is
    repeated until the task is done."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class Committer:
    """Group commit of received events to the store, with the spool as fallback.

    Args:
        store: the store written to.
        spool: local durable fallback.
        metrics: the ingress metrics.
        dispatcher: hands newly accepted transactions to scoring in the background.
        on_stored: called with every newly stored transaction (e.g. enrichment); must not block.
        batch_max: most events per group commit.
        batch_wait: how long the flusher waits for more events after the first one (seconds).
        write_timeout: deadline of one store write (seconds); beyond it the batch is spooled.
        retry_initial / retry_max: back-off of the drainer while the store is down (seconds).
        overload_ack: a batch whose oldest event waited longer than this (seconds) for its
            store write to finish means the store cannot keep up; new events are then
            acknowledged from the spool (fsync, a few ms) while the drainer feeds the backlog to
            the store in large batches. It is the wait since the event was queued for its
            commit, not the write's own length, so it also catches a store that keeps each
            write short but falls behind with many of them (a process that is itself behind
            delays requests before they are queued: that is not counted). Half a second
            by default: the spool's replays cost the ingress and the store more work, so spooling
            during a burst the store could still take directly decided fewer hooks (offered
            2,000/s on two cores: about 1,860/s decided during the burst with 250 ms, 1,930/s and
            nothing spooled with 500 ms).
        overload_queue: likewise when more events than this wait for the flusher (default
            ``4 * batch_max``).
        replay_max: most events per store write when draining the spool.
        replay_timeout: deadline of one replay write (seconds). No sender waits on a replay, so
            it is generous: a replay cut short by a tight deadline would be retried forever.
        catch_up_bytes: once no more than this is left in the spool, new events wait (in
            memory, at most ``overload_ack``) while the drainer replays the rest, then go
            straight to the store; a batch that waited that long is spooled after all, and the
            next attempt backs off (``retry_initial`` doubling up to ``catch_up_max``).
        max_in_flight: most group commits written at once (None: chosen at start for the
            server, see ``_commits_in_flight``).
        replay_lag_budget: while acks come from the spool, a replay batch waits until the
            event loop's lag (:class:`LoopLag`) is within this (seconds).
        replay_max_defer: ... but no longer than this (seconds): decisions keep coming, at
            one replay batch per this period at least.
        calm_after: a store that was written to directly for this long (seconds) after a
            catch-up counts as recovered. An overload sooner than that means the catch-up was
            premature (the machine is past what the store can take directly): acks stay on
            the spool for the current back-off before the next catch-up, and the back-off
            doubles up to ``catch_up_max``. Going back and forth costs the senders of every
            switch a quarter of a second or more; staying on the spool costs them an fsync.
        catch_up_max: longest wait between catch-ups under a sustained overload (seconds).
    """

    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        metrics: IngressMetrics,
        dispatcher: HandoffDispatcher,
        on_stored: Callable[[Sequence[Transaction]], None] | None = None,
        batch_max: int = 256,
        batch_wait: float = 0.004,
        write_timeout: float = 2.0,
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
        overload_ack: float = 0.5,
        overload_queue: int | None = None,
        replay_max: int = 512,
        replay_timeout: float = 60.0,
        catch_up_bytes: int = 1 << 20,
        max_in_flight: int | None = None,
        calm_after: float = 10.0,
        catch_up_max: float = 60.0,
        replay_lag_budget: float = 0.05,
        replay_max_defer: float = 5.0,
    ) -> None:
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._dispatcher = dispatcher
        self._on_stored = on_stored
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._write_timeout = write_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._overload_ack = overload_ack
        self._overload_queue = overload_queue if overload_queue is not None else 4 * batch_max
        self._replay_max = replay_max
        self._replay_timeout = max(replay_timeout, write_timeout)
        self._catch_up_bytes = catch_up_bytes
        self._max_in_flight = None if max_in_flight is None else max(1, max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._spool_mode = False
        # Set while the drainer replays the last, small part of the spool: new batches wait for
        # it (in memory, for a bounded time) instead of being spooled, then go to the store.
        self._finishing = False
        self._caught_up = asyncio.Event()
        # After a catch-up was given up (the store still behind), the next one waits this long,
        # doubling up to ``retry_max``: under a sustained overload each attempt cost the
        # batches of that moment the whole ack budget before they were spooled anyway.
        self._catch_up_backoff = retry_initial
        self._next_catch_up = 0.0
        self._calm_after = calm_after
        self._catch_up_max = max(catch_up_max, retry_initial)
        self._left_spool_at = float("-inf")  # loop time spool mode last ended
        self._lag = LoopLag()
        self._replay_lag_budget = replay_lag_budget
        self._replay_max_defer = replay_max_defer
        self._drain_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._indexes_ready = False

    @property
    def store_available(self) -> bool:
        """False while events are being acknowledged from the spool."""
        return not self._spool_mode

    async def start(self, *, drain_timeout: float = 10.0) -> None:
        """Start the flusher and the drainer; a non-empty spool is drained first (bounded by
        ``drain_timeout``; if the store is still down, acks continue from the spool)."""
        reachable = await self._ensure_indexes()
        if self._max_in_flight is None:
            self._max_in_flight = await self._commits_in_flight() if reachable else 1
        if not reachable:
            log.warning("store unreachable at start; acknowledging from the spool")
            self._spool_mode = True
        elif not await asyncio.to_thread(self._spool.is_empty):
            log.info("spool holds events from a previous run; draining before accepting new ones")
            self._spool_mode = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._try_drain(), drain_timeout)
            if self._spool_mode:
                log.warning("store unreachable at start; acknowledging from the spool")
        self._update_gauges()
        self._lag.start()
        self._flusher = asyncio.get_running_loop().create_task(self._run_flusher())
        self._drainer = asyncio.get_running_loop().create_task(self._run_drainer())
        if self._spool_mode:
            self._drain_wanted.set()

    async def _commits_in_flight(self) -> int:
        """Group commits to write at once when none was configured: 1 on the embedded store,
        which runs one write command at a time per database (a second commit in flight only
        waits there, and splits what would have been one larger commit, while each commit costs
        it about 0.8 ms of CPU whatever its size: ``bench/results/store-writes-*.json``); 2 on
        MongoDB, which writes them side by side; 1 when the server cannot be asked."""
        try:
            with pymongo.timeout(max(self._write_timeout, 5.0)):
                return 1 if await self._store.is_embedded() else 2
        except PyMongoError as exc:
            log.warning("could not tell which store this is (%s); one group commit at a time", exc)
            return 1

    async def close(self) -> None:
        """Flush what is queued, stop the tasks and wait for hand-offs in flight."""
        if self._flusher is not None:
            await self._queue.join()  # everything queued is answered before stopping
            await stop_task(self._flusher)
        if self._drainer is not None:
            await stop_task(self._drainer)
        await self._lag.stop()
        await self._dispatcher.wait_idle()
        await asyncio.to_thread(self._spool.close)

    async def submit(self, submission: Submission) -> Ack:
        """Queue one event and wait until it is durable.

        Raises:
            ServiceUnavailable: neither the store nor the spool could take it.
        """
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(submission, future, asyncio.get_running_loop().time()))
        return await future

    async def submit_many(self, submissions: Sequence[Submission]) -> list[Ack]:
        """Queue several events (e.g. a sweep) and wait until all are durable."""
        return list(await asyncio.gather(*(self.submit(s) for s in submissions)))

    # --- flusher -----------------------------------------------------------------------------

    async def _run_flusher(self) -> None:
        # Up to ``max_in_flight`` batches are written at once: the next batch is encoded and
        # sent while the store works on the previous one, and it gathers whatever arrived
        # meanwhile. Duplicates across batches in flight are still caught by the unique index
        # (the store applies one write command at a time).
        slots = asyncio.Semaphore(self._max_in_flight or 1)  # chosen by start()
        while True:
            first = await self._queue.get()
            await slots.acquire()
            if self._queue.qsize() < self._batch_max - 1 and self._batch_wait > 0:
                await asyncio.sleep(self._batch_wait)  # let concurrent requests join the batch
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            task = asyncio.get_running_loop().create_task(self._flush_guarded(batch, slots))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _flush_guarded(self, batch: list[_Waiting], slots: asyncio.Semaphore) -> None:
        try:
            await self._flush(batch)
        except Exception as exc:  # never leave a request hanging
            log.exception("group commit failed unexpectedly")
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(
                        ServiceUnavailable("event could not be stored", reason=type(exc).__name__)
                    )
        finally:
            slots.release()
            for _ in batch:
                self._queue.task_done()

    async def _flush(self, batch: list[_Waiting]) -> None:
        self._metrics.batch_size.observe(len(batch))
        subs = [w.submission for w in batch]
        while True:
            async with self._lock:
                if not self._spool_mode:
                    break
                if not self._finishing:
                    await self._spool_batch(batch)
                    return
                caught_up = self._caught_up
            # The spool's tail is being replayed; wait for it, but no longer than senders may
            # wait: a store that is still behind sends this batch (and later ones) to the spool.
            try:
                await asyncio.wait_for(caught_up.wait(), self._overload_ack)
            except TimeoutError:
                async with self._lock:
                    if self._finishing:
                        self._finishing = False
                        caught_up.set()  # the other waiting batches decide again too
                        now = asyncio.get_running_loop().time()
                        self._back_off_catch_up(now)
        started = time.perf_counter()
        try:
            acks, new = await self._store_batch(subs, replay=False)
        except PyMongoError as exc:
            self._metrics.store_failures.inc()
            log.warning(
                "store write failed (%s: %s); acknowledging from the spool",
                type(exc).__name__,
                exc,
            )
            async with self._lock:
                self._spool_mode = True
                await self._spool_batch(batch)
            self._drain_wanted.set()
            return
        elapsed = time.perf_counter() - started
        self._metrics.store_write.observe(elapsed)
        for w, ack in zip(batch, acks, strict=True):
            if not w.future.done():
                w.future.set_result(ack)
        self._after_stored(new)
        backlog = self._queue.qsize()
        waited = asyncio.get_running_loop().time() - min(w.queued_at for w in batch)
        if waited > self._overload_ack or backlog > self._overload_queue:
            # Fineract gives up after 10 s and never retries: keep acks fast by spooling while
            # the drainer catches the store up (the store is up, so it starts at once).
            self._metrics.store_overloads.inc()
            async with self._lock:
                if not self._spool_mode:
                    now = asyncio.get_running_loop().time()
                    if now - self._left_spool_at < self._calm_after:
                        self._back_off_catch_up(now)  # the last catch-up was premature
                    else:
                        self._catch_up_backoff = self._retry_initial
                    log.warning(
                        "store cannot keep up (events waited %.0f ms for a write of %.0f ms, %d "
                        "queued); acknowledging from the spool, next catch-up in %.1f s at the "
                        "earliest",
                        waited * 1000,
                        elapsed * 1000,
                        backlog,
                        max(0.0, self._next_catch_up - now),
                    )
                self._spool_mode = True
                self._update_gauges()
            self._drain_wanted.set()

    def _back_off_catch_up(self, now: float) -> None:
        """Put the next catch-up off by the current back-off, and double it."""
        self._next_catch_up = now + self._catch_up_backoff
        self._catch_up_backoff = min(self._catch_up_backoff * 2, self._catch_up_max)

    async def _spool_batch(self, batch: list[_Waiting]) -> None:
        payload = submissions_to_payload([w.submission for w in batch])
        try:
            await asyncio.to_thread(self._spool.append, payload)
        except OSError as exc:
            log.critical("spool write failed (%s); %d events NOT acknowledged", exc, len(batch))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(
                        ServiceUnavailable("event could not be stored", reason="spool_unwritable")
                    )
            return
        self._metrics.spooled_events.inc(len(batch))
        self._update_gauges()
        for w in batch:
            sub = w.submission
            ack = Ack(
                outcome=sub.record.outcome,
                transaction_id=sub.transaction.id if sub.transaction else None,
                record_id=sub.record.id,
                spooled=True,
            )
            if not w.future.done():
                w.future.set_result(ack)

    def _after_stored(self, new: list[Transaction]) -> None:
        if not new:
            return
        to_score = [t for t in new if t.status is TransactionStatus.PENDING]
        self._dispatcher.dispatch(to_score)
        if self._on_stored is not None:
            try:
                self._on_stored(new)
            except Exception:
                log.exception("post-store callback failed")

    # --- the one place that writes a batch -------------------------------------------------------

    async def _store_batch(
        self, subs: Sequence[Submission], *, replay: bool
    ) -> tuple[list[Ack], list[Transaction]]:
        """Write one batch: transactions (deduplicated), then the ingest log.

        Returns the ack of every submission and the transactions stored by this call.
        """
        deadline = self._replay_timeout if replay else self._write_timeout
        first_of: dict[tuple[str, str], int] = {}
        batch_dup_of: dict[int, int] = {}
        to_insert: list[int] = []
        for i, sub in enumerate(subs):
            tx = sub.transaction
            if tx is None:
                continue
            key = (tx.tenant, tx.dedupe_key)
            if key in first_of:
                batch_dup_of[i] = first_of[key]
            else:
                first_of[key] = i
                to_insert.append(i)

        with pymongo.timeout(deadline):
            result = await self._store.transactions.insert_many(
                [subs[i].transaction for i in to_insert],  # type: ignore[misc]
                ingest_ids=[subs[i].record.id for i in to_insert],
            )
        stored_now = {to_insert[p] for p in result.inserted}
        # Already stored before this call: the id that was stored, and whether it is this very
        # event from an earlier, interrupted replay (then it counts as accepted, not duplicate).
        existing_id: dict[int, str] = {}
        ours: set[int] = set()
        dup_keys: dict[str, list[str]] = {}  # tenant -> dedupe keys, one read per tenant
        for p in result.duplicates:
            tx = subs[to_insert[p]].transaction
            assert tx is not None
            dup_keys.setdefault(tx.tenant, []).append(tx.dedupe_key)
        stored: dict[tuple[str, str], tuple[Transaction, str | None]] = {}
        for tenant, keys in dup_keys.items():
            with pymongo.timeout(deadline):
                found = await self._store.transactions.stored_from_many(tenant, keys)
            stored.update({(tenant, k): v for k, v in found.items()})
        for p in result.duplicates:
            i = to_insert[p]
            tx = subs[i].transaction
            assert tx is not None
            got = stored.get((tx.tenant, tx.dedupe_key))
            if got is None:  # deleted in between: nothing to point at
                existing_id[i] = tx.id
                continue
            existing, origin = got
            existing_id[i] = existing.id
            if replay and _stored_by(subs[i], existing, origin):
                ours.add(i)

        acks: list[Ack] = []
        records: list[IngestRecord] = []
        new: list[Transaction] = []
        for i, sub in enumerate(subs):
            rec = sub.record
            tx = sub.transaction
            outcome = rec.outcome
            tx_id: str | None = None
            if tx is not None:
                if i in stored_now or i in ours:
                    tx_id = tx.id
                    if i in stored_now and rec.outcome is IngestOutcome.ACCEPTED:
                        new.append(tx)  # corrections and failed attempts are not new money
                elif i in existing_id:
                    outcome, tx_id = IngestOutcome.DUPLICATE, existing_id[i]
                else:
                    first = batch_dup_of[i]
                    outcome = IngestOutcome.DUPLICATE
                    tx_id = existing_id.get(first, subs[first].transaction.id)  # type: ignore[union-attr]
            final = dataclasses.replace(rec, outcome=outcome, transaction_id=tx_id)
            records.append(final)
            acks.append(Ack(outcome=outcome, transaction_id=tx_id, record_id=rec.id))

        with pymongo.timeout(deadline):
            await self._store.ingest_log.insert_many(records)  # idempotent on the record id
        for sub, ack in zip(subs, acks, strict=True):
            self._metrics.events.labels(source=sub.record.source, outcome=ack.outcome.value).inc()
        return acks, new

    # --- drainer -----------------------------------------------------------------------------

    async def _ensure_indexes(self) -> bool:
        # The unique (tenant, dedupe_key) index is what makes duplicates and replays harmless:
        # nothing is written before it exists.
        if self._indexes_ready:
            return True
        try:
            with pymongo.timeout(max(self._write_timeout, 5.0)):
                await self._store.ensure_indexes()
        except PyMongoError as exc:
            log.warning("cannot ensure indexes (%s)", type(exc).__name__)
            return False
        self._indexes_ready = True
        return True

    async def store_reachable(self) -> bool:
        """Whether the store answers a ping within the write timeout."""
        return await self._store_reachable()

    async def _store_reachable(self) -> bool:
        try:
            with pymongo.timeout(self._write_timeout):
                await self._store.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def _run_drainer(self) -> None:
        while True:
            await self._drain_wanted.wait()
            self._drain_wanted.clear()  # a request made while draining is served by this drain
            delay = self._retry_initial
            while not await self._try_drain():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _try_drain(self) -> bool:
        """Replay the spool into the store. True when the spool is empty and events go straight
        to the store again; False when the store failed (retry later).

        Once what is left to replay is small (``catch_up_bytes``), new events stop going to the
        spool: they wait in memory while that last part is replayed, then go straight to the
        store. Under a steady load the spool would otherwise never be found empty and every event
        would stay on the slower path (spooled, then replayed) long after the store caught up.
        """
        drained = False
        try:
            drained = await self._replay_spool()
        finally:
            if not drained and self._finishing:  # release the waiting batches: they spool
                self._finishing = False
                self._caught_up.set()
        return drained

    async def _replay_spool(self) -> bool:
        if not await self._store_reachable() or not await self._ensure_indexes():
            return False
        while True:
            hold = 0.0
            async with self._lock:
                if self._spool_mode and not self._finishing:
                    await asyncio.to_thread(self._spool.rotate)
                segments = await asyncio.to_thread(self._spool.closed_segments)
                now = asyncio.get_running_loop().time()
                if not segments and self._spool_mode and now < self._next_catch_up:
                    # Overloaded again soon after the last catch-up: acks stay on the spool
                    # until the back-off ends, even when the drainer has emptied it.
                    hold = min(self._next_catch_up - now, 0.1)
                elif not segments:
                    if self._spool_mode:
                        self._spool_mode = False
                        self._finishing = False
                        self._caught_up.set()
                        self._left_spool_at = now
                        log.info("spool drained; events go straight to the store again")
                    self._update_gauges()
                    return True
                if self._spool_mode and not self._finishing and now >= self._next_catch_up:
                    backlog = await asyncio.to_thread(self._spool.pending_bytes)
                    if backlog <= self._catch_up_bytes:
                        # Nothing more is appended: the batches that arrive meanwhile wait for
                        # this last replay, so the spool is still replayed before anything newer.
                        self._finishing = True
                        self._caught_up.clear()
                        log.info(
                            "store caught up; replaying the last %d bytes of the spool before "
                            "new events go straight to it",
                            backlog,
                        )
            if hold:
                await asyncio.sleep(hold)
                continue
            for segment in segments:
                contents = await asyncio.to_thread(self._spool.read_segment, segment)
                for subs in self._replay_batches(contents.records):
                    await self._yield_to_acks()
                    try:
                        _acks, new = await self._store_batch(subs, replay=True)
                    except ConnectionFailure:
                        return False
                    except PyMongoError as exc:
                        if getattr(exc, "timeout", False):
                            return False
                        moved = await asyncio.to_thread(self._spool.quarantine, segment)
                        log.error(
                            "store refuses spooled events (%s); segment moved to %s", exc, moved
                        )
                        break
                    self._metrics.replayed_events.inc(len(subs))
                    self._after_stored(new)
                else:
                    await asyncio.to_thread(self._spool.remove, segment)
                self._update_gauges()

    async def _yield_to_acks(self) -> None:
        """While acks come from the spool, wait until the event loop has time to spare for the
        next replay batch (at most ``replay_max_defer``). Not while the last part of the spool
        is replayed: new events are waiting for that."""
        if not self._spool_mode or self._finishing:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        pause = 0.02
        deferred = False
        while (
            self._lag.recent > self._replay_lag_budget
            and loop.time() - started < self._replay_max_defer
            and not self._finishing
        ):
            deferred = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
        if deferred:
            self._metrics.replay_deferred_seconds.inc(loop.time() - started)

    def _replay_batches(self, records: list[dict[str, Any]]) -> list[list[Submission]]:
        """A segment's records (one per spooled batch, often small) regrouped into store writes
        of up to ``replay_max`` events, in order."""
        batches: list[list[Submission]] = []
        current: list[Submission] = []
        for payload in records:
            current.extend(payload_to_submissions(payload))
            if len(current) >= self._replay_max:
                batches.append(current)
                current = []
        if current:
            batches.append(current)
        return batches

    def _update_gauges(self) -> None:
        self._metrics.store_available.set(0 if self._spool_mode else 1)
        try:
            self._metrics.spool_bytes.set(self._spool.pending_bytes())
        except OSError:
            pass
