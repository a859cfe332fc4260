"""MongoDB client factory (pymongo's native ``AsyncMongoClient``; Motor is deprecated)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

APPNAME = "fineract-aml"

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
