"""``POST /webhooks/generic``: events from systems that can sign their requests.

The body is authenticated with an HMAC in ``X-Webhook-Signature`` (key:
``AML_GENERIC_WEBHOOK_SECRET``). Unauthenticated bodies are refused with 401 and not stored: they
are noise from whoever found the URL, not events of a bank.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from aml.errors import NotFound, Unauthorized
from serve.ingest.events import ParsedEvent
from serve.ingest.generic import parse_generic, verify_signature
from serve.ingress import ctx_of, receive

log = logging.getLogger(__name__)

SOURCE = "generic"
TENANT_HEADER = "x-tenant-id"


async def _webhook(request: Request) -> HTTPResponse:
    ctx = ctx_of(request)
    secret = ctx.settings.generic_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise NotFound("generic webhooks are not enabled")
    try:
        verify_signature(
            request.body or b"",
            request.headers.get("x-webhook-signature"),
            secret.get_secret_value(),
        )
    except Unauthorized:
        ctx.metrics.rejected_requests.labels(source=SOURCE, reason="bad_signature").inc()
        log.warning("generic webhook with a missing or wrong signature from %s", request.ip)
        raise
    tenant = request.headers.get(TENANT_HEADER) or ctx.settings.default_tenant

    def parse(body: bytes, received_at: datetime) -> ParsedEvent:
        return parse_generic(body, received_at=received_at, options=ctx.options, tenant=tenant)

    return await receive(request, source=SOURCE, tenant=tenant, parse=parse)


def create_blueprint() -> Blueprint:
    """The generic (signed) webhook route."""
    bp = Blueprint("generic_hooks", url_prefix="/webhooks")
    bp.add_route(_webhook, "/generic", methods=["POST"], name="generic")
    return bp
