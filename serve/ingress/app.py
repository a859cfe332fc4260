"""The ingress app factory.

Routes:
    ``POST|GET /webhooks/fineract/<secret>/`` (and without the slash), ``POST /webhooks/generic``,
    ``GET /healthz`` (liveness), ``GET /readyz`` (readiness: store reachable or spool writable,
    and, when a scoring probe is given, Ray connected and the Serve application running; one JSON
    part per component, 503 when not ready; ``?scope=ingest`` leaves the scoring side out of the
    verdict but still reports it), ``GET /metrics`` (Prometheus text).

``/metrics`` is served to loopback peers (a sidecar or node agent scraping locally) and to
requests carrying ``Authorization: Bearer <metrics_token>`` when a token is configured; everyone
else gets 404. Behind a reverse proxy on the same host every peer looks like loopback, so set a
token there.

Run one worker per process: the group commit batches the requests of one event loop, and a
second worker would only halve the batches.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from sanic import Request, Sanic
from sanic.config import Config
from sanic.response import HTTPResponse, json, raw

from aml.errors import NotFound
from aml.settings import Settings
from serve.fineract_client import FineractClient
from serve.ingest.events import ParseOptions
from serve.ingress import IngressCtx, ctx_of, fineract_bp, generic_bp
from serve.ingress.committer import Committer
from serve.ingress.enrich import Enricher
from serve.ingress.errors import error_response
from serve.ingress.handoff import HandoffDispatcher, PendingSweeper, ScoringHandoff
from serve.ingress.spool import Spool
from serve.metrics import CONTENT_TYPE, IngressMetrics
from storage.store import Store, open_store, resolve_mongodb_uri

log = logging.getLogger(__name__)

IngressApp = Sanic[Config, IngressCtx]


class ComponentProbe(Protocol):
    """Status of components behind the ingress (e.g. Ray and Serve), for ``/readyz``."""

    async def __call__(self) -> Mapping[str, Mapping[str, Any]]:
        """One part per component, each with a boolean ``ok``."""
        ...


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    handoff: ScoringHandoff | None = None,
    fineract: FineractClient | None = None,
    metrics_token: str | None = None,
    scoring_probe: ComponentProbe | None = None,
    pending_sweep_interval: timedelta = timedelta(seconds=30),
    name: str = "fineract-aml-ingress",
) -> IngressApp:
    """Build the ingress.

    Args:
        settings: process settings.
        store: an open store to use (not closed by the app); by default the app opens its own
            from the settings when the server starts and closes it on stop.
        handoff: where newly stored transactions go to be scored; None stores only.
        fineract: REST client for read-back enrichment; None disables enrichment.
        metrics_token: bearer token that unlocks ``/metrics`` for non-loopback peers.
        scoring_probe: status of the scoring side (``serve.scoring.metrics.ServeStatusProbe``);
            when given, ``/readyz`` also requires every part it reports to be ok.
        pending_sweep_interval: how often transactions left ``pending`` are re-submitted.
        name: Sanic app name (unique per process).
    """
    metrics = IngressMetrics()
    ctx = IngressCtx(
        settings=settings,
        metrics=metrics,
        options=ParseOptions.from_settings(settings),
        metrics_token=metrics_token,
        store=store,
    )
    app: IngressApp = Sanic(name, ctx=ctx)
    # The handler checks the exact limit and keeps a truncated copy of oversized bodies; Sanic
    # refuses anything far beyond it before reading it all.
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes * 4
    app.config.ACCESS_LOG = False
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 75  # Fineract's OkHttp pool keeps connections for 5 minutes
    app.error_handler.add(Exception, error_response)

    app.blueprint(fineract_bp.create_blueprint())
    app.blueprint(generic_bp.create_blueprint())

    @app.after_server_start
    async def _open(app: IngressApp) -> None:
        c = app.ctx
        if c.store is None:
            uri = await asyncio.to_thread(resolve_mongodb_uri, settings)
            c.store = open_store(
                uri, settings.mongodb_db, timeout_ms=settings.mongodb_timeout_ms, appname=name
            )
            c.owns_store = True
        c.spool = Spool(settings.data_dir / "spool", on_corrupt=metrics.spool_corrupt_records.inc)
        c.dispatcher = HandoffDispatcher(handoff, metrics)
        if fineract is not None:
            c.enricher = Enricher(c.store, fineract, metrics)
        c.committer = Committer(
            c.store,
            c.spool,
            metrics=metrics,
            dispatcher=c.dispatcher,
            on_stored=c.enricher.schedule if c.enricher is not None else None,
            batch_max=settings.ingest_batch_max,
            batch_wait=settings.ingest_batch_wait_ms / 1000.0,
            max_in_flight=settings.ingest_max_in_flight,
            overload_ack=settings.ingest_overload_ack_ms / 1000.0,
        )
        await c.committer.start()
        if handoff is not None:
            c.sweeper = PendingSweeper(c.store, handoff, interval=pending_sweep_interval)
            c.sweeper.start()

    @app.before_server_stop
    async def _close(app: IngressApp) -> None:
        c = app.ctx
        if c.sweeper is not None:
            await c.sweeper.stop()
        if c.committer is not None:
            await c.committer.close()
            c.committer = None
        if c.enricher is not None:
            await c.enricher.close()
        if c.store is not None and c.owns_store:
            await c.store.close()
            c.store = None

    @app.get("/healthz", name="healthz")
    async def _healthz(request: Request) -> HTTPResponse:
        return json({"status": "ok"})

    @app.get("/readyz", name="readyz")
    async def _readyz(request: Request) -> HTTPResponse:
        c = ctx_of(request)
        store_ok = c.committer is not None and c.committer.store_available
        if store_ok and c.committer is not None:
            store_ok = await c.committer.store_reachable()
        spool_ok = c.spool is not None and c.spool.writable()
        ready = c.committer is not None and (store_ok or spool_ok)
        components: dict[str, Any] = {
            "ingress": {"ok": c.committer is not None},
            "store": {"ok": store_ok},
            "spool": {"ok": spool_ok},
        }
        if scoring_probe is not None:
            parts = await scoring_probe()
            components.update(parts)
            # ``?scope=ingest``: whether this pod can acknowledge hooks durably, which needs no
            # scoring (pending transactions are scored once Serve is back). A load balancer
            # asks this; pulling every ingress when a scorer is down would turn a scoring
            # outage into lost hooks.
            if request.args.get("scope") != "ingest":
                ready = ready and all(bool(part.get("ok")) for part in parts.values())
        body = {
            "ready": ready,
            "store": store_ok,
            "spool_writable": spool_ok,
            "components": components,
        }
        return json(body, status=200 if ready else 503)

    @app.get("/metrics", name="metrics")
    async def _metrics(request: Request) -> HTTPResponse:
        c = ctx_of(request)
        token = c.metrics_token
        auth = request.headers.get("authorization", "")
        allowed = _is_loopback(request.ip) or (
            token is not None and hmac.compare_digest(auth.encode(), f"Bearer {token}".encode())
        )
        if not allowed:
            raise NotFound("not found")
        return raw(c.metrics.render(), content_type=CONTENT_TYPE)

    return app
