"""The embedded store's write commands run in one SQLite transaction each, with unchanged
answers: driven through a real ``nx-27017`` handler in-process, every SQL statement traced."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nx_27017.handler import NeoSQLiteHandler

from storage import nx_server


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    assert nx_server.install()
    assert nx_server.install()  # idempotent: never wrapped twice


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[NeoSQLiteHandler]:
    h = NeoSQLiteHandler(data_dir=str(tmp_path))
    yield h
    nx_server.stop_checkpointer(str(tmp_path))
    for conn in list(h.databases.values()):
        conn.close()


def _msg(body: dict[str, Any], payload: dict[str, Any] | None = None) -> dict[str, Any]:
    sections: list[tuple[str, Any]] = [("body", body)]
    if payload is not None:
        sections.append(("payload", payload))
    return {"request_id": 1, "sections": sections}


def _traced(h: NeoSQLiteHandler, db: str) -> list[str]:
    statements: list[str] = []
    h.get_database(db).db.set_trace_callback(statements.append)
    return statements


def _insert(h: NeoSQLiteHandler, docs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"insert": "things", "ordered": False, "$db": "aml", **extra}
    reply: dict[str, Any] = h.handle_insert(_msg(body, {"documents": docs}))[1]
    return reply


def _kinds(statements: list[str]) -> list[str]:
    return [s.split()[0].upper() for s in statements if s.split()[0].upper() != "SELECT"]


def test_an_insert_of_many_documents_commits_once(handler: NeoSQLiteHandler) -> None:
    _insert(handler, [{"_id": "warm", "k": 0}])  # creates the table
    statements = _traced(handler, "aml")
    reply = _insert(handler, [{"_id": f"d{i}", "k": i} for i in range(5)])
    assert reply["ok"] == 1 and reply["n"] == 5
    kinds = _kinds(statements)
    assert kinds[0] == "BEGIN" and kinds[-1] == "COMMIT"
    assert kinds.count("BEGIN") == 1 and kinds.count("COMMIT") == 1
    assert kinds.count("INSERT") == 5


def test_a_duplicate_fails_alone_and_the_rest_is_committed(
    handler: NeoSQLiteHandler, tmp_path: Path
) -> None:
    _insert(handler, [{"_id": "a", "k": 1}])
    reply = _insert(handler, [{"_id": "b"}, {"_id": "a"}, {"_id": "c"}])
    assert reply["n"] == 2
    assert [e["index"] for e in reply["writeErrors"]] == [1]
    assert reply["writeErrors"][0]["code"] == 11000
    # Committed: another connection to the file sees every stored row.
    import sqlite3

    other = sqlite3.connect(tmp_path / "aml.db")
    try:
        ids = sorted(r[0] for r in other.execute("SELECT _id FROM things"))
    finally:
        other.close()
    assert ids == ["a", "b", "c"]


def test_update_many_commits_once_and_reads_do_not_open_transactions(
    handler: NeoSQLiteHandler,
) -> None:
    _insert(handler, [{"_id": f"d{i}", "s": "pending"} for i in range(4)])
    statements = _traced(handler, "aml")
    body = {
        "update": "things",
        "updates": [{"q": {"s": "pending"}, "u": {"$set": {"s": "scored"}}, "multi": True}],
        "$db": "aml",
    }
    reply = handler.handle_command(_msg(body))[1]
    assert reply["ok"] == 1 and reply["nModified"] == 4
    kinds = _kinds(statements)
    assert kinds.count("BEGIN") == 1 and kinds.count("COMMIT") == 1 and kinds[-1] == "COMMIT"

    statements.clear()
    found = handler.handle_command(_msg({"find": "things", "filter": {}, "$db": "aml"}))[1]
    assert len(found["cursor"]["firstBatch"]) == 4
    assert "BEGIN" not in _kinds(statements)


def test_a_client_transaction_is_left_to_the_handler(handler: NeoSQLiteHandler) -> None:
    _insert(handler, [{"_id": "warm"}])
    statements = _traced(handler, "aml")
    reply = _insert(
        handler,
        [{"_id": "t1"}],
        lsid={"id": "s-1"},
        txnNumber=1,
        startTransaction=True,
        autocommit=False,
    )
    assert reply["ok"] == 1
    # The handler's own transaction (BEGIN IMMEDIATE) is open and ours never started.
    assert handler.get_database("aml").db.in_transaction
    assert not any(s.strip().upper() == "BEGIN" for s in statements)


def test_inserts_copy_the_top_level_only_and_store_the_same_document(
    handler: NeoSQLiteHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    from bson import Binary

    deep: list[Any] = []
    real_deepcopy = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        deep.append(type(value))
        return real_deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    nested: dict[str, Any] = {"list": [1, {"b": b"\x00\x01"}], "when": {"n": 3}}
    doc = {"_id": "n1", "k": 1, "nested": nested}
    reply = _insert(handler, [doc])
    assert reply["n"] == 1
    # The document handed to neosqlite copied itself (top level) instead of a deep copy.
    assert deep and all(t is nx_server._DecodedDocument for t in deep)
    # The caller's objects are untouched, and the stored document is the whole document.
    assert doc == {"_id": "n1", "k": 1, "nested": nested}
    assert nested["list"][1] == {"b": b"\x00\x01"}
    stored = handler.get_database("aml")["things"].find_one({"_id": "n1"})
    assert stored is not None
    assert stored["k"] == 1 and stored["nested"]["when"] == {"n": 3}
    assert bytes(stored["nested"]["list"][1]["b"]) == b"\x00\x01"
    assert isinstance(stored["nested"]["list"][1]["b"], (bytes, Binary))


def _update(
    h: NeoSQLiteHandler, q: dict[str, Any], u: dict[str, Any], *, plain: bool = False, **spec: Any
) -> dict[str, Any]:
    body = {"update": "things", "ordered": True, "$db": "aml"}
    msg = _msg(body, {"updates": [{"q": q, "u": u, "multi": True, **spec}]})
    command = NeoSQLiteHandler.handle_command
    run = command.__wrapped__ if plain else command  # type: ignore[attr-defined]
    reply: dict[str, Any] = run(h, msg)[1]
    return reply


def _insert_plain(h: NeoSQLiteHandler, docs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """``_insert`` through the handler's own code, never the fast path."""
    body = {"insert": "things", "ordered": False, "$db": "aml", **extra}
    insert = NeoSQLiteHandler.handle_insert.__wrapped__  # type: ignore[attr-defined]
    reply: dict[str, Any] = insert(h, _msg(body, {"documents": docs}))[1]
    return reply


def _rows(h: NeoSQLiteHandler) -> list[tuple[str, str]]:
    """Every stored row as SQLite holds it: ``_id`` column and JSON text."""
    conn = h.get_database("aml").db
    return sorted(conn.execute('SELECT _id, data FROM "things"').fetchall())


def _all(h: NeoSQLiteHandler) -> list[dict[str, Any]]:
    return sorted(h.get_database("aml")["things"].find({}), key=lambda d: str(d["_id"]))


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[NeoSQLiteHandler]:
    """A second store with the same documents, updated by the handler's own code."""
    (tmp_path / "twin").mkdir()
    h = NeoSQLiteHandler(data_dir=str(tmp_path / "twin"))
    yield h
    for conn in list(h.databases.values()):
        conn.close()


def test_a_set_by_ids_update_runs_as_one_statement_with_the_handlers_answers_and_documents(
    handler: NeoSQLiteHandler, twin: NeoSQLiteHandler
) -> None:
    docs: list[dict[str, Any]] = [
        {"_id": "a", "status": "pending", "n": 1, "nested": {"k": [1, 2]}},
        {"_id": "b", "status": "pending", "risk_level": "low"},
        {"_id": "c", "status": "scored", "risk_level": "high"},
        {"_id": "d", "status": "pending"},
    ]
    for h in (handler, twin):
        _insert(h, [dict(d) for d in docs])
        h.get_database("aml")["things"].create_index("status")
    statements = _traced(handler, "aml")
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"_id": {"$in": ["a", "b", "c", "x"]}, "status": "pending"},
            {"$set": {"status": "scored", "risk_level": "high"}},
        ),
        # Again: nothing is pending any more among them.
        (
            {"_id": {"$in": ["a", "b", "c", "x"]}, "status": "pending"},
            {"$set": {"status": "scored", "risk_level": "high"}},
        ),
        # Without the equality: matched, but only the ones that differ are modified.
        ({"_id": {"$in": ["a", "c", "d"]}}, {"$set": {"risk_level": "high"}}),
    ]
    for q, u in steps:
        fast = _update(handler, q, u)
        plain = _update(twin, q, u, plain=True)
        assert (fast["n"], fast["nModified"]) == (plain["n"], plain["nModified"])
    assert _all(handler) == _all(twin)
    assert [k for k in _kinds(statements) if k == "UPDATE"] == ["UPDATE"] * len(steps)
    # The status index followed the change.
    scored = handler.get_database("aml")["things"].find({"status": "scored"})
    assert sorted(d["_id"] for d in scored) == ["a", "b", "c"]


def _bulk_update(
    h: NeoSQLiteHandler, statements: list[tuple[dict[str, Any], dict[str, Any]]], *, plain: bool
) -> dict[str, Any]:
    body = {"update": "things", "ordered": False, "$db": "aml"}
    updates = [{"q": q, "u": u, "multi": True} for q, u in statements]
    command = NeoSQLiteHandler.handle_command
    run = command.__wrapped__ if plain else command  # type: ignore[attr-defined]
    reply: dict[str, Any] = run(h, _msg(body, {"updates": updates}))[1]
    return reply


def test_a_bulk_of_set_by_ids_updates_is_one_transaction_with_the_handlers_answer(
    handler: NeoSQLiteHandler, twin: NeoSQLiteHandler
) -> None:
    # How ``mark_scored`` sends a batch: one statement per risk level, in one command.
    docs = [{"_id": f"t{i}", "status": "pending"} for i in range(6)]
    docs.append({"_id": "done", "status": "scored", "risk_level": "low"})
    for h in (handler, twin):
        _insert(h, [dict(d) for d in docs])
    statements = _traced(handler, "aml")
    bulk = [
        (
            {"_id": {"$in": ids}, "status": "pending"},
            {"$set": {"status": "scored", "risk_level": level}},
        )
        for level, ids in (
            ("low", ["t0", "t1", "done"]),
            ("high", ["t2", "t3", "missing"]),
            ("critical", ["t4", "t0"]),  # t0 is no longer pending by then
        )
    ]
    fast = _bulk_update(handler, bulk, plain=False)
    plain = _bulk_update(twin, bulk, plain=True)
    assert (fast["n"], fast["nModified"]) == (plain["n"], plain["nModified"]) == (5, 5)
    assert _all(handler) == _all(twin)
    kinds = _kinds(statements)
    assert kinds.count("BEGIN") == 1 and kinds.count("COMMIT") == 1
    assert kinds.count("UPDATE") == 3


def test_a_bulk_of_set_by_ids_updates_failing_midway_is_answered_by_the_handler(
    handler: NeoSQLiteHandler,
) -> None:
    _insert(handler, [{"_id": "a", "status": "pending"}, {"_id": "b", "status": "pending"}])
    conn = handler.get_database("aml").db
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON \"things\" WHEN old._id = 'b' "
        'BEGIN SELECT RAISE(ABORT, "refused"); END'
    )
    statements = _traced(handler, "aml")
    bulk = [
        ({"_id": {"$in": [doc_id]}}, {"$set": {"status": level}})
        for doc_id, level in (("a", "low"), ("b", "high"))
    ]
    body = {"update": "things", "ordered": False, "$db": "aml"}
    updates = [{"q": q, "u": u, "multi": True} for q, u in bulk]
    with pytest.raises(sqlite3.Error):
        conn.execute("BEGIN")
        try:
            nx_server.set_by_ids(handler, conn, _msg(body, {"updates": updates}), body)
        finally:
            # The first statement was undone with the failing one: none of the command stays.
            assert conn.in_transaction
            assert (
                conn.execute("SELECT data FROM things WHERE _id = 'a'")
                .fetchone()[0]
                .count("pending")
            )
            conn.execute("ROLLBACK")
    statements.clear()
    reply = _bulk_update(handler, bulk, plain=False)
    # The handler ran the command: "a" changed once, "b" reported as a write error.
    assert reply["ok"] == 1 and reply.get("writeErrors")
    found = handler.get_database("aml")["things"]
    assert found.find_one({"_id": "a"})["status"] == "low"
    assert found.find_one({"_id": "b"})["status"] == "pending"
    assert not conn.in_transaction


@pytest.mark.parametrize(
    ("q", "u", "spec"),
    [
        ({"_id": {"$in": ["a"]}}, {"$set": {"status": "scored"}}, {"upsert": True}),
        ({"_id": {"$in": ["a"]}}, {"$set": {"nested.k": "x"}}, {}),
        ({"_id": {"$in": ["a"]}}, {"$set": {"n": 2}}, {}),
        ({"_id": {"$in": ["a"]}}, {"$inc": {"n": 1}}, {}),
        ({"_id": "a"}, {"$set": {"status": "scored"}}, {}),
        ({"_id": {"$in": ["a"]}, "n": 1}, {"$set": {"status": "scored"}}, {}),
    ],
)
def test_other_updates_are_left_to_the_handler(
    handler: NeoSQLiteHandler, q: dict[str, Any], u: dict[str, Any], spec: dict[str, Any]
) -> None:
    _insert(handler, [{"_id": "a", "status": "pending", "n": 1, "nested": {"k": [1]}}])
    body = {"update": "things", "ordered": True, "$db": "aml"}
    msg = _msg(body, {"updates": [{"q": q, "u": u, "multi": True, **spec}]})
    conn = handler.get_database("aml").db
    assert nx_server.set_by_ids(handler, conn, msg, body) is None
    assert _update(handler, q, u, **spec)["ok"] == 1


def test_a_set_by_ids_update_of_a_missing_collection_is_left_to_the_handler(
    handler: NeoSQLiteHandler,
) -> None:
    body = {"update": "nothing_here", "ordered": True, "$db": "aml"}
    q = {"_id": {"$in": ["a"]}}
    msg = _msg(body, {"updates": [{"q": q, "u": {"$set": {"s": "x"}}, "multi": True}]})
    _insert(handler, [{"_id": "warm"}])
    assert nx_server.set_by_ids(handler, handler.get_database("aml").db, msg, body) is None


def test_a_set_by_ids_update_that_fails_in_sql_is_answered_by_the_handler(
    handler: NeoSQLiteHandler,
) -> None:
    _insert(handler, [{"_id": "a", "status": "pending"}])
    conn = handler.get_database("aml").db
    conn.execute(
        'CREATE TRIGGER refuse BEFORE UPDATE ON "things" BEGIN SELECT RAISE(ABORT, "refused"); END'
    )
    reply = _update(handler, {"_id": {"$in": ["a"]}}, {"$set": {"status": "scored"}})
    # An answer with the write error, not an exception out of the server's command handler.
    assert reply["ok"] == 1 and reply.get("writeErrors")
    assert handler.get_database("aml")["things"].find_one({"_id": "a"})["status"] == "pending"
    assert not conn.in_transaction


def _wal_frames(path: Path) -> int:
    """Frames in the WAL of ``path`` now (read through a checkpoint that copies nothing a
    reader needs and, with no reader, everything: the count is what the log holds)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def test_commits_leave_checkpoints_to_the_checkpointer(
    handler: NeoSQLiteHandler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpointer that never finds a WAL big enough: whatever is checkpointed below is not
    # its doing.
    monkeypatch.setattr(nx_server, "CHECKPOINT_MIN_BYTES", 1 << 40)
    filler = "x" * 3000  # about a page per document
    for start in range(0, 1500, 100):
        _insert(handler, [{"_id": f"d{i}", "pad": filler} for i in range(start, start + 100)])
    conn = handler.get_database("aml").db
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == nx_server.BACKSTOP_PAGES
    # SQLite's default (1,000 pages) would have checkpointed and restarted the log on the way.
    assert _wal_frames(tmp_path / "aml.db") > 1500
    assert handler.get_database("aml")["things"].count_documents({}) == 1500


def test_the_checkpointer_checkpoints_wal_files_past_its_threshold(
    handler: NeoSQLiteHandler, tmp_path: Path
) -> None:
    _insert(handler, [{"_id": f"d{i}", "pad": "x" * 3000} for i in range(50)])
    small = nx_server.WalCheckpointer(tmp_path, min_bytes=1 << 30)
    assert small.run_once() == {}
    done = nx_server.WalCheckpointer(tmp_path, min_bytes=1).run_once()
    busy, frames, copied = done["aml.db"]
    assert busy == 0 and frames >= 50 and copied == frames
    # Everything is in the database file now: a copy of the file alone holds every document.
    copy_path = tmp_path / "copy" / "aml.db"
    copy_path.parent.mkdir()
    copy_path.write_bytes((tmp_path / "aml.db").read_bytes())
    copy = sqlite3.connect(copy_path)
    assert copy.execute('SELECT count(*) FROM "things"').fetchone()[0] == 50
    copy.close()


def test_the_checkpointer_skips_a_database_dropped_under_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    path.unlink()  # dropped: its WAL is still there while the connection lives
    assert (tmp_path / "gone.db-wal").exists()
    assert nx_server.WalCheckpointer(tmp_path, min_bytes=1).run_once() == {}
    assert not path.exists()  # not created again, empty
    conn.close()


def test_a_write_starts_one_checkpointer_per_data_dir_that_runs_on_its_own(
    handler: NeoSQLiteHandler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nx_server, "CHECKPOINT_INTERVAL", 0.01)
    monkeypatch.setattr(nx_server, "CHECKPOINT_MIN_BYTES", 1)
    _insert(handler, [{"_id": "a", "pad": "x" * 3000}])
    _insert(handler, [{"_id": "b", "pad": "x" * 3000}])
    (running,) = [c for d, c in nx_server._checkpointers.items() if d == str(tmp_path)]
    deadline = time.monotonic() + 10
    while running.frames_copied == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.frames_copied > 0
    nx_server.stop_checkpointer(str(tmp_path))
    assert str(tmp_path) not in nx_server._checkpointers
    _insert(handler, [{"_id": "c"}])  # the connection keeps its backstop; no second thread
    assert str(tmp_path) not in nx_server._checkpointers


def _plain_docs(start: int) -> list[dict[str, Any]]:
    when = datetime(2026, 11, 29, 7, 30, 1, 123000, tzinfo=UTC)
    return [
        {
            "_id": f"p{start + i}",
            "tenant": "default",
            "amount_minor": 10_000 + start + i,
            "ratio": 0.25,
            "flag": i % 2 == 0,
            "none": None,
            "when": when,
            "text": 'Ünïcode "quoted" \\ back\nline',
            "nested": {"list": [1, "two", {"three": when}], "empty": {}},
        }
        for i in range(5)
    ]


def test_plain_inserts_store_the_handlers_rows_and_answers(
    handler: NeoSQLiteHandler, twin: NeoSQLiteHandler
) -> None:
    for h in (handler, twin):
        _insert_plain(h, [{"_id": "warm", "k": 0}])  # the collection, made by the handler
        h.get_database("aml")["things"].create_index("tenant", unique=False)
        h.get_database("aml")["things"].create_index("amount_minor", unique=True)
    statements = _traced(handler, "aml")
    batches: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
        (_plain_docs(0), {"maxTimeMS": 5000}),  # as pymongo.timeout() sends it
        # Duplicates on _id and on a unique index: unordered goes on, ordered stops.
        (_plain_docs(3), {}),
        ([*_plain_docs(10)[:2], {"_id": "p0", "k": 1}, *_plain_docs(20)[:1]], {"ordered": True}),
    ]
    for docs, extra in batches:
        fast = _insert(handler, [dict(d) for d in docs], **extra)
        plain = _insert_plain(twin, [dict(d) for d in docs], **extra)
        assert fast == plain
    assert _rows(handler) == _rows(twin)
    assert _all(handler) == _all(twin)
    # The fast path wrote them: no JSON validation asked of SQLite, one INSERT per document.
    assert not any("json_valid" in s for s in statements)
    assert _kinds(statements).count("INSERT") == 5 + 5 + 3


@pytest.mark.parametrize(
    "odd",
    [
        {"_id": "x", "blob": b"\x00\x01"},  # bytes: converted by the handler
        {"_id": "x", "nan": math.nan},  # not JSON: the handler answers its error
        {"_id": 7, "k": 1},  # not a string _id
        {"k": 1},  # no _id: the handler makes an ObjectId
    ],
)
def test_inserts_holding_anything_else_go_to_the_handler(
    handler: NeoSQLiteHandler, twin: NeoSQLiteHandler, odd: dict[str, Any]
) -> None:
    for h in (handler, twin):
        _insert_plain(h, [{"_id": "warm"}])
    body = {"insert": "things", "ordered": False, "$db": "aml"}
    docs = [{"_id": "fine", "k": 1}, odd]
    msg = _msg(body, {"documents": docs})
    assert nx_server.insert_plain(handler, handler.get_database("aml").db, msg, body) is None
    fast = _insert(handler, [dict(d) for d in docs])
    plain = _insert_plain(twin, [dict(d) for d in docs])
    assert (fast["n"], len(fast.get("writeErrors", []))) == (
        plain["n"],
        len(plain.get("writeErrors", [])),
    )


def test_an_insert_into_a_new_collection_or_with_a_write_concern_goes_to_the_handler(
    handler: NeoSQLiteHandler,
) -> None:
    conn = handler.get_database("aml").db
    body = {"insert": "things", "ordered": False, "$db": "aml"}
    msg = _msg(body, {"documents": [{"_id": "a"}]})
    assert nx_server.insert_plain(handler, conn, msg, body) is None  # no table yet
    assert _insert(handler, [{"_id": "a"}])["n"] == 1  # the handler made it
    concerned = {**body, "writeConcern": {"w": 1, "j": True}}
    msg = _msg(concerned, {"documents": [{"_id": "b"}]})
    assert nx_server.insert_plain(handler, conn, msg, concerned) is None
    dotted = {**body, "insert": "fs.files"}
    assert (
        nx_server.insert_plain(handler, conn, _msg(dotted, {"documents": [{"_id": "c"}]}), dotted)
        is None
    )
    msg = _msg(body, {"documents": [{"_id": "d"}]})
    assert nx_server.insert_plain(handler, conn, msg, body) == {
        "ok": 1,
        "n": 1,
        "insertedIds": ["d"],
    }


def test_an_insert_whose_transaction_sqlite_rolls_back_answers_only_what_is_stored(
    handler: NeoSQLiteHandler,
) -> None:
    _insert(handler, [{"_id": "warm"}])
    conn = handler.get_database("aml").db
    # RAISE(ROLLBACK) ends the whole transaction, as a full disk or an I/O error does: the
    # document inserted before it in the same command is rolled back with it.
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON \"things\" WHEN NEW._id = 'b' "
        'BEGIN SELECT RAISE(ROLLBACK, "refused"); END'
    )
    reply = _insert(handler, [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])
    stored = {row[0] for row in conn.execute('SELECT _id FROM "things"')} - {"warm"}
    assert set(reply["insertedIds"]) == stored == {"a", "c"}
    assert reply["n"] == 2 and [e["index"] for e in reply["writeErrors"]] == [1]
    assert not conn.in_transaction


def _refuse(conn: sqlite3.Connection, event: str, when: str) -> None:
    # RAISE(ROLLBACK) ends the whole transaction, as a full disk or an I/O error does.
    conn.execute(
        f'CREATE TRIGGER refuse BEFORE {event} ON "things" WHEN {when} '
        'BEGIN SELECT RAISE(ROLLBACK, "refused"); END'
    )


def test_a_handler_path_insert_rolled_back_midway_is_answered_as_failed(
    handler: NeoSQLiteHandler,
) -> None:
    # Integer ids are not plain documents: the handler inserts them one by one.
    _insert(handler, [{"_id": 0}])
    conn = handler.get_database("aml").db
    _refuse(conn, "INSERT", "json_extract(NEW.data, '$._id') = 2")
    reply = _insert(handler, [{"_id": 1}, {"_id": 2}, {"_id": 3}])
    stored = {row[0] for row in conn.execute("SELECT json_extract(data, '$._id') FROM things")}
    # 1 was rolled back with the transaction, 3 was written alone afterwards: no count the
    # handler could give is true, so the command fails and the client retries it.
    assert stored == {0, 3}
    assert reply["ok"] == 0 and "rolled back" in reply["errmsg"]
    assert "insertedIds" not in reply and "n" not in reply
    assert not conn.in_transaction


def test_a_handler_path_update_rolled_back_midway_is_answered_as_failed(
    handler: NeoSQLiteHandler,
) -> None:
    _insert(handler, [{"_id": "a", "n": 1}, {"_id": "b", "n": 1}, {"_id": "c", "n": 1}])
    conn = handler.get_database("aml").db
    _refuse(conn, "UPDATE", "json_extract(OLD.data, '$._id') = 'b'")
    reply = _update(handler, {"n": 1}, {"$inc": {"n": 1}}, multi=True)
    assert reply["ok"] == 0 and "rolled back" in reply["errmsg"]
    assert not conn.in_transaction
    # Without the trigger the same update is answered and committed as before.
    conn.execute("DROP TRIGGER refuse")
    assert _update(handler, {"n": 1}, {"$inc": {"n": 1}}, multi=True)["ok"] == 1


# --- reads: $in over an indexed identifier ------------------------------------------------------


def _find(h: NeoSQLiteHandler, query: dict[str, Any]) -> list[Any]:
    body = {"find": "things", "filter": query, "$db": "aml", "batchSize": 1000}
    reply: dict[str, Any] = h.handle_command(_msg(body))[1]
    return sorted(d["_id"] for d in reply["cursor"]["firstBatch"])


def test_an_in_over_an_indexed_identifier_reads_its_index_and_matches_the_same_documents(
    handler: NeoSQLiteHandler,
) -> None:
    docs = [
        {"_id": f"d{i}", "account_id": f"a{i % 7}", "tenant": "t", "n": i, "tags": [f"a{i % 3}"]}
        for i in range(40)
    ]
    docs += [{"_id": "int", "account_id": 3, "tags": []}, {"_id": "none", "tenant": "t"}]
    _insert_plain(handler, docs)
    things = handler.get_database("aml")["things"]
    things.create_index("account_id")
    things.create_index("tags")
    statements = _traced(handler, "aml")

    def expected(field: str, values: list[Any]) -> list[str]:
        def has(d: dict[str, Any]) -> bool:
            v = d.get(field)
            return any(x in v for x in values) if isinstance(v, list) else v in values

        return sorted(d["_id"] for d in docs if has(d))

    for values in (["a1", "a5"], ["a2", 3], ["nobody"]):
        statements.clear()
        got = _find(handler, {"account_id": {"$in": values}, "tenant": {"$in": ["t", "x"]}})
        assert got == [i for i in expected("account_id", values) if i != "int"]
        (select,) = [s for s in statements if "account_id" in s]
        assert "_extract(data, '$.account_id') IN (" in select
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any("INDEX" in str(row) and "account_id" in str(row) for row in plan), plan
    assert _find(handler, {"account_id": {"$in": ["a2", 3]}}) == expected("account_id", ["a2", 3])
    # Arrays keep MongoDB's meaning: a field outside the identifiers, a null among the values.
    assert _find(handler, {"tags": {"$in": ["a1"]}}) == expected("tags", ["a1"])
    assert _find(handler, {"account_id": {"$in": ["a1", None]}}) == sorted(
        [*expected("account_id", ["a1"]), "none"]
    )


def test_duplicate_look_ups_read_an_index_of_the_transactions_embedded_indexes(
    handler: NeoSQLiteHandler,
) -> None:
    """A redelivered hook makes the ingress look its stored transaction up by tenant and key
    (several in one ``$in``); the unique pair cannot serve that here (the tenant's clause keeps
    MongoDB's array semantics), so the collection has a ``dedupe_key`` index that does. Without
    it each look-up read every stored transaction."""
    from storage.repositories.transactions import TransactionRepository

    indexes = [dict(m.document) for m in TransactionRepository.embedded_indexes or ()]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    docs = [
        {"_id": f"d{i}", "tenant": "t" if i % 2 else "u", "dedupe_key": f"K|{i // 2}"}
        for i in range(60)
    ]
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    for query, expected in (
        ({"tenant": "t", "dedupe_key": "K|3"}, ["d7"]),
        ({"tenant": "u", "dedupe_key": {"$in": ["K|3", "K|9", "K|99"]}}, ["d18", "d6"]),
    ):
        statements.clear()
        assert _find(handler, query) == expected
        (select,) = [s for s in statements if "dedupe_key" in s]
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any("USING INDEX" in str(row) for row in plan), plan


def _count(h: NeoSQLiteHandler, query: dict[str, Any]) -> int:
    body = {"count": "things", "query": query, "$db": "aml"}
    reply: dict[str, Any] = h.handle_command(_msg(body))[1]
    return int(reply["n"])


def test_counts_on_scalar_fields_read_an_index_and_count_the_same(
    handler: NeoSQLiteHandler,
) -> None:
    """The overview's and the queue's counters (``Repository.count_matching``): the ``count``
    command gives a plain equality MongoDB's array-containment meaning, which no index serves
    (each count read every alert); the ``$eq`` form sent for fields that never hold arrays is
    answered from the index, with the same result."""
    from storage.repositories.alerts import AlertRepository
    from storage.repositories.base import scalar_filter

    indexes = [dict(m.document) for m in AlertRepository.indexes]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    statuses = ["open", "under_review", "closed_legitimate"]
    docs = [
        {
            "_id": f"a{i}",
            "status": statuses[i % 3],
            "risk_level": ["low", "high"][i % 2],
            "sla_due_ms": 1_000 * i,
        }
        for i in range(60)
    ]
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    for query in (
        {"status": "open"},
        {"status": {"$in": ["open", "under_review"]}, "risk_level": "high"},
        {"status": {"$in": ["open", "under_review"]}, "sla_due_ms": {"$lt": 30_000}},
    ):
        expected = _count(handler, query)
        statements.clear()
        assert _count(handler, scalar_filter(query, ("status", "risk_level"))) == expected > 0
        (select,) = [s for s in statements if "COUNT" in s]
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any("USING INDEX" in str(row) for row in plan), plan
        assert not any(str(row[3]).startswith("SCAN things") for row in plan), plan


def test_decision_counts_over_a_period_read_the_numeric_time_key_index(
    handler: NeoSQLiteHandler,
) -> None:
    """The overview's decision counters select on ``decided_ms`` / ``alert_ms``: a numeric
    range the index answers (a range on ``decided_at`` made SQLite parse every decision's date)."""
    from storage.repositories.base import add_ms_range
    from storage.repositories.decisions import ALERT_MS, DECIDED_MS, DecisionRepository

    indexes = [dict(m.document) for m in DecisionRepository.embedded_indexes or ()]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    t0 = datetime(2026, 1, 15, tzinfo=UTC)
    docs = []
    for i in range(120):
        ms = int(t0.timestamp() * 1000) + i * 30_000
        docs.append({"_id": f"d{i}", DECIDED_MS: ms, **({ALERT_MS: ms} if i % 10 == 0 else {})})
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    since, until = t0 + timedelta(minutes=10), t0 + timedelta(minutes=20)
    for key, expected in ((DECIDED_MS, 20), (ALERT_MS, 2)):
        statements.clear()
        assert _count(handler, add_ms_range({}, key, since, until)) == expected
        (select,) = [s for s in statements if "COUNT" in s]
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any("USING" in str(row) and "INDEX" in str(row) for row in plan), plan


def test_an_alerts_related_alerts_and_an_analysts_queue_are_read_from_an_index(
    handler: NeoSQLiteHandler,
) -> None:
    """The alert detail lists the customer's other alerts (``customer_key``, no tenant) and an
    analyst's queue lists their alerts (``assignee``): the embedded store searches an index for
    such an equality only with one on the field alone."""
    from storage.repositories.alerts import AlertRepository

    indexes = [dict(m.document) for m in AlertRepository.indexes]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    docs = [
        {"_id": f"a{i}", "customer_key": f"t|c{i % 20}", "assignee": f"u{i % 30}"}
        for i in range(60)
    ]
    _insert_plain(handler, docs)
    for field, value, expected in (
        ("customer_key", "t|c3", ["a23", "a3", "a43"]),
        ("assignee", "u7", ["a37", "a7"]),
    ):
        statements = _traced(handler, "aml")
        assert _find(handler, {field: value}) == expected
        (select,) = [s for s in statements if field in s]
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any(f"USING INDEX idx_things_{field} (" in str(row) for row in plan), plan


def test_one_targets_audit_trail_and_an_actors_count_read_indexes(
    handler: NeoSQLiteHandler,
) -> None:
    """Who escalated an alert (checked on every decision of an escalated alert) and the audit
    page's count per actor: the log only grows, so neither may walk all of it."""
    from storage.repositories.audit_log import _SCALAR, AuditLogRepository
    from storage.repositories.base import scalar_filter

    indexes = [dict(m.document) for m in AuditLogRepository.embedded_indexes or ()]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    docs = [
        {
            "_id": i,
            "seq": i,
            "actor": f"u{i % 4}",
            "action": ["alert.assign", "alert.escalate"][i % 2],
            "target_type": "alert",
            "target_id": f"a{i % 10}",
        }
        for i in range(80)
    ]
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    trail = {"action": "alert.escalate", "target_type": "alert", "target_id": "a3"}
    assert len(_find(handler, trail)) == 8
    assert _count(handler, scalar_filter({"actor": "u1"}, _SCALAR)) == 20
    selects = [
        s for s in statements if s.lstrip().startswith("SELECT") and ("actor" in s or "a3" in s)
    ]
    assert len(selects) == 2, statements
    for select in selects:
        plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select).fetchall()
        assert any("USING" in str(row) and "INDEX" in str(row) for row in plan), (select, plan)


def test_the_transactions_pages_period_and_account_filters_read_indexes(
    handler: NeoSQLiteHandler,
) -> None:
    """The transactions page over a period (``occurred_ms``) or one account: its total and its
    page are found from the transactions' embedded indexes, not by reading every transaction."""
    from storage.repositories.base import scalar_filter
    from storage.repositories.transactions import _SCALAR, TransactionRepository

    indexes = [dict(m.document) for m in TransactionRepository.embedded_indexes or ()]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    docs = [
        {
            "_id": f"t{i}",
            "tenant": "t",
            "dedupe_key": f"K|{i}",
            "account_id": f"a{i % 7}",
            "occurred_ms": 1_000 * i,
            "risk_level": ["low", "high"][i % 2],
        }
        for i in range(70)
    ]
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    for query, expected in (
        ({"occurred_ms": {"$gte": 60_000}}, 10),
        ({"account_id": "a3"}, 10),
        ({"tenant": "t", "risk_level": {"$in": ["high"]}, "occurred_ms": {"$gte": 60_000}}, 5),
    ):
        statements.clear()
        assert _count(handler, scalar_filter(query, _SCALAR)) == expected
        assert len(_find(handler, query)) == expected
        selects = [s for s in statements if s.lstrip().startswith("SELECT") and "FROM things" in s]
        assert len(selects) == 2, statements
        for select in selects:
            plan = handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select)
            rows = [str(r) for r in plan.fetchall()]
            assert any("USING" in r and "INDEX" in r for r in rows), (select, rows)


def test_an_open_queue_by_deadline_is_read_in_an_index_order(
    handler: NeoSQLiteHandler,
) -> None:
    """The queue of open alerts sorted by deadline (what is due first): its filter and its
    order come from the ``(status, sla_due_ms)`` index, so a page is read without sorting every
    open alert; sorting on the date itself made SQLite sort them all."""
    from storage.repositories.alerts import _SORT_FIELD, AlertRepository

    indexes = [dict(m.document) for m in AlertRepository.indexes]
    body = {"createIndexes": "things", "indexes": indexes, "$db": "aml"}
    assert handler.handle_command(_msg(body))[1]["ok"] == 1
    docs = [
        {"_id": f"a{i:02d}", "status": ["open", "closed"][i % 2], "sla_due_ms": 1_000 * (60 - i)}
        for i in range(60)
    ]
    _insert_plain(handler, docs)
    statements = _traced(handler, "aml")
    find = {
        "find": "things",
        "filter": {"status": "open"},
        "sort": {_SORT_FIELD["sla_due_at"]: 1, "_id": 1},
        "skip": 2,
        "limit": 3,
        "$db": "aml",
    }
    reply = handler.handle_command(_msg(find))[1]
    assert [d["_id"] for d in reply["cursor"]["firstBatch"]] == ["a54", "a52", "a50"]
    (select,) = [s for s in statements if "sla_due_ms" in s and "ORDER BY" in s.upper()]
    plan = [str(r) for r in handler.get_database("aml").db.execute("EXPLAIN QUERY PLAN " + select)]
    assert any("USING INDEX idx_things_status_sla_due_ms" in r for r in plan), plan
    assert not any("TEMP B-TREE FOR ORDER BY" in r for r in plan), plan
