"""Entry point of the embedded store: ``nx-27017`` with one SQLite transaction per write command.

``nx-27017`` runs SQLite in autocommit mode and writes a multi-document command (an
``insert`` of many documents, an ``update`` matching many) one statement at a time, so every
document is its own SQLite transaction with its own WAL commit: ≈ 150 µs of a ≈ 300 µs insert
here, against ≈ 20 µs per row inside one transaction. This module wraps the handler's write
commands in ``BEGIN`` … ``COMMIT`` on the database's connection, under the handler's own
per-database lock (other clients' commands wait for that lock anyway, so none runs inside our
transaction), then starts the server exactly as ``python -m nx_27017.nx_27017`` does.

Semantics are unchanged: a statement that fails (a duplicate key in an unordered insert) fails
alone inside the transaction as it did alone outside it, and the handler's answer lists it the
same way; whatever the handler wrote is committed before it answers. Should SQLite itself end
the transaction midway (a full disk, an I/O error), the command is answered as failed rather
than with the handler's count of writes that were undone. A command that is part of
a client session's transaction, or that arrives while the connection is already inside one, is
left to the handler. If the installed ``nx-27017`` lacks what is wrapped, the server starts
unwrapped and logs why.

Two shapes of write skip the handler's per-document Python path and run in SQL on the same
connection, with the same rows and answers: inserts of plain documents (:func:`insert_plain`)
and ``$set`` of string fields by ``_id`` (:func:`set_by_ids`); anything else goes to the handler.
Inserts the handler runs skip ``neosqlite``'s deep copy of each document (see
:class:`_DecodedDocument`): a document decoded from the wire for one command has no other
holder.

WAL checkpoints run on a thread of their own (see :class:`WalCheckpointer`) instead of inside
the commit that happens to cross SQLite's 1,000-page mark, where they held the lock every
client waits on while they copied pages and synced the file.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("fineract_aml.embedded_store")

# The commands of ``handle_command`` that write; everything else there (finds, aggregates,
# hello, index builds...) runs as before.
WRITE_COMMANDS = frozenset({"update", "delete", "findAndModify", "findandmodify", "bulkWrite"})

Handler = Callable[..., Any]


def _body(msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict):
        return None
    for section_type, doc in msg.get("sections", ()):
        if section_type == "body" and isinstance(doc, dict):
            return doc
    return None


def _command_name(body: dict[str, Any]) -> str | None:
    for key in body:
        if not key.startswith("$"):
            return str(key)
    return None


# ``$set`` of top-level string fields on documents chosen by ``_id`` (``$in``) and equalities on
# top-level string fields: how the pipeline marks a batch of transactions scored. nx-27017 runs
# such an update one document at a time (select it, decode its JSON in Python, rewrite it): the
# largest holder of the store's lock at 1,000 hooks/s (about 0.27 ms per document). One SQL
# ``UPDATE`` with ``json_set`` gives the same documents and the same answer.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_UPDATE_BODY_KEYS = frozenset(
    {
        "update",
        "updates",
        "ordered",
        "$db",
        "lsid",
        "writeConcern",
        "$clusterTime",
        "$readPreference",
        "maxTimeMS",  # (pymongo.timeout() sends it; nx-27017 ignores it)
    }
)
_MAX_IDS = 10_000  # well below SQLite's limit on bound parameters


_SetStatement = tuple[list[str], dict[str, str], dict[str, str]]  # ids, equalities, fields set
_MAX_STATEMENTS = 16


def _set_statement(spec: Any) -> _SetStatement | None:
    if not isinstance(spec, dict):
        return None
    if set(spec) - {"q", "u", "multi", "upsert"} or spec.get("upsert") or not spec.get("multi"):
        return None
    q, u = spec.get("q"), spec.get("u")
    if not isinstance(q, dict) or not isinstance(u, dict) or list(u) != ["$set"]:
        return None
    by_id = q.get("_id")
    if not isinstance(by_id, dict) or list(by_id) != ["$in"]:
        return None
    ids = by_id["$in"]
    if not isinstance(ids, list) or not 0 < len(ids) <= _MAX_IDS:
        return None
    if not all(type(i) is str for i in ids):
        return None
    equal = {k: v for k, v in q.items() if k != "_id"}
    fields = u["$set"]
    if not isinstance(fields, dict) or not fields or "_id" in fields:
        return None
    for part in (equal, fields):
        for key, value in part.items():
            if type(key) is not str or not _FIELD.fullmatch(key) or type(value) is not str:
                return None
    return ids, equal, fields


def _set_by_ids(msg: Any, body: dict[str, Any]) -> tuple[str, list[_SetStatement]] | None:
    """``(collection, statements)`` when every statement of the update command has that shape
    (a bulk of them, as ``bulk_write`` of ``UpdateMany`` sends, is one command)."""
    if body.get("update") is None or not set(body) <= _UPDATE_BODY_KEYS:
        return None
    updates = body.get("updates")
    if updates is None:
        for section_type, doc in msg.get("sections", ()):
            if section_type == "payload" and isinstance(doc, dict) and "updates" in doc:
                updates = doc["updates"]
    if not isinstance(updates, list) or not 0 < len(updates) <= _MAX_STATEMENTS:
        return None
    statements = [_set_statement(spec) for spec in updates]
    if any(st is None for st in statements):
        return None
    return str(body["update"]), [st for st in statements if st is not None]


def set_by_ids(
    handler: Any, conn: sqlite3.Connection, msg: Any, body: dict[str, Any]
) -> dict[str, Any] | None:
    """The answer of an update of the ``_set_by_ids`` shape, applied in SQL on ``conn``; None
    when the command is of another shape (or its collection is not a plain JSON-text table),
    for the handler to run. A statement failing in SQL undoes the command's earlier ones too
    (the handler then runs the whole command and answers the failure)."""
    shape = _set_by_ids(msg, body)
    if shape is None or _in_client_transaction(handler, body):
        return None
    collection, statements = shape
    table = _json_table(conn, collection)
    if table is None:
        return None
    matched = modified = 0
    conn.execute("SAVEPOINT set_by_ids")
    try:
        for ids, equal, fields in statements:
            m, n = _set_in_sql(conn, table, ids, equal, fields)
            matched += m
            modified += n
    except sqlite3.Error:
        if conn.in_transaction:  # (else SQLite has rolled the whole transaction back)
            conn.execute("ROLLBACK TO set_by_ids")
            conn.execute("RELEASE set_by_ids")
        raise
    conn.execute("RELEASE set_by_ids")
    return {"n": matched, "nModified": modified, "ok": 1}


def _set_in_sql(
    conn: sqlite3.Connection,
    table: str,
    ids: list[str],
    equal: dict[str, str],
    fields: dict[str, str],
) -> tuple[int, int]:
    """One statement: ``(matched, modified)``."""
    where = [f"_id IN ({', '.join('?' * len(ids))})", "json_type(data, '$._id') = 'text'"]
    params: list[Any] = list(ids)
    for key, value in equal.items():
        where.append("json_extract(data, ?) = ?")
        params += [f"$.{key}", value]
    clause = " AND ".join(where)
    (matched,) = conn.execute(f"SELECT count(*) FROM {table} WHERE {clause}", params).fetchone()
    set_params: list[Any] = []
    changed: list[str] = []
    changed_params: list[Any] = []
    for key, value in fields.items():
        set_params += [f"$.{key}", value]
        changed.append("json_extract(data, ?) IS NOT ?")
        changed_params += [f"$.{key}", value]
    cursor = conn.execute(
        f"UPDATE {table} SET data = json_set(data, {', '.join('?, ?' for _ in fields)}) "
        f"WHERE {clause} AND ({' OR '.join(changed)})",
        [*set_params, *params, *changed_params],
    )
    return int(matched), int(cursor.rowcount)


def _json_table(conn: sqlite3.Connection, collection: str) -> str | None:
    """The quoted table of ``collection`` when it exists and keeps its documents as JSON text
    (neosqlite's ``data`` and ``_id`` columns); None otherwise (no such table, or JSONB)."""
    columns = {
        row[1]: str(row[2]).upper()
        for row in conn.execute("SELECT * FROM pragma_table_info(?)", (collection,))
    }
    if columns.get("_id") != "TEXT" or columns.get("data") != "TEXT":
        return None
    return '"' + collection.replace('"', '""') + '"'


def _in_client_transaction(handler: Any, body: dict[str, Any]) -> bool:
    """Whether the command's session has a transaction open (the handler then decides what a
    command outside it may do); True when that cannot be told."""
    lsid = body.get("lsid")
    if not lsid:
        return False
    try:
        from nx_27017.wire_protocol import _extract_session_id

        session_id = _extract_session_id(lsid)
        return session_id is not None and bool(handler._tx_sessions(session_id))
    except Exception:
        return True


# ``insert`` of documents with a string ``_id`` and nothing but JSON values and datetimes: how
# the product writes every collection. nx-27017 copies each document twice on the way (to
# convert ObjectIds, then bytes, that are not there), asks SQLite whether the JSON it has just
# encoded is valid, lists the database's tables, and calls through three layers per document.
# The same encoder (neosqlite's) and the same INSERT per document give the same rows and the
# same answer; any other document sends the whole command to the handler.
_INSERT_BODY_KEYS = frozenset(
    {
        "insert",
        "documents",
        "ordered",
        "$db",
        "lsid",
        "$clusterTime",
        "$readPreference",
        "maxTimeMS",  # (pymongo.timeout() sends it; nx-27017 ignores it)
    }
)


class _NotPlain(Exception):
    """A value the handler would convert before encoding it (ObjectId, bytes, Binary...)."""


@functools.cache
def _plain_encoder() -> json.JSONEncoder:
    from neosqlite.collection.json_helpers import NeoSQLiteJSONEncoder

    class PlainEncoder(NeoSQLiteJSONEncoder):
        def default(self, obj: Any) -> Any:
            if isinstance(obj, datetime.date):  # datetimes too
                return super().default(obj)
            raise _NotPlain

    # json.dumps(obj, cls=NeoSQLiteJSONEncoder) but refusing NaN and infinities, which make
    # JSON that neosqlite's validation rejects (the handler answers that error itself).
    return PlainEncoder(allow_nan=False)


def _insert_documents(msg: Any, body: dict[str, Any]) -> list[Any]:
    """The documents of an insert command, gathered as nx-27017's handler gathers them."""
    docs: list[Any] = []
    for section_type, doc in msg.get("sections", ()):
        if section_type == "payload_docs":
            docs.extend(doc)
        elif section_type == "payload" and isinstance(doc, dict):
            for value in doc.values():
                if isinstance(value, list):
                    docs.extend(value)
                elif isinstance(value, dict):
                    docs.append(value)
    documents = body.get("documents")
    if isinstance(documents, list):
        docs.extend(documents)
    return docs


def _bulk_write_error(exc: Exception, index: int) -> dict[str, Any]:
    """The write error nx-27017's handler answers for a failed document."""
    from nx_27017.handler import _bulk_write_error

    error: dict[str, Any] = _bulk_write_error(exc, index)
    return error


def insert_plain(
    handler: Any, conn: sqlite3.Connection, msg: Any, body: dict[str, Any]
) -> dict[str, Any] | None:
    """The answer of an insert of plain documents (see above), written in SQL on ``conn``;
    None when the command holds anything else, for the handler to run."""
    collection = body.get("insert")
    if not set(body) <= _INSERT_BODY_KEYS or type(collection) is not str:
        return None
    if not _FIELD.fullmatch(collection) or _in_client_transaction(handler, body):
        return None  # (GridFS and other dotted names too)
    docs = _insert_documents(msg, body)
    if not docs:
        return None
    encode = _plain_encoder().encode
    rows: list[tuple[str, str]] = []
    try:
        for doc in docs:
            doc_id = doc.get("_id") if type(doc) is dict else None
            if type(doc_id) is not str:
                return None
            rows.append((encode(doc), doc_id))
    except (_NotPlain, ValueError, TypeError, RecursionError):
        return None
    table = _json_table(conn, collection)
    if table is None:
        return None  # the handler creates the collection
    sql = f"INSERT INTO {table}(data, _id) VALUES (?, ?)"
    ordered = body.get("ordered", True)
    inserted: list[str] = []
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        try:
            conn.execute(sql, row)
        except sqlite3.Error as exc:
            if not conn.in_transaction:
                # SQLite rolled the whole transaction back (RAISE(ROLLBACK) in a trigger, a
                # full disk, an I/O error), with the rows inserted before this one: answering
                # them as inserted would acknowledge writes that are gone. The handler runs
                # the command again, in autocommit, and answers what it stored.
                raise
            errors.append(_bulk_write_error(exc, index))
            if ordered:
                break
            continue
        inserted.append(row[1])
    answer: dict[str, Any] = {"ok": 1, "n": len(inserted), "insertedIds": inserted}
    if errors:
        answer["writeErrors"] = errors
    return answer


FastPath = Callable[[Any, sqlite3.Connection, Any, dict[str, Any]], dict[str, Any] | None]

# The answer to a write whose transaction SQLite rolled back while the handler ran it: a failed
# command (the driver raises), never the handler's count of what it believed written.
ROLLED_BACK_ANSWER: dict[str, Any] = {
    "ok": 0,
    "code": 1,
    "codeName": "InternalError",
    "errmsg": "the write was interrupted (its SQLite transaction was rolled back); "
    "part of it may be stored: retry it",
}


def one_transaction(
    handler: Handler,
    *,
    writes_only: bool,
    db_name_of: Callable[[Any], str],
    fast_path: FastPath | None = None,
) -> Handler:
    """``handler`` (a ``NeoSQLiteHandler`` method taking the parsed message) run inside one
    SQLite transaction on the message's database, when the message is a plain write.

    ``fast_path(handler, conn, msg, body)`` answers the commands it can in SQL (None for the
    others) in nx-27017's files mode, one SQLite file per database; a single file shared by
    every database keeps the handler's own code."""

    @functools.wraps(handler)
    def wrapper(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        body = _body(msg)
        if body is None or "autocommit" in body or "startTransaction" in body:
            return handler(self, msg, *args, **kwargs)  # a client transaction: the handler's
        if writes_only and _command_name(body) not in WRITE_COMMANDS:
            return handler(self, msg, *args, **kwargs)
        db_name = db_name_of(msg)
        with self._lock_for(db_name):  # the lock the handler takes itself (re-entrant)
            database = self.get_database(db_name)
            conn = getattr(database, "db", None)
            if not isinstance(conn, sqlite3.Connection) or conn.in_transaction:
                return handler(self, msg, *args, **kwargs)
            checkpoint_aside(self, database, conn)
            conn.execute("BEGIN")
            try:
                fast = None
                if fast_path is not None and getattr(self, "_mode", "single") != "single":
                    try:
                        fast = fast_path(self, conn, msg, body)
                    except sqlite3.Error:
                        # Undone (the failed statement alone, or the whole transaction when
                        # SQLite ended it): the handler runs the command and answers the failure
                        # the way it answers every write error.
                        fast = None
                if fast is not None:
                    result = (msg["request_id"], fast)
                elif conn.in_transaction:
                    result = handler(self, msg, *args, **kwargs)
                    if not conn.in_transaction:
                        # SQLite ended the transaction inside the handler (RAISE(ROLLBACK) in a
                        # trigger, a full disk, an I/O error): what it wrote before that is gone,
                        # what it wrote after was committed alone, and its answer counts both.
                        # The client is told the command failed, and retries it or keeps it.
                        log.error("a %s was rolled back by SQLite midway", _command_name(body))
                        result = (msg["request_id"], dict(ROLLED_BACK_ANSWER))
                else:
                    # The fast path's transaction was rolled back: the handler runs the command
                    # in autocommit and answers what it stored.
                    result = handler(self, msg, *args, **kwargs)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")
            return result

    return wrapper


# A checkpoint copies the WAL's pages into the database file and syncs it: 10-20 ms here. SQLite
# runs it inside whichever commit crosses ``wal_autocheckpoint`` pages (1,000 by default), so
# one write command in ten held the database's lock that long (half the commit time of a
# sustained insert stream). A checkpoint on another connection needs no lock of ours and runs
# with the GIL released; the writers' own threshold stays as a backstop should it fall behind.
CHECKPOINT_INTERVAL = 0.2  # seconds between looks at the WAL files
CHECKPOINT_MIN_BYTES = 1 << 20  # a WAL smaller than this is left to grow
BACKSTOP_PAGES = 16_384  # 64 MiB: writers checkpoint themselves only past this


class WalCheckpointer:
    """Checkpoints (``PASSIVE``: never waits for readers or writers) the WAL of every SQLite
    database file in ``data_dir`` that has grown past ``min_bytes``, every ``interval``
    seconds, on a daemon thread and connections of its own."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        interval: float = CHECKPOINT_INTERVAL,
        min_bytes: int = CHECKPOINT_MIN_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.interval = interval
        self.min_bytes = min_bytes
        self.frames_copied = 0  # into the database files since start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # never let the thread die: writers would fall back to the backstop
                log.exception("WAL checkpoint pass failed")

    def run_once(self) -> dict[str, tuple[int, int, int]]:
        """One pass; ``{file name: (busy, WAL frames, frames checkpointed)}`` of the files
        checkpointed."""
        done: dict[str, tuple[int, int, int]] = {}
        try:
            names = sorted(os.listdir(self.data_dir))
        except OSError:
            return done
        for name in names:
            if not name.endswith(".db"):
                continue
            path = self.data_dir / name
            try:
                if os.path.getsize(f"{path}-wal") < self.min_bytes:
                    continue
            except OSError:  # no WAL (or the database was dropped meanwhile)
                continue
            try:
                # mode=rw: a file dropped since the listing is not created again, empty.
                conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, isolation_level=None)
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint of %s skipped: %s", name, exc)
                continue
            done[name] = (int(row[0]), int(row[1]), int(row[2]))
            self.frames_copied += max(int(row[2]), 0)
        return done


_checkpointers: dict[str, WalCheckpointer] = {}
_checkpointers_lock = threading.Lock()


def checkpoint_aside(handler: Any, database: Any, conn: sqlite3.Connection) -> None:
    """Move the WAL checkpoints of ``handler``'s database files to a :class:`WalCheckpointer`
    (started on the first write) and raise ``conn``'s own threshold to the backstop.

    Only in nx-27017's files mode, one SQLite file per database; a single shared file or an
    in-memory store keeps SQLite's own checkpoints."""
    data_dir = getattr(handler, "_data_dir", None)
    if getattr(handler, "_mode", None) != "files" or not isinstance(data_dir, str):
        return
    marks = getattr(database, "__dict__", None)
    if not isinstance(marks, dict) or marks.get("_aml_checkpoints_aside"):
        return  # (neosqlite answers any unknown attribute with a collection: read the dict)
    with _checkpointers_lock:
        if data_dir not in _checkpointers:
            checkpointer = WalCheckpointer(
                data_dir, interval=CHECKPOINT_INTERVAL, min_bytes=CHECKPOINT_MIN_BYTES
            )
            checkpointer.start()
            _checkpointers[data_dir] = checkpointer
    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    marks["_aml_checkpoints_aside"] = True


def stop_checkpointer(data_dir: str) -> None:
    """Stop the checkpointer of ``data_dir``, if one runs (the next write starts another)."""
    with _checkpointers_lock:
        checkpointer = _checkpointers.pop(os.path.abspath(data_dir), None)
    if checkpointer is not None:
        checkpointer.stop()


class _DecodedDocument(dict[str, Any]):
    """A document the server decoded from the wire for one insert.

    ``neosqlite`` deep-copies every document it inserts so as not to touch its caller's object
    (≈ 15 % of the store's CPU under load). The insert only sets ``_id`` on the top level and
    rebuilds every nested container while converting bytes, so a copy of the top level leaves
    the caller's object exactly as untouched."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return dict(self)


def shallow_copied(insert_one: Handler) -> Handler:
    """``Collection.insert_one`` handing the document down as a :class:`_DecodedDocument`."""

    @functools.wraps(insert_one)
    def wrapper(self: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        if type(document) is dict:
            document = _DecodedDocument(document)
        return insert_one(self, document, *args, **kwargs)

    return wrapper


def _install_shallow_insert() -> None:
    try:
        from neosqlite.collection import Collection
    except ImportError as exc:
        log.warning("neosqlite internals not as expected (%s); inserts deep-copy", exc)
        return
    _wrap_once(Collection, "insert_one", shallow_copied)


def _wrap_once(cls: Any, name: str, wrap: Callable[[Handler], Handler]) -> None:
    """Replace ``cls.name`` by ``wrap(cls.name)``, unless it is already wrapped so."""
    method = getattr(cls, name, None)
    marker = f"__aml_{wrap.__name__}__"
    if not callable(method) or getattr(method, marker, False):
        return
    wrapped = wrap(method)
    setattr(wrapped, marker, True)
    setattr(cls, name, wrapped)


# Identifier fields that hold one string or number in every document of this product (never
# an array) and lead an index of their own: a ``$in`` over them is answered from it (see
# :func:`indexed_in`); ``dedupe_key`` has one beside the unique ``(tenant, dedupe_key)`` pair on
# the transactions, for the ingress's duplicate look-ups. Low-cardinality fields (``status``,
# ``risk_level``) are left out on purpose: an index on them would tempt SQLite's planner (which
# has no statistics here) away from the selective identifier beside them.
SCALAR_ID_FIELDS = frozenset(
    {"account_id", "counterparty_account_id", "client_id", "open_key", "dedupe_key"}
)


def _scalar_in(value: Any) -> list[Any] | None:
    """The values of ``{"$in": [...]}`` when the filter is just that and every value is a
    string or a number (a boolean, null, date or container needs the handler's semantics)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    values = value.get("$in")
    if not isinstance(values, list) or not values:
        return None
    for v in values:
        if type(v) not in (str, int, float):
            return None
    return values


def indexed_in(build_field_clause: Handler, json_path: Callable[[str], str]) -> Handler:
    """``neosqlite``'s WHERE clause of one field, with ``{field: {"$in": [...]}}`` on an indexed
    identifier of :data:`SCALAR_ID_FIELDS` as ``json_extract(data, path) IN (...)``.

    ``neosqlite`` writes every ``$in`` as an ``EXISTS`` over ``json_each`` (so that an array
    field matches when it holds one of the values), which no index can serve: a ``$in`` of three
    accounts read all 60,000 documents of a collection (≈ 180 ms). For an indexed field it
    already treats an equality as a scalar one for the same reason (its issue #99); the fields
    above never hold arrays, so the ``IN`` matches exactly what the ``EXISTS`` did."""

    @functools.wraps(build_field_clause)
    def wrapper(self: Any, field: str, value: Any) -> Any:
        values = _scalar_in(value) if field in SCALAR_ID_FIELDS else None
        if values is not None and self._field_has_index(field):
            marks = ", ".join("?" for _ in values)
            prefix = self.jsonb.json_function_prefix
            return f"{prefix}_extract(data, '{json_path(field)}') IN ({marks})", list(values)
        return build_field_clause(self, field, value)

    return wrapper


def _install_indexed_in() -> None:
    try:
        from neosqlite.collection.query_helper._sql_query_builder import (
            SqlQueryBuilderMixin,
            parse_json_path,
        )
    except ImportError as exc:
        log.warning("neosqlite internals not as expected (%s); $in reads scan", exc)
        return

    def indexed_in_sql(build: Handler) -> Handler:
        return indexed_in(build, parse_json_path)

    _wrap_once(SqlQueryBuilderMixin, "_build_field_clause", indexed_in_sql)


def install() -> bool:
    """Wrap the installed ``nx-27017`` handler's write commands (and let inserts copy only
    the top level of a document). False (and a log line) when its internals are not the
    expected ones; the server then runs as shipped."""
    _install_shallow_insert()
    _install_indexed_in()
    try:
        from nx_27017 import handler as nx_handler

        cls = nx_handler.NeoSQLiteHandler
        db_name_of = nx_handler._msg_db_name
        for name in ("handle_insert", "handle_command", "_lock_for", "get_database"):
            if not callable(getattr(cls, name, None)):
                raise AttributeError(name)
    except (ImportError, AttributeError) as exc:
        log.warning("nx-27017 internals not as expected (%s); writes commit per document", exc)
        return False
    if getattr(cls.handle_insert, "__aml_one_transaction__", False):
        return True
    try:
        _plain_encoder()
        if not callable(nx_handler._bulk_write_error):
            raise AttributeError("_bulk_write_error")
        fast_insert: FastPath | None = insert_plain
    except (ImportError, AttributeError) as exc:
        log.warning("neosqlite internals not as expected (%s); inserts go to the handler", exc)
        fast_insert = None
    insert = one_transaction(
        cls.handle_insert, writes_only=False, db_name_of=db_name_of, fast_path=fast_insert
    )
    command = one_transaction(
        cls.handle_command, writes_only=True, db_name_of=db_name_of, fast_path=set_by_ids
    )
    insert.__aml_one_transaction__ = True  # type: ignore[attr-defined]
    command.__aml_one_transaction__ = True  # type: ignore[attr-defined]
    cls.handle_insert = insert
    cls.handle_command = command
    return True


def main() -> None:
    install()
    from nx_27017.nx_27017 import main as nx_main

    from aml.gc_tuning import collect_rarely

    collect_rarely()  # the server's modules stay out of the collector's passes
    nx_main()


if __name__ == "__main__":
    main()
