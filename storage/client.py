"""MongoDB client factory (pymongo's native ``AsyncMongoClient``; Motor is deprecated)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from aml.errors import ServiceUnavailable

APPNAME = "fineract-aml"
log = logging.getLogger(__name__)

Document = dict[str, Any]


def make_client(
    uri: str, *, timeout_ms: int = 5000, appname: str = APPNAME
) -> AsyncMongoClient[Document]:
    """Create an ``AsyncMongoClient`` with the product's defaults.

    ``tz_aware`` returns aware UTC datetimes; timeouts keep a dead store from hanging callers
    (the ingress falls back to its spool instead).
    """
    return AsyncMongoClient(
        uri,
        appname=appname,
        tz_aware=True,
        connect=False,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 4, 10_000),
        retryWrites=False,
    )


def get_database(client: AsyncMongoClient[Document], name: str) -> AsyncDatabase[Document]:
    return client.get_database(name)


def unavailable_error(exc: BaseException) -> ServiceUnavailable | None:
    """The error a person is shown when ``exc`` says the store could not be reached or did not
    answer in time (503, naming the driver's error: worth a retry later), or None when ``exc``
    is anything else (the store refused the command itself, or it is not a store error)."""
    timed_out = isinstance(exc, PyMongoError) and exc.timeout
    if not (isinstance(exc, ConnectionFailure) or timed_out):
        return None
    return ServiceUnavailable(
        "the database is unreachable or did not answer in time; retry shortly",
        reason=type(exc).__name__,
    )


@contextlib.contextmanager
def unavailable_as_error() -> Iterator[None]:
    """Raise :func:`unavailable_error` instead of the driver's error when the store is
    unavailable inside the block (other errors pass unchanged)."""
    try:
        yield
    except PyMongoError as exc:
        error = unavailable_error(exc)
        if error is None:
            raise
        log.warning("store unavailable: %s", exc)
        raise error from exc
