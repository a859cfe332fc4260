"""Prometheus metrics of the ingress: one registry per app instance (no module-level globals).

The ingress serves them as text on ``GET /metrics`` (see ``serve.ingress.app`` for who may read
them). Label values are bounded: sources, outcomes and reasons come from fixed vocabularies, never
from request data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Ack latency must stay far below Fineract's 10 s timeout; buckets resolve the 1-100 ms range.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class IngressMetrics:
    """Counters and histograms of one ingress process."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "aml_ingest_events_total",
            "Events answered, by source and outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "aml_ingest_rejected_requests_total",
            "Requests refused before parsing (wrong secret, bad signature, too large)",
            ["source", "reason"],
            registry=r,
        )
        self.ack_latency = Histogram(
            "aml_ingest_ack_seconds",
            "Time from request received to durable ack",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "aml_ingest_batch_size", "Events per group commit", buckets=_BATCH_BUCKETS, registry=r
        )
        self.store_write = Histogram(
            "aml_ingest_store_write_seconds",
            "Duration of one group commit to the store",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_failures = Counter(
            "aml_ingest_store_failures_total",
            "Group commits that failed and went to the spool",
            registry=r,
        )
        self.store_overloads = Counter(
            "aml_ingest_store_overloads_total",
            "Times the store fell behind and acks switched to the spool",
            registry=r,
        )
        self.spooled_events = Counter(
            "aml_ingest_spooled_events_total",
            "Events acknowledged from the local spool",
            registry=r,
        )
        self.replayed_events = Counter(
            "aml_ingest_replayed_events_total", "Spooled events replayed into the store", registry=r
        )
        self.replay_deferred_seconds = Counter(
            "aml_ingest_replay_deferred_seconds_total",
            "Time spool replays waited for the event loop to have time to spare (acks first)",
            registry=r,
        )
        self.spool_corrupt_records = Counter(
            "aml_ingest_spool_corrupt_records_total",
            "Spool records ignored because their checksum failed (torn writes)",
            registry=r,
        )
        self.spool_bytes = Gauge("aml_ingest_spool_bytes", "Bytes waiting in the spool", registry=r)
        self.store_available = Gauge(
            "aml_ingest_store_available", "1 when events go straight to the store", registry=r
        )
        self.handoffs = Counter(
            "aml_ingest_handoff_transactions_total",
            "Transactions handed to scoring",
            ["result"],
            registry=r,
        )
        self.enrichment = Counter(
            "aml_ingest_enrichment_total", "Fineract read-backs, by result", ["result"], registry=r
        )
        self.breaker_open = Gauge(
            "aml_fineract_breaker_open", "1 while the Fineract circuit breaker is open", registry=r
        )

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)
