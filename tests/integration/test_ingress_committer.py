"""Group commit: one write per batch, duplicates caught inside and across batches, one hand-off."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aml.domain import IngestOutcome, IngestRecord, Transaction, TransactionStatus
from serve.ingress import new_event_id, received_now
from serve.ingress.committer import Ack, Committer, Submission, stop_task
from serve.ingress.handoff import HandoffDispatcher, PendingSweeper
from serve.ingress.spool import Spool
from serve.metrics import IngressMetrics
from storage.store import Store
from tests.factories import make_tx

pytestmark = pytest.mark.integration


class RecordingHandoff:
    """The simplest honest hand-off: remembers what it was given; can be told to fail."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[Transaction]] = []
        self.fail = fail

    async def submit(self, txs: Sequence[Transaction]) -> None:
        if self.fail:
            raise RuntimeError("scoring is down")
        self.calls.append(list(txs))

    @property
    def ids(self) -> list[str]:
        return [t.id for call in self.calls for t in call]


def submission(
    tx: Transaction | None,
    outcome: IngestOutcome = IngestOutcome.ACCEPTED,
    *,
    received: datetime | None = None,
) -> Submission:
    received = received or received_now()
    if tx is not None:
        tx = tx.replace(received_at=received)
    record = IngestRecord(
        id=new_event_id(),
        tenant=tx.tenant if tx else "default",
        source="fineract",
        received_at=received,
        outcome=outcome,
        dedupe_key=tx.dedupe_key if tx else None,
        body='{"x":1}',
    )
    return Submission(record=record, transaction=tx)


def make_committer(
    store: Store, spool_dir: Path, handoff: RecordingHandoff, **options: Any
) -> Committer:
    """A committer on ``store`` spooling to ``spool_dir`` and handing off to ``handoff``;
    ``options`` are the committer's batching, timeout and retry keywords."""
    metrics = IngressMetrics()
    return Committer(
        store,
        Spool(spool_dir),
        metrics=metrics,
        dispatcher=HandoffDispatcher(handoff, metrics),
        **options,
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def handoff() -> RecordingHandoff:
    return RecordingHandoff()


@pytest.fixture
async def committer(
    store: Store, tmp_path: Path, handoff: RecordingHandoff
) -> AsyncIterator[Committer]:
    c = make_committer(store, tmp_path / "spool", handoff, batch_max=64, batch_wait=0.005)
    await c.start()
    yield c
    await c.close()


async def test_concurrent_identical_events_make_one_transaction_and_one_handoff(
    committer: Committer, store: Store, handoff: RecordingHandoff
) -> None:
    tx = make_tx(dedupe_key="SAVINGSACCOUNT|DEPOSIT|345")
    acks = await asyncio.gather(*(committer.submit(submission(tx)) for _ in range(20)))
    await committer.close()

    outcomes = sorted(a.outcome.value for a in acks)
    assert outcomes == ["accepted"] + ["duplicate"] * 19
    assert {a.transaction_id for a in acks} == {tx.id}
    assert await store.transactions.count() == 1
    assert handoff.ids == [tx.id]
    by_outcome = await store.ingest_log.count_by_outcome()
    assert by_outcome == {"accepted": 1, "duplicate": 19}


async def test_sequential_duplicate_points_at_the_stored_transaction(
    committer: Committer, store: Store, handoff: RecordingHandoff
) -> None:
    tx = make_tx(dedupe_key="LOAN|REPAYMENT|502")
    first = await committer.submit(submission(tx))
    # A different id for the same key (e.g. another parser version) must still be a duplicate.
    again = await committer.submit(submission(tx.replace(id="another-id")))
    assert first.outcome is IngestOutcome.ACCEPTED
    assert again.outcome is IngestOutcome.DUPLICATE
    assert again.transaction_id == tx.id
    await committer.close()
    assert handoff.ids == [tx.id]


async def test_redelivered_batch_points_each_duplicate_at_its_own_stored_transaction(
    committer: Committer, store: Store, handoff: RecordingHandoff
) -> None:
    """Fineract redelivers what it already sent, in two tenants, mixed with new hooks: every
    duplicate in the batch (looked up together) names the transaction stored under its own
    tenant and key, and only the new hooks are stored and handed off."""
    first = [make_tx(), make_tx(), make_tx(tenant="t2"), make_tx(tenant="t2")]
    # Same key in both tenants: two different transactions.
    shared = [
        make_tx(dedupe_key="LOAN|REPAYMENT|77"),
        make_tx(dedupe_key="LOAN|REPAYMENT|77", tenant="t2"),
    ]
    await committer.submit_many([submission(t) for t in [*first, *shared]])
    # Redelivered with new ids (another parser run), interleaved with new hooks.
    again = [t.replace(id=f"{t.id}-again") for t in [*first, *shared]]
    new = [make_tx(), make_tx(tenant="t2")]
    batch = [again[0], new[0], again[4], again[2], new[1], again[5], again[1], again[3]]
    acks = await committer.submit_many([submission(t) for t in batch])
    await committer.close()

    original = {(t.tenant, t.dedupe_key): t.id for t in [*first, *shared, *new]}
    assert [a.transaction_id for a in acks] == [original[(t.tenant, t.dedupe_key)] for t in batch]
    assert [a.outcome for a in acks] == [
        IngestOutcome.ACCEPTED if t in new else IngestOutcome.DUPLICATE for t in batch
    ]
    assert await store.transactions.count() == 8
    assert sorted(handoff.ids) == sorted(original.values())
    assert await store.ingest_log.count_by_outcome() == {"accepted": 8, "duplicate": 6}


async def test_batch_of_many_events_is_stored_and_handed_off_once_each(
    committer: Committer, store: Store, handoff: RecordingHandoff
) -> None:
    txs = [make_tx() for _ in range(150)]
    acks = await committer.submit_many([submission(t) for t in txs])
    await committer.close()
    assert all(a.outcome is IngestOutcome.ACCEPTED for a in acks)
    assert await store.transactions.count() == 150
    assert sorted(handoff.ids) == sorted(t.id for t in txs)
    assert len(handoff.calls) < 150  # grouped, not one call per event


async def test_corrections_and_rejected_attempts_are_stored_but_not_scored(
    committer: Committer, store: Store, handoff: RecordingHandoff
) -> None:
    correction = make_tx(status=TransactionStatus.CORRECTION)
    acks = await committer.submit_many(
        [
            submission(correction, IngestOutcome.CORRECTION),
            submission(None, IngestOutcome.REJECTED_COMMAND),
            submission(None, IngestOutcome.UNSUPPORTED),
        ]
    )
    await committer.close()
    assert [a.outcome for a in acks] == [
        IngestOutcome.CORRECTION,
        IngestOutcome.REJECTED_COMMAND,
        IngestOutcome.UNSUPPORTED,
    ]
    assert await store.transactions.count() == 1
    assert handoff.calls == []
    assert await store.ingest_log.count_by_outcome() == {
        "correction": 1,
        "rejected_command": 1,
        "unsupported": 1,
    }


async def test_failed_handoff_leaves_pending_and_the_sweeper_resubmits(
    store: Store, tmp_path: Path
) -> None:
    down = RecordingHandoff(fail=True)
    c = make_committer(store, tmp_path / "spool", down)
    await c.start()
    tx = make_tx()
    # Received a while ago (the sweeper leaves fresh transactions to the normal hand-off).
    await c.submit(submission(tx, received=received_now() - timedelta(minutes=5)))
    await c.close()
    stored = await store.transactions.get(tx.id)
    assert stored is not None and stored.status is TransactionStatus.PENDING

    up = RecordingHandoff()
    sweeper = PendingSweeper(store, up, grace=timedelta(minutes=1))
    assert await sweeper.run_once() == 1
    assert up.ids == [tx.id]


def test_ack_body_names_status_and_transaction() -> None:
    tx = make_tx()
    sub = submission(tx)
    ack = Ack(outcome=IngestOutcome.ACCEPTED, transaction_id=tx.id, record_id=sub.record.id)
    assert ack.to_dict() == {
        "status": "accepted",
        "transaction_id": tx.id,
        "event_id": sub.record.id,
    }
    assert dataclasses.replace(ack, spooled=True).to_dict()["spooled"] is True


async def test_store_falling_behind_shifts_acks_to_the_spool_without_loss(
    store: Store, tmp_path: Path
) -> None:
    handoff = RecordingHandoff()
    c = make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=4,
        batch_wait=0.0,
        overload_queue=8,  # more than 8 waiting events: the store counts as behind
        replay_max=16,
    )
    await c.start()
    txs = [make_tx() for _ in range(60)]
    first = [submission(t) for t in txs]
    # The redelivery arrives a second after the first delivery, as real ones do (a replay takes
    # an event with the same id and receive time for its own interrupted write, come back).
    again = submission(txs[0], received=first[0].record.received_at + timedelta(seconds=1))
    acks = await c.submit_many([*first, again])
    assert any(a.spooled for a in acks) and any(not a.spooled for a in acks)
    await wait_for(lambda: c.store_available)
    await c.close()
    assert c.store_available
    assert await store.transactions.count() == 60
    assert await store.ingest_log.count_by_outcome() == {"accepted": 60, "duplicate": 1}
    assert sorted(handoff.ids) == sorted(t.id for t in txs)
    assert Spool(tmp_path / "spool").is_empty()


async def test_under_steady_load_events_go_straight_to_the_store_again_after_an_overload(
    store: Store, tmp_path: Path
) -> None:
    """A burst pushes acks to the spool; while events keep arriving (so the spool is never
    found empty) the committer returns to direct writes once the backlog is small, and every
    event is stored once."""
    handoff = RecordingHandoff()
    c = make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=4,
        batch_wait=0.0,
        overload_queue=30,  # the burst overflows it; an event every 2 ms does not
        replay_max=16,
        # Every overload counts as a new one: a store write slowed by the machine late in the
        # steady phase would otherwise keep the tail on the spool for the back-off (tested on
        # its own in test_an_overload_soon_after_a_catch_up_keeps_acks_on_the_spool).
        calm_after=0.0,
    )
    await c.start()
    burst = [make_tx() for _ in range(60)]
    burst_acks = await c.submit_many([submission(t) for t in burst])
    assert any(a.spooled for a in burst_acks)

    steady: list[Transaction] = []
    pending: list[asyncio.Task[Ack]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 3.0
    while loop.time() < end:  # an event every 2 ms, not waiting for acks: never a pause
        tx = make_tx()
        steady.append(tx)
        pending.append(loop.create_task(c.submit(submission(tx))))
        await asyncio.sleep(0.002)
    steady_acks = await asyncio.gather(*pending)
    tail = steady_acks[-50:]
    await c.close()
    assert not any(a.spooled for a in tail), "acks still come from the spool under load"
    assert c.store_available
    everything = [*burst, *steady]
    assert await store.transactions.count() == len(everything)
    assert sorted(handoff.ids) == sorted(t.id for t in everything)
    assert Spool(tmp_path / "spool").is_empty()


def one_event_batches(
    store: Store, tmp_path: Path, handoff: RecordingHandoff, *, in_flight: int | None
) -> Committer:
    """A committer writing every event in a batch of its own, ``in_flight`` batches at once,
    always straight to the store (the spool would defer the verdicts)."""
    return make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=1,
        batch_wait=0.0,
        max_in_flight=in_flight,
        overload_queue=1000,
        overload_ack=60.0,
    )


async def test_batches_written_at_once_still_store_a_redelivered_hook_once(
    store: Store, tmp_path: Path
) -> None:
    """Four one-event batches in flight together: the same hook (each delivery parsed into its
    own transaction id, as the ingress does) in several of them is stored once (the unique
    index decides), the others are acknowledged as duplicates of it."""
    handoff = RecordingHandoff()
    c = one_event_batches(store, tmp_path, handoff, in_flight=4)
    await c.start()
    hook = make_tx(dedupe_key="SAVINGSACCOUNT|DEPOSIT|9001")
    copies = [hook.replace(id=f"{hook.id}-{n}") for n in range(8)]
    others = [make_tx() for _ in range(20)]
    acks = await c.submit_many([submission(t) for t in [*copies, *others]])
    await c.close()
    assert not any(a.spooled for a in acks)
    outcomes = [a.outcome for a in acks[:8]]
    assert outcomes.count(IngestOutcome.ACCEPTED) == 1
    (kept,) = {a.transaction_id for a in acks[:8]}
    assert kept in {t.id for t in copies}
    assert await store.transactions.count() == 21
    assert await store.ingest_log.count_by_outcome() == {"accepted": 21, "duplicate": 7}
    assert sorted(handoff.ids) == sorted([kept, *(t.id for t in others)])


@pytest.mark.parametrize("in_flight", [1, 3, None])
async def test_no_more_group_commits_are_written_at_once_than_allowed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_flight: int | None
) -> None:
    """One-event batches submitted together: the store never has more than ``max_in_flight``
    group commits of them at once (and with room for several, it gets several). Left unset,
    one at a time on the embedded store (it writes one command at a time), two on MongoDB."""
    running = most = 0
    insert_many = store.transactions.insert_many

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await insert_many(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(store.transactions, "insert_many", counted)
    handoff = RecordingHandoff()
    c = one_event_batches(store, tmp_path, handoff, in_flight=in_flight)
    await c.start()
    txs = [make_tx() for _ in range(30)]
    acks = await c.submit_many([submission(t) for t in txs])
    await c.close()
    assert all(a.outcome is IngestOutcome.ACCEPTED and not a.spooled for a in acks)
    assert await store.transactions.count() == 30
    assert most == (in_flight or (1 if await store.is_embedded() else 2))


async def test_slow_acknowledgements_shift_acks_to_the_spool(store: Store, tmp_path: Path) -> None:
    """The overload signal is the wait a sender sees: with a budget no write can meet, the
    first batch is written straight to the store and later ones are acknowledged from the
    spool, then replayed; each event is stored once."""
    handoff = RecordingHandoff()
    c = make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=4,
        batch_wait=0.0,
        overload_ack=0.0,
        catch_up_bytes=-1,  # only an empty spool ends spool mode
    )
    await c.start()
    first = await c.submit(submission(make_tx()))
    assert not first.spooled
    later = [make_tx() for _ in range(12)]
    acks = await c.submit_many([submission(t) for t in later])
    assert all(a.spooled for a in acks)
    await wait_for(lambda: c.store_available)
    await c.close()
    assert await store.transactions.count() == 13
    assert len(handoff.ids) == 13 == len(set(handoff.ids))


@pytest.mark.parametrize("calm_after", [30.0, 0.0])
async def test_an_overload_soon_after_a_catch_up_keeps_acks_on_the_spool(
    store: Store, tmp_path: Path, calm_after: float
) -> None:
    """Past what the store takes directly, acks must not go back and forth between the store
    and the spool (every switch back costs senders a slow write and a wait). Every direct
    write here counts as overloaded. The first overload catches up as soon as the spool is
    drained; a second one within ``calm_after`` of that catch-up keeps acks on the spool for
    the back-off even though the drainer keeps emptying it. With ``calm_after=0`` the second
    overload is treated as a new one, and events go straight to the store again at once."""
    handoff = RecordingHandoff()
    c = make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=4,
        batch_wait=0.0,
        overload_ack=0.0,  # every direct write is "too slow"
        retry_initial=1.5,  # the first back-off
        calm_after=calm_after,
    )
    await c.start()
    sent: list[Transaction] = []

    async def send() -> Ack:
        tx = make_tx()
        sent.append(tx)
        return await c.submit(submission(tx))

    assert not (await send()).spooled  # written directly, found overloaded
    await wait_for(lambda: c.store_available)  # first catch-up: at once
    assert not (await send()).spooled  # overloaded again, seconds after the catch-up
    window: list[Ack] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.0
    while loop.time() < end:
        window.append(await send())
        await asyncio.sleep(0.05)  # slower than the drainer empties the spool
    if calm_after:
        assert all(a.spooled for a in window), "acks went back to the store within the back-off"
    else:
        assert not all(a.spooled for a in window)
    await wait_for(lambda: c.store_available)
    await c.close()
    assert await store.transactions.count() == len(sent)
    assert sorted(handoff.ids) == sorted(t.id for t in sent)
    assert Spool(tmp_path / "spool").is_empty()


@pytest.mark.parametrize("max_defer", [30.0, 0.3])
async def test_replays_wait_while_the_event_loop_is_busy_answering(
    store: Store, tmp_path: Path, max_defer: float
) -> None:
    """Acks come first: while acks come from the spool and the event loop is busy (here: 80 ms
    blocks, as a process saturated by requests), spooled events are not replayed; once it has
    time to spare they are, each once. ``replay_max_defer`` bounds the wait, so a loop that
    stays busy still gets its events replayed."""
    handoff = RecordingHandoff()
    c = make_committer(
        store,
        tmp_path / "spool",
        handoff,
        batch_max=4,
        batch_wait=0.0,
        overload_ack=0.0,  # the first direct write puts acks on the spool
        catch_up_bytes=-1,  # only an empty spool ends spool mode
        replay_max_defer=max_defer,
    )
    await c.start()
    busy = True

    async def answer_requests() -> None:
        while busy:
            time.sleep(0.08)  # a burst of request handling, holding the loop past the budget
            await asyncio.sleep(0)

    hog = asyncio.get_running_loop().create_task(answer_requests())
    first = make_tx()
    assert not (await c.submit(submission(first))).spooled
    spooled = [make_tx() for _ in range(10)]
    acks = await c.submit_many([submission(t) for t in spooled])
    assert all(a.spooled for a in acks)
    await asyncio.sleep(1.5)
    if max_defer > 5:
        assert await store.transactions.count() == 1, "replayed while acks were waiting"
    else:
        assert await store.transactions.count() == 11, "replays stopped altogether"
    busy = False
    await hog
    await wait_for(lambda: c.store_available)
    await c.close()
    assert await store.transactions.count() == 11
    assert sorted(handoff.ids) == sorted(t.id for t in [first, *spooled])


async def test_close_ends_while_the_drainer_is_busy(store: Store, tmp_path: Path) -> None:
    """Every write counts as overloaded, so the drainer is pinging and replaying while the
    committer closes: close still returns, every event is stored once, and one whose replay was
    cut short before its hand-off is pending for the sweeper."""
    handoff = RecordingHandoff()
    c = make_committer(store, tmp_path / "spool", handoff, batch_wait=0.0, overload_ack=0.0)
    await c.start()
    txs = [make_tx() for _ in range(6)]
    for tx in txs:
        await c.submit(submission(tx))
    await asyncio.wait_for(c.close(), timeout=30)
    restarted = make_committer(store, tmp_path / "spool", handoff)
    await restarted.start()  # replays whatever the closed one left in the spool
    await restarted.close()
    assert await store.transactions.count() == 6
    await PendingSweeper(store, handoff, grace=timedelta(0)).run_once()
    assert set(handoff.ids) == {t.id for t in txs}


async def test_stop_repeats_a_cancellation_that_was_swallowed() -> None:
    """A driver call can swallow the CancelledError meant for the drainer; stopping it still
    ends it instead of waiting forever."""

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # swallowed, as inside a driver call
        await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), timeout=10)
    assert task.cancelled()
