"""The store: one client, one database, every repository, ``ensure_indexes`` at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pymongo import AsyncMongoClient

from aml.settings import Settings
from storage import embedded
from storage.client import Document, make_client
from storage.repositories.ingest_log import IngestLogRepository
from storage.repositories.transactions import TransactionRepository

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger(__name__)


@dataclass
class Store:
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    transactions: TransactionRepository = field(init=False)
    ingest_log: IngestLogRepository = field(init=False)

    def __post_init__(self) -> None:
        self.transactions = TransactionRepository(self.db)
        self.ingest_log = IngestLogRepository(self.db)

    @property
    def repositories(self) -> list[object]:
        return [self.transactions, self.ingest_log]

    async def ensure_indexes(self) -> None:
        for repo in self.repositories:
            await repo.ensure_indexes()  # type: ignore[attr-defined]

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.client.close()


def resolve_mongodb_uri(settings: Settings, *, start_embedded: bool = True) -> str:
    """``AML_MONGODB_URI`` when set; otherwise the embedded server's URI (started if needed)."""
    if settings.mongodb_uri is not None:
        return settings.mongodb_uri.get_secret_value()
    server = embedded.status(settings.data_dir)
    if server is None:
        if not start_embedded:
            raise RuntimeError(
                "embedded store is not running; start it with `fineract-aml db start`"
            )
        server = embedded.start(
            settings.data_dir, host=settings.embedded_db_host, port=settings.embedded_db_port
        )
        log.info("embedded MongoDB-wire store started on %s", server.uri)
    return server.uri


def open_store(
    uri: str, db_name: str, *, timeout_ms: int = 5000, appname: str | None = None
) -> Store:
    client = make_client(uri, timeout_ms=timeout_ms, **({"appname": appname} if appname else {}))
    return Store(client=client, db=client.get_database(db_name))
