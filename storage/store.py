"""The store: one client, one database, every repository, ``ensure_indexes`` at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pymongo import AsyncMongoClient

from aml.settings import Settings
from storage import embedded
from storage.client import Document, make_client
from storage.repositories.alerts import AlertRepository
from storage.repositories.audit_log import AuditLogRepository
from storage.repositories.base import Repository, is_embedded_server
from storage.repositories.cases import CaseRepository
from storage.repositories.credit_profiles import CreditProfileRepository
from storage.repositories.credit_requests import CreditRequestRepository
from storage.repositories.decisions import DecisionRepository
from storage.repositories.ingest_log import IngestLogRepository
from storage.repositories.jobs import DriftRepository, JobRepository
from storage.repositories.models import ModelRepository
from storage.repositories.refresh_tokens import RefreshTokenRepository
from storage.repositories.rule_config import RuleConfigRepository
from storage.repositories.transactions import TransactionRepository
from storage.repositories.users import UserRepository

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger(__name__)


@dataclass
class Store:
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    transactions: TransactionRepository = field(init=False)
    ingest_log: IngestLogRepository = field(init=False)
    decisions: DecisionRepository = field(init=False)
    alerts: AlertRepository = field(init=False)
    cases: CaseRepository = field(init=False)
    users: UserRepository = field(init=False)
    refresh_tokens: RefreshTokenRepository = field(init=False)
    audit_log: AuditLogRepository = field(init=False)
    credit_profiles: CreditProfileRepository = field(init=False)
    credit_requests: CreditRequestRepository = field(init=False)
    models: ModelRepository = field(init=False)
    rule_config: RuleConfigRepository = field(init=False)
    jobs: JobRepository = field(init=False)
    drift: DriftRepository = field(init=False)

    def __post_init__(self) -> None:
        self.transactions = TransactionRepository(self.db)
        self.ingest_log = IngestLogRepository(self.db)
        self.decisions = DecisionRepository(self.db)
        self.alerts = AlertRepository(self.db)
        self.cases = CaseRepository(self.db)
        self.users = UserRepository(self.db)
        self.refresh_tokens = RefreshTokenRepository(self.db)
        self.audit_log = AuditLogRepository(self.db)
        self.credit_profiles = CreditProfileRepository(self.db)
        self.credit_requests = CreditRequestRepository(self.db)
        self.models = ModelRepository(self.db)
        self.rule_config = RuleConfigRepository(self.db)
        self.jobs = JobRepository(self.db)
        self.drift = DriftRepository(self.db)

    @property
    def repositories(self) -> list[Repository]:
        return [
            self.transactions,
            self.ingest_log,
            self.decisions,
            self.alerts,
            self.cases,
            self.users,
            self.refresh_tokens,
            self.audit_log,
            self.credit_profiles,
            self.credit_requests,
            self.models,
            self.rule_config,
            self.jobs,
            self.drift,
        ]

    async def ensure_indexes(self) -> None:
        embedded_server = await self.is_embedded()
        for repo in self.repositories:
            await repo.ensure_indexes(embedded=embedded_server)

    async def is_embedded(self) -> bool:
        """Whether the server is the embedded MongoDB-wire store (``nx-27017``)."""
        return await is_embedded_server(self.client.admin)

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
