"""Read-only REST client for Apache Fineract (enrichment and reconciliation sweeps).

Basic auth plus ``Fineract-Platform-TenantId`` on every call, short timeouts, and a circuit
breaker: after ``failure_threshold`` consecutive failures (timeouts, connection errors, 5xx) calls
fail fast for ``cooldown`` seconds, then one trial call is let through (half-open). A slow or dead
Fineract therefore costs the ingress nothing but skipped enrichments.

Fineract serialises ``BigDecimal`` as JSON numbers with the database scale (``1500.500000``) and
``LocalDate`` as ``[y, m, d]``; numbers are parsed as ``Decimal``, never as floats.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

import httpx

from aml.errors import AmlError, NotFound, ServiceUnavailable
from aml.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/fineract-provider/api/v1"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class FineractUnavailable(ServiceUnavailable):
    """Fineract did not answer usefully (timeout, connection error, 5xx, or breaker open)."""

    code = "fineract_unavailable"


class CircuitBreaker:
    """Consecutive-failure circuit breaker.

    Args:
        failure_threshold: consecutive failures that open the breaker.
        cooldown: seconds the breaker stays open before one trial call is allowed.
        clock: monotonic clock (injectable for tests).
        on_change: called with the new state on every transition.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state (an open breaker whose cool-down passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return self._state

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            log.info("Fineract circuit breaker %s", state.value)
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """Whether a call may go out now (half-open lets exactly one trial through)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._set(BreakerState.HALF_OPEN)
            self._trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        """Record a call that got an answer."""
        self._failures = 0
        self._trial_in_flight = False
        self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        """Record a failed call."""
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)


def parse_json(text: str | bytes) -> Any:
    """Fineract JSON with every non-integer number as ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def parse_local_date(value: Any) -> date | None:
    """Fineract ``LocalDate`` (``[2024, 1, 15]``) to a ``date``; None when absent or malformed."""
    if isinstance(value, list) and len(value) >= 3 and all(isinstance(v, int) for v in value[:3]):
        try:
            return date(value[0], value[1], value[2])
        except ValueError:
            return None
    return None


def to_decimal(value: Any) -> Decimal | None:
    """A Fineract ``BigDecimal`` (already ``Decimal`` or ``int`` after ``parse_json``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (Decimal, int)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None


class FineractClient:
    """Async read-only Fineract client.

    Args:
        base_url: scheme, host and port (``https://fineract:8443``); the API prefix is added.
            A URL that already ends with ``/fineract-provider/api/v1`` is used as is.
        username / password: Basic-auth credentials of a read-only user.
        tenant: value of ``Fineract-Platform-TenantId``.
        timeout: per-call timeout in seconds (connect, read, write, pool).
        verify_tls: verify the server certificate.
        breaker: the circuit breaker (a default one when None).
        transport: httpx transport override (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: str,
        tenant: str = "default",
        timeout: float = 3.0,
        verify_tls: bool = True,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if not root.endswith(API_PREFIX):
            root += API_PREFIX
        self.breaker = breaker or CircuitBreaker()
        self._http = httpx.AsyncClient(
            base_url=root,
            auth=httpx.BasicAuth(username, password),
            headers={"Fineract-Platform-TenantId": tenant, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            verify=verify_tls,
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, breaker: CircuitBreaker | None = None
    ) -> FineractClient | None:
        """A client configured by ``AML_FINERACT_*``; None when no base URL is set."""
        if not settings.fineract_base_url:
            return None
        return cls(
            settings.fineract_base_url,
            username=settings.fineract_username or "",
            password=(
                settings.fineract_password.get_secret_value() if settings.fineract_password else ""
            ),
            tenant=settings.fineract_tenant,
            timeout=settings.fineract_timeout_s,
            verify_tls=settings.fineract_verify_tls,
            breaker=breaker,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET ``path`` (relative to the API root) and parse the JSON answer.

        Raises:
            NotFound: Fineract answered 404 (the resource does not exist).
            FineractUnavailable: breaker open, timeout, connection error, 5xx or a non-JSON body.
        """
        if not self.breaker.allow():
            raise FineractUnavailable("Fineract circuit breaker is open", path=path)
        try:
            response = await self._http.get(path, params=dict(params or {}))
        except httpx.HTTPError as exc:
            self.breaker.failure()
            raise FineractUnavailable(
                f"Fineract call failed: {type(exc).__name__}", path=path
            ) from None
        if response.status_code >= 500:
            self.breaker.failure()
            raise FineractUnavailable(f"Fineract answered {response.status_code}", path=path)
        self.breaker.success()  # any non-5xx answer shows Fineract is alive
        if response.status_code == 404:
            raise NotFound("not found in Fineract", path=path)
        if response.status_code >= 400:
            raise AmlError(f"Fineract answered {response.status_code}", path=path)
        try:
            return parse_json(response.content)
        except ValueError:
            raise FineractUnavailable("Fineract answered with invalid JSON", path=path) from None

    async def savings_transaction(self, savings_id: str, transaction_id: str) -> dict[str, Any]:
        """``GET /savingsaccounts/{id}/transactions/{txId}``."""
        return dict(
            await self.get_json(f"/savingsaccounts/{savings_id}/transactions/{transaction_id}")
        )

    async def loan_transaction(self, loan_id: str, transaction_id: str) -> dict[str, Any]:
        """``GET /loans/{id}/transactions/{txId}``."""
        return dict(await self.get_json(f"/loans/{loan_id}/transactions/{transaction_id}"))

    async def account_transfers(self, account_detail_id: str) -> list[dict[str, Any]]:
        """``GET /accounttransfers?accountDetailId=`` (the id a transfer hook carries)."""
        data = await self.get_json("/accounttransfers", {"accountDetailId": account_detail_id})
        items = data.get("pageItems", []) if isinstance(data, dict) else []
        return [dict(i) for i in items if isinstance(i, dict)]

    async def account_transfer(self, transfer_id: str) -> dict[str, Any]:
        """``GET /accounttransfers/{id}`` (a transfer *transaction* id, as account listings show
        in ``transfer.id``; not the detail id a transfer hook carries)."""
        return dict(await self.get_json(f"/accounttransfers/{transfer_id}"))

    async def savings_account(self, savings_id: str) -> dict[str, Any]:
        """``GET /savingsaccounts/{id}?associations=transactions``."""
        return dict(
            await self.get_json(f"/savingsaccounts/{savings_id}", {"associations": "transactions"})
        )

    async def loan(self, loan_id: str) -> dict[str, Any]:
        """``GET /loans/{id}?associations=transactions``."""
        return dict(await self.get_json(f"/loans/{loan_id}", {"associations": "transactions"}))
