"""Store down: events are acknowledged from an fsync-ed local spool and replayed exactly once."""

from __future__ import annotations

import contextlib
import json
import stat
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aml.domain import IngestOutcome
from serve.ingress.committer import (
    Committer,
    Submission,
    payload_to_submissions,
    submissions_to_payload,
)
from serve.ingress.spool import Spool, decode_line, encode_record
from storage import embedded
from storage.store import Store, open_store
from tests.factories import make_tx
from tests.integration.test_ingress_app import (
    DEPOSIT_HEADERS,
    HOOK,
    deposit,
    make_app,
    make_settings,
    serving,
)
from tests.integration.test_ingress_committer import RecordingHandoff, submission, wait_for
from tests.integration.test_ingress_committer import make_committer as committer_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A dedicated embedded store that the test may stop and restart (same port, same data)."""
    data_dir = tmp_path / "store"
    server = embedded.start(data_dir)
    try:
        yield data_dir, server.port
    finally:
        embedded.stop(data_dir)


@contextlib.asynccontextmanager
async def own_store(port: int, name: str) -> AsyncIterator[Store]:
    """Database ``name`` on the test's own server, dropped afterwards (when the server is back).

    A short server-selection timeout makes an outage show within the test's time.
    """
    store = open_store(f"mongodb://127.0.0.1:{port}/", name, timeout_ms=500)
    await store.ensure_indexes()
    try:
        yield store
    finally:
        await store.client.drop_database(name)
        await store.close()


def make_committer(store: Store, spool_dir: Path, handoff: RecordingHandoff) -> Committer:
    """A committer that gives up on a down store and retries within the tests' time."""
    return committer_for(
        store,
        spool_dir,
        handoff,
        batch_wait=0.002,
        write_timeout=0.5,
        retry_initial=0.05,
        retry_max=0.3,
    )


def test_spool_skips_a_torn_last_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"n": 1})
    spool.append({"n": 2})
    spool.close()
    (segment,) = spool.closed_segments()
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600  # raw client requests: owner only
    with open(segment, "ab") as fh:
        fh.write(encode_record({"n": 3})[:-7])  # crash in the middle of the third write
    corrupt: list[int] = []
    contents = Spool(tmp_path, on_corrupt=corrupt.append).read_segment(segment)
    assert [r["n"] for r in contents.records] == [1, 2]
    assert contents.corrupt == 1 and corrupt == [1]


def test_spool_rejects_a_flipped_byte() -> None:
    line = bytearray(encode_record({"amount": 100}))
    assert decode_line(bytes(line)) == {"amount": 100}
    line[-3] = ord("9")
    assert decode_line(bytes(line)) is None


def test_spooled_batch_reads_back_as_it_was_submitted() -> None:
    """Everything an event carries survives the spool: aware dates (at the store's millisecond
    precision), large integers, nested attributes, absent fields, the raw body and headers."""
    at = datetime(2026, 11, 29, 9, 30, 1, 123000, tzinfo=UTC)
    txs = [
        make_tx(
            occurred_at=at,
            received_at=at,
            amount_minor=12_345_678_901_234,
            attributes={"fineract": {"officeId": 1, "changes": [1, "two", None]}, "ok": True},
        ),
        make_tx(occurred_at=at, received_at=at, counterparty_account_id=None),
    ]
    subs = [submission(t, received=at) for t in txs] + [submission(None, received=at)]
    line = encode_record(submissions_to_payload(subs))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    payload = decode_line(line)
    assert payload is not None
    back = payload_to_submissions(payload)
    assert back == subs
    assert all(s.record.received_at.utcoffset() is not None for s in back)


def _earlier_release_line(subs: list[Submission]) -> bytes:
    """A spool line as releases before the BSON spool wrote it: JSON with tagged dates."""
    from storage.codec import to_doc

    def tagged(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"$dt": value.isoformat()}
        if isinstance(value, dict):
            return {k: tagged(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tagged(v) for v in value]
        return value

    items = [
        {
            "record": tagged(to_doc(s.record)),
            "transaction": tagged(to_doc(s.transaction)) if s.transaction else None,
        }
        for s in subs
    ]
    body = json.dumps({"v": 1, "items": items}, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def test_new_process_never_appends_behind_an_old_segment(tmp_path: Path) -> None:
    Spool(tmp_path).append({"n": 1})
    again = Spool(tmp_path)
    again.append({"n": 2})
    again.rotate()
    assert [again.read_segment(p).records for p in again.closed_segments()] == [
        [{"n": 1}],
        [{"n": 2}],
    ]


async def test_store_down_acks_from_spool_and_drains_exactly_once(
    own_server: tuple[Path, int], tmp_path: Path
) -> None:
    data_dir, port = own_server
    async with own_store(port, "spooled") as store:
        handoff = RecordingHandoff()
        committer = make_committer(store, tmp_path / "spool", handoff)
        await committer.start()
        before = make_tx()
        assert (await committer.submit(submission(before))).outcome is IngestOutcome.ACCEPTED

        embedded.stop(data_dir)
        during = [make_tx() for _ in range(10)]
        subs = [submission(t) for t in during]
        subs += [submission(during[0]), submission(before)]  # duplicates while down
        started = time.monotonic()
        acks = await committer.submit_many(subs)
        assert time.monotonic() - started < 5  # acked within Fineract's 10 s budget
        assert all(a.spooled for a in acks)
        assert not committer.store_available
        assert (tmp_path / "spool").is_dir() and not Spool(tmp_path / "spool").is_empty()
        more = make_tx()
        assert (await committer.submit(submission(more))).spooled  # stays in spool mode

        embedded.start(data_dir, port=port)
        await wait_for(lambda: committer.store_available)
        await committer.close()

        assert await store.transactions.count() == 12  # before + 10 during + more
        assert sum((await store.ingest_log.count_by_outcome()).values()) == 14
        assert await store.ingest_log.count_by_outcome() == {"accepted": 12, "duplicate": 2}
        assert sorted(handoff.ids) == sorted(t.id for t in [before, *during, more])
        assert Spool(tmp_path / "spool").is_empty()


async def test_restart_with_a_non_empty_spool_drains_before_new_events(
    own_server: tuple[Path, int], tmp_path: Path
) -> None:
    _data_dir, port = own_server
    spool_dir = tmp_path / "spool"
    spooled = [make_tx() for _ in range(5)]
    # What a previous process left behind: two batches, the second one torn by a crash.
    spool = Spool(spool_dir)
    spool.append(submissions_to_payload([submission(t) for t in spooled[:3]]))
    torn = encode_record(submissions_to_payload([submission(t) for t in spooled[3:]]))
    spool.close()
    (segment,) = spool.closed_segments()
    with open(segment, "ab") as fh:
        fh.write(torn[: len(torn) // 2])

    async with own_store(port, "restarted") as store:
        handoff = RecordingHandoff()
        committer = make_committer(store, spool_dir, handoff)
        await committer.start()
        assert committer.store_available
        assert await store.transactions.count() == 3  # drained during start, torn one ignored
        assert Spool(spool_dir).is_empty()
        fresh = make_tx()
        ack = await committer.submit(submission(fresh))
        assert ack.outcome is IngestOutcome.ACCEPTED and not ack.spooled
        await committer.close()
        assert sorted(handoff.ids) == sorted(t.id for t in [*spooled[:3], fresh])


async def test_a_spool_left_by_an_earlier_release_is_replayed(
    own_server: tuple[Path, int], tmp_path: Path
) -> None:
    """An upgrade can find events the previous release acknowledged from its spool (JSON
    lines): the new one replays them, then appends in its own format behind them."""
    _data_dir, port = own_server
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    old = [make_tx() for _ in range(3)]
    (spool_dir / "seg-000000000001.jsonl").write_bytes(
        _earlier_release_line([submission(t) for t in old])
    )
    async with own_store(port, "upgraded") as store:
        handoff = RecordingHandoff()
        committer = make_committer(store, spool_dir, handoff)
        await committer.start()
        assert committer.store_available and Spool(spool_dir).is_empty()
        for tx in old:
            stored = await store.transactions.get(tx.id)
            assert stored is not None and stored.amount_minor == tx.amount_minor
            assert stored.occurred_at == tx.occurred_at
        await committer.close()
        assert sorted(handoff.ids) == sorted(t.id for t in old)


async def test_replaying_a_segment_twice_stores_nothing_twice(
    own_server: tuple[Path, int], tmp_path: Path
) -> None:
    """A crash after replay but before the segment was deleted: the next start replays it again."""
    _data_dir, port = own_server
    async with own_store(port, "replayed") as store:
        txs = [make_tx() for _ in range(4)]
        subs: list[Submission] = [submission(t) for t in txs]
        payload = submissions_to_payload(subs)
        for attempt in range(2):
            spool = Spool(tmp_path / "spool")
            spool.append(payload)
            spool.close()
            handoff = RecordingHandoff()
            committer = make_committer(store, tmp_path / "spool", handoff)
            await committer.start()
            await committer.close()
            assert await store.transactions.count() == 4
            assert await store.ingest_log.count_by_outcome() == {"accepted": 4}
            # Only the first replay stored them, so only it hands them to scoring.
            assert len(handoff.ids) == (4 if attempt == 0 else 0)


async def _replay(store: Store, spool_dir: Path, subs: list[Submission]) -> RecordingHandoff:
    """Spool ``subs`` as one batch and let a new committer replay it."""
    spool = Spool(spool_dir)
    spool.append(submissions_to_payload(subs))
    spool.close()
    handoff = RecordingHandoff()
    committer = make_committer(store, spool_dir, handoff)
    await committer.start()
    await committer.close()
    assert Spool(spool_dir).is_empty()
    return handoff


async def test_a_redelivery_received_in_the_same_millisecond_is_a_duplicate_on_replay(
    store: Store, tmp_path: Path
) -> None:
    # The first delivery went straight to the store; the second, received in the same
    # millisecond, was acknowledged from the spool. Same transaction id, same receive time:
    # only the delivery (its ingest record) tells them apart.
    tx = make_tx()
    first = submission(tx)
    handoff = RecordingHandoff()
    committer = make_committer(store, tmp_path / "spool", handoff)
    await committer.start()
    assert (await committer.submit(first)).outcome is IngestOutcome.ACCEPTED
    await committer.close()
    again = submission(tx, received=first.record.received_at)

    replayed = await _replay(store, tmp_path / "spool", [again])

    assert await store.ingest_log.count_by_outcome() == {"accepted": 1, "duplicate": 1}
    assert (await store.ingest_log.get(again.record.id)).transaction_id == tx.id  # type: ignore[union-attr]
    assert handoff.ids == [tx.id] and replayed.ids == []


async def test_a_replay_interrupted_after_storing_its_transactions_logs_them_accepted(
    store: Store, tmp_path: Path
) -> None:
    # The first replay stored the transactions (with their deliveries' records) and stopped
    # before the ingest log; the next one finds them stored by these very deliveries.
    txs = [make_tx() for _ in range(3)]
    subs = [submission(t) for t in txs]
    await store.transactions.insert_many(
        [s.transaction for s in subs[:2]],  # type: ignore[misc]
        ingest_ids=[s.record.id for s in subs[:2]],
    )
    # A document stored without its delivery's record (an earlier release) is still
    # recognised by transaction id and receive time.
    await store.transactions.insert_many([subs[2].transaction])  # type: ignore[list-item]

    replayed = await _replay(store, tmp_path / "spool", subs)

    assert await store.ingest_log.count_by_outcome() == {"accepted": 3}
    assert await store.transactions.count() == 3
    assert replayed.ids == []  # handed to scoring by the interrupted replay (or the sweeper)


async def test_ingress_keeps_acknowledging_over_http_while_the_store_is_down(
    own_server: tuple[Path, int], tmp_path: Path
) -> None:
    data_dir, port = own_server
    async with own_store(port, "over_http") as store:
        handoff = RecordingHandoff()
        app = make_app(make_settings(tmp_path / "ingress"), store, handoff)
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
            embedded.stop(data_dir)
            down = [
                await http.post(HOOK, content=deposit(7000 + i), headers=DEPOSIT_HEADERS)
                for i in range(5)
            ]
            assert [r.status_code for r in down] == [200] * 5
            assert all(r.json()["spooled"] for r in down)
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["store"] is False

            embedded.start(data_dir, port=port)
            committer = app.ctx.committer
            assert committer is not None
            await wait_for(lambda: committer.store_available)
            after = await http.post(HOOK, content=deposit(7000), headers=DEPOSIT_HEADERS)
            assert after.json()["status"] == "duplicate"  # the spooled one was replayed first
        assert await store.transactions.count() == 5
        assert sorted(handoff.ids) == sorted({r.json()["transaction_id"] for r in down})
