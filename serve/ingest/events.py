"""What a parser hands to the ingress: one outcome per received event, plus parsing options."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aml.domain import IngestOutcome, Transaction
from aml.settings import Settings


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """The result of parsing one received body.

    ``dedupe_key`` is ``"ENTITY|ACTION|<id>"`` (tenant-free; storage prefixes the tenant) and is
    None only for invalid input and for failed commands, which carry no ids. ``transaction`` is
    set for ``ACCEPTED`` and ``CORRECTION``.
    """

    outcome: IngestOutcome
    tenant: str
    source: str  # "fineract" | "generic"
    entity: str | None
    action: str | None
    dedupe_key: str | None
    transaction: Transaction | None
    note: str | None = None  # human-readable reason, e.g. "command failed"


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """Limits and defaults applied while parsing.

    ``timezone`` is the institution's zone: Fineract business dates are local calendar dates in
    it. A date without a time of day becomes the hook's publish time when it is the same local
    day, else local noon (see ``serve.ingest.formats.resolve_occurred_at``).
    """

    default_currency: str = "XAF"
    max_amount_major: float = 1e12
    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=5 * 365)
    timezone: str = "Africa/Douala"
    default_tenant: str = "default"  # when a Fineract hook carries no tenant header

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseOptions:
        """Options as configured by the ``AML_*`` settings of this process."""
        return cls(
            default_currency=settings.default_currency,
            max_amount_major=settings.max_amount_major,
            max_future=timedelta(seconds=settings.max_future_seconds),
            max_age=timedelta(days=settings.max_age_days),
            timezone=settings.timezone,
            default_tenant=settings.default_tenant,
        )
