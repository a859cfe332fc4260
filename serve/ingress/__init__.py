"""The webhook ingress: receives events, makes them durable, acknowledges, hands them on.

``create_app`` (in ``serve.ingress.app``) builds the Sanic app; this module holds the app context
and the receive flow shared by every source's blueprint.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sanic import Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from aml.domain import IngestOutcome, IngestRecord, utcnow
from aml.errors import AmlError, PayloadTooLarge, ServiceUnavailable, Unprocessable
from aml.settings import Settings
from serve.ingress.committer import Submission
from serve.metrics import IngressMetrics

if TYPE_CHECKING:
    from serve.ingest.events import ParsedEvent, ParseOptions
    from serve.ingress.committer import Committer
    from serve.ingress.enrich import Enricher
    from serve.ingress.handoff import HandoffDispatcher, PendingSweeper
    from serve.ingress.spool import Spool
    from storage.store import Store

log = logging.getLogger(__name__)

# Headers never kept in ingest_log: credentials of whoever sits in front of the ingress.
_DROP_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-webhook-signature"})
_REDACTED = "***"
_LOG_PREVIEW = 600


@dataclass
class IngressCtx:
    """Everything the ingress's handlers need (``app.ctx``). Resources are opened in
    ``after_server_start`` and closed in ``before_server_stop``."""

    settings: Settings
    metrics: IngressMetrics
    options: ParseOptions
    metrics_token: str | None = None
    store: Store | None = None
    owns_store: bool = False
    spool: Spool | None = None
    dispatcher: HandoffDispatcher | None = None
    committer: Committer | None = None
    sweeper: PendingSweeper | None = None
    enricher: Enricher | None = None


def ctx_of(request: Request) -> IngressCtx:
    """The typed ingress context of the app serving ``request``."""
    return cast(IngressCtx, request.app.ctx)


# Event ids: 64 random bits drawn once per process, then a 32-bit counter (see new_event_id).
# The prefix and its counter are replaced together; a counter past 32 bits draws a new prefix.
_id_state: list[tuple[str, Iterator[int]]] = [("", itertools.count(1 << 32))]


def _new_id_prefix() -> None:
    _id_state[0] = ("", itertools.count(1 << 32))  # the next id draws a prefix of its own


os.register_at_fork(after_in_child=_new_id_prefix)


def new_event_id() -> str:
    """Id of one received event (its ``ingest_log`` record): 24 hex digits.

    As unique as the 96 random bits of a truncated ``uuid4`` it replaces (two processes would
    need the same 64 random bits), without a ``getrandom`` call per hook: ``uuid4`` was a few
    percent of the ingress's CPU. A forked child draws its own prefix, and so does a process
    whose counter ran out.
    """
    prefix, count = _id_state[0]
    n = next(count)  # atomic: threads never share a number under one prefix
    if n >> 32:
        prefix, count = secrets.token_hex(8), itertools.count()
        _id_state[0] = (prefix, count)
        n = next(count)
    return f"{prefix}{n:08x}"


def received_now() -> datetime:
    """Receive time at the store's precision (milliseconds), so the spooled and the stored copy of
    an event compare equal."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stored_body(body: bytes) -> str:
    """The raw body as stored in ``ingest_log``: the text itself, or base64 when not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def ingest_record(
    parsed: ParsedEvent, received_at: datetime, headers: Mapping[str, str], body: bytes
) -> IngestRecord:
    """The ``ingest_log`` record of a parsed event (``headers`` as kept, see
    :func:`kept_headers`); the committer adds the transaction id it was stored under."""
    return IngestRecord(
        id=new_event_id(),
        tenant=parsed.tenant,
        source=parsed.source,
        received_at=received_at,
        outcome=parsed.outcome,
        entity=parsed.entity,
        action=parsed.action,
        dedupe_key=parsed.dedupe_key,
        error=parsed.note if parsed.outcome is not IngestOutcome.ACCEPTED else None,
        headers=headers,
        body=stored_body(body),
    )


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers worth keeping with the raw body (credentials dropped)."""
    return {k.lower(): str(v) for k, v in headers.items() if k.lower() not in _DROP_HEADERS}


def redact_for_log(body: bytes, *, mask_all: bool = False) -> str:
    """A short, log-safe rendering of a body: ``request`` values (client input that may hold PII
    or passwords) are masked, keys kept so the shape stays visible. ``mask_all`` masks every
    top-level value (sources whose whole body is client data)."""
    try:
        value: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return f"<{len(body)} bytes, not JSON>"
    if isinstance(value, dict) and mask_all:
        value = {k: _REDACTED for k in value}
    elif isinstance(value, dict):
        value = {
            k: ({rk: _REDACTED for rk in v} if k == "request" and isinstance(v, dict) else v)
            for k, v in value.items()
        }
        if isinstance(value.get("request"), (str, list)):
            value["request"] = _REDACTED
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=str)
    return text if len(text) <= _LOG_PREVIEW else text[:_LOG_PREVIEW] + "..."


async def receive(
    request: Request,
    *,
    source: str,
    tenant: str,
    parse: Callable[[bytes, datetime], ParsedEvent],
) -> HTTPResponse:
    """Shared flow of every source: size check, parse, durable write, ack.

    Bad input is stored raw (outcome ``invalid``) and answered with the parser's 4xx; a parser
    defect is logged with its traceback and answered 422 so that no input can produce a 5xx.
    """
    ctx = ctx_of(request)
    started = time.perf_counter()
    received_at = received_now()
    body = request.body or b""
    headers = kept_headers(request.headers)
    committer = ctx.committer
    if committer is None:
        raise ServiceUnavailable("ingress is starting")
    limit = ctx.settings.max_body_bytes

    def invalid(err: AmlError, kept: bytes) -> Submission:
        return Submission(
            record=IngestRecord(
                id=new_event_id(),
                tenant=tenant,
                source=source,
                received_at=received_at,
                outcome=IngestOutcome.INVALID,
                entity=headers.get("x-fineract-entity"),
                action=headers.get("x-fineract-action"),
                error=f"{err.code}: {err.message}",
                headers=headers,
                body=stored_body(kept),
            )
        )

    error: AmlError | None = None
    parsed: ParsedEvent | None = None
    if len(body) > limit:
        error = PayloadTooLarge(f"body of {len(body)} bytes exceeds the {limit}-byte limit")
    else:
        try:
            parsed = parse(body, received_at)
        except AmlError as exc:
            error = exc
        except Exception:
            log.exception("parser defect on a %s event (%d bytes)", source, len(body))
            error = Unprocessable("event could not be interpreted")
    if error is not None or parsed is None:
        err = error or Unprocessable("event could not be interpreted")
        log.warning(
            "invalid %s event for tenant %s -> %d %s: %s; body %s",
            source,
            tenant,
            err.status_code,
            err.code,
            err.message,
            redact_for_log(body[:limit], mask_all=source != "fineract"),
        )
        await committer.submit(invalid(err, body[:limit]))
        raise err

    record = ingest_record(parsed, received_at, headers, body)
    if parsed.outcome in (IngestOutcome.UNSUPPORTED, IngestOutcome.REJECTED_COMMAND):
        log.info(
            "%s %s event %s/%s for tenant %s stored raw%s",
            parsed.outcome.value,
            source,
            parsed.entity,
            parsed.action,
            parsed.tenant,
            f" ({parsed.note})" if parsed.note else "",
        )
    ack = await committer.submit(Submission(record=record, transaction=parsed.transaction))
    ctx.metrics.ack_latency.labels(source=source).observe(time.perf_counter() - started)
    return json_response(ack.to_dict(), status=200)
