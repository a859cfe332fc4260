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
same way; whatever the handler wrote is committed before it answers. A command that is part of
a client session's transaction, or that arrives while the connection is already inside one, is
left to the handler. If the installed ``nx-27017`` lacks what is wrapped, the server starts
unwrapped and logs why.

Inserts also skip ``neosqlite``'s deep copy of each document (see :class:`_DecodedDocument`):
a document decoded from the wire for one command has no other holder.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
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


def one_transaction(
    handler: Handler, *, writes_only: bool, db_name_of: Callable[[Any], str]
) -> Handler:
    """``handler`` (a ``NeoSQLiteHandler`` method taking the parsed message) run inside one
    SQLite transaction on the message's database, when the message is a plain write."""

    @functools.wraps(handler)
    def wrapper(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        body = _body(msg)
        if body is None or "autocommit" in body or "startTransaction" in body:
            return handler(self, msg, *args, **kwargs)  # a client transaction: the handler's
        if writes_only and _command_name(body) not in WRITE_COMMANDS:
            return handler(self, msg, *args, **kwargs)
        db_name = db_name_of(msg)
        with self._lock_for(db_name):  # the lock the handler takes itself (re-entrant)
            conn = getattr(self.get_database(db_name), "db", None)
            if not isinstance(conn, sqlite3.Connection) or conn.in_transaction:
                return handler(self, msg, *args, **kwargs)
            conn.execute("BEGIN")
            try:
                result = handler(self, msg, *args, **kwargs)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")
            return result

    return wrapper


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
    insert_one = getattr(Collection, "insert_one", None)
    if not callable(insert_one) or getattr(insert_one, "__aml_shallow__", False):
        return
    wrapped = shallow_copied(insert_one)
    wrapped.__aml_shallow__ = True  # type: ignore[attr-defined]
    Collection.insert_one = wrapped  # type: ignore[method-assign]


def install() -> bool:
    """Wrap the installed ``nx-27017`` handler's write commands (and let inserts copy only
    the top level of a document). False (and a log line) when its internals are not the
    expected ones; the server then runs as shipped."""
    _install_shallow_insert()
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
    insert = one_transaction(cls.handle_insert, writes_only=False, db_name_of=db_name_of)
    command = one_transaction(cls.handle_command, writes_only=True, db_name_of=db_name_of)
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
