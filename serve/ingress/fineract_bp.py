"""``/webhooks/fineract/<secret>/``: Apache Fineract's "Web" hook.

Fineract signs nothing and sends no credentials, so the only secret is an unguessable path
segment (query strings are dropped by Fineract). It is compared in constant time against every
configured secret, so a rotation can keep the old one active for a while. A wrong secret is a 404,
exactly like an unknown path, and is counted and logged without the secret.

The URL must end with ``/`` for Fineract, but the same handler answers without it: a redirect
would turn the POST into a GET in Fineract's HTTP client and the event would be lost.

A correction (undo, reverse, adjust) names no undone transaction, so once it is acknowledged the
enricher re-reads its account in the background to find and mark what Fineract reversed.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from aml.domain import IngestOutcome
from aml.errors import NotFound
from serve.ingest.events import ParsedEvent
from serve.ingest.fineract import parse_fineract
from serve.ingress import ctx_of, receive

log = logging.getLogger(__name__)

SOURCE = "fineract"


def secret_matches(candidate: str, secrets: list[str]) -> bool:
    """Constant-time comparison against every configured secret (no early exit)."""
    given = candidate.encode()
    results = [hmac.compare_digest(given, s.encode()) for s in secrets]
    return any(results)


async def _webhook(request: Request, secret: str) -> HTTPResponse:
    ctx = ctx_of(request)
    if not secret_matches(secret, ctx.settings.webhook_secrets()):
        ctx.metrics.rejected_requests.labels(source=SOURCE, reason="wrong_secret").inc()
        log.warning(
            "%s on a Fineract hook URL with an unknown secret from %s (tenant header %r)",
            request.method,
            request.ip,
            request.headers.get("fineract-platform-tenantid"),
        )
        raise NotFound("not found")
    if request.method == "GET":
        # Fineract probes the Payload URL with a GET when the hook is created.
        return json({"status": "ok"})
    tenant = request.headers.get("fineract-platform-tenantid") or ctx.settings.default_tenant

    parsed: list[ParsedEvent] = []

    def parse(body: bytes, received_at: datetime) -> ParsedEvent:
        result = parse_fineract(
            request.headers,
            body,
            content_type=request.headers.get("content-type"),
            received_at=received_at,
            options=ctx.options,
        )
        parsed.append(result)
        return result

    response = await receive(request, source=SOURCE, tenant=tenant, parse=parse)
    event = parsed[0] if parsed else None
    if (
        ctx.enricher is not None
        and event is not None
        and event.outcome is IngestOutcome.CORRECTION
        and event.transaction is not None
    ):
        # After the ack is built, never before: the re-read must not slow the acknowledgement.
        # A redelivered correction is re-checked too, which finds nothing new.
        ctx.enricher.schedule([event.transaction])
    return response


def create_blueprint() -> Blueprint:
    """The Fineract hook routes (with and without the trailing slash, no redirect)."""
    bp = Blueprint("fineract_hooks", url_prefix="/webhooks/fineract")
    bp.add_route(
        _webhook, "/<secret:str>/", methods=["GET", "POST"], name="hook", strict_slashes=False
    )
    return bp
