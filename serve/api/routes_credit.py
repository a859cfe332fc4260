"""``/credit``: credit profiles, on-demand rescoring, credit requests with four-eyes decisions,
analytics."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.domain import CreditRequestStatus, CreditTier
from aml.errors import BadRequest
from aml.money import to_minor
from serve.api.routes_base import RouteTable, body, int_arg, jsonable, list_arg, ok, page_json
from serve.services import Actor, credit

routes = RouteTable()


def _tenant(request: Request, data: dict[str, Any] | None = None) -> str:
    """The tenant named by the body or query, else the configured default."""
    raw = (data or {}).get("tenant") or request.args.get("tenant")
    return str(raw) if raw else str(request.app.ctx.settings.default_tenant)


def _tenant_filter(request: Request) -> str | None:
    return request.args.get("tenant") or None


def _bool_arg(request: Request, name: str) -> bool | None:
    raw = str(request.args.get(name) or "")
    if not raw:
        return None
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequest(f"{name} must be true or false", field=name)


def _amount_minor(data: dict[str, Any], currency: str) -> int:
    """``amount_minor`` (integer minor units) or ``amount`` (major units, number or string)."""
    if "amount_minor" in data:
        value = data["amount_minor"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest("amount_minor must be an integer", field="amount_minor")
        return value
    raw = data.get("amount")
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise BadRequest("amount is required (major units)", field="amount")
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        raise BadRequest("amount must be a number", field="amount") from None
    if not amount.is_finite():
        raise BadRequest("amount must be a number", field="amount")
    return to_minor(amount, currency)


def _detail_json(detail: credit.ProfileDetail) -> dict[str, Any]:
    return {
        "profile": jsonable(detail.profile),
        "tier_gap": detail.tier_gap,
        "activity": jsonable(list(detail.activity)),
        "requests": jsonable(list(detail.requests)),
    }


@routes.route("GET", "/credit/profiles", permission=Permission.CREDIT_READ)
async def list_credit_profiles(request: Request, actor: Actor) -> HTTPResponse:
    """Credit profiles, best score first; filters tier (repeatable), needs_review, tenant."""
    try:
        tiers = [CreditTier(t.upper()) for t in list_arg(request, "tier")]
    except ValueError:
        raise BadRequest("unknown credit tier", field="tier") from None
    page = await credit.list_profiles(
        request.app.ctx.store,
        actor=actor,
        tenant=_tenant_filter(request),
        tiers=tiers,
        needs_review=_bool_arg(request, "needs_review"),
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("GET", "/credit/profiles/<client_id:str>", permission=Permission.CREDIT_READ)
async def get_credit_profile(request: Request, actor: Actor, client_id: str) -> HTTPResponse:
    """One client's profile with its 180-day activity, cluster agreement and requests."""
    detail = await credit.get_profile(
        request.app.ctx.store, actor=actor, tenant=_tenant(request), client_id=client_id
    )
    return ok(_detail_json(detail))


@routes.route(
    "POST", "/credit/profiles/<client_id:str>/refresh", permission=Permission.CREDIT_REQUEST
)
async def refresh_credit_profile(request: Request, actor: Actor, client_id: str) -> HTTPResponse:
    """Rescore the client now from the store: ``{"tenant"?}``."""
    data = body(request)
    profile = await credit.refresh_profile(
        request.app.ctx.store,
        actor=actor,
        tenant=_tenant(request, data),
        client_id=client_id,
        config=request.app.ctx.credit_config,
    )
    return ok(jsonable(profile))


@routes.route("GET", "/credit/requests", permission=Permission.CREDIT_READ)
async def list_credit_requests(request: Request, actor: Actor) -> HTTPResponse:
    """Credit requests, pending first; filters status (repeatable), client_id, tenant."""
    try:
        statuses = [CreditRequestStatus(s) for s in list_arg(request, "status")]
    except ValueError:
        raise BadRequest("unknown credit request status", field="status") from None
    page = await credit.list_requests(
        request.app.ctx.store,
        actor=actor,
        tenant=_tenant_filter(request),
        client_id=request.args.get("client_id"),
        statuses=statuses,
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("POST", "/credit/requests", permission=Permission.CREDIT_REQUEST)
async def submit_credit_request(request: Request, actor: Actor) -> HTTPResponse:
    """Submit: ``{"client_id", "amount" | "amount_minor", "currency"?, "tenant"?}``; the client
    is rescored and the request waits for another reviewer."""
    data = body(request)
    currency = str(data.get("currency") or request.app.ctx.settings.default_currency)
    client_id = data.get("client_id")
    if not isinstance(client_id, str | int) or isinstance(client_id, bool):
        raise BadRequest("client_id is required", field="client_id")
    created = await credit.submit_request(
        request.app.ctx.store,
        actor=actor,
        tenant=_tenant(request, data),
        client_id=str(client_id),
        amount_minor=_amount_minor(data, currency.upper()),
        currency=currency,
        config=request.app.ctx.credit_config,
        policy=request.app.ctx.credit_policy,
    )
    return ok(jsonable(created), status=201)


@routes.route("GET", "/credit/requests/<request_id:str>", permission=Permission.CREDIT_READ)
async def get_credit_request(request: Request, actor: Actor, request_id: str) -> HTTPResponse:
    """One credit request with its recommendation, reasons and snapshot."""
    found = await credit.get_request(request.app.ctx.store, actor=actor, request_id=request_id)
    return ok(jsonable(found))


async def _decide(
    request: Request, actor: Actor, request_id: str, *, approve: bool
) -> HTTPResponse:
    decided = await credit.decide_request(
        request.app.ctx.store,
        actor=actor,
        request_id=request_id,
        approve=approve,
        note=str(body(request).get("note") or ""),
        policy=request.app.ctx.credit_policy,
    )
    return ok(jsonable(decided))


@routes.route(
    "POST", "/credit/requests/<request_id:str>/approve", permission=Permission.CREDIT_DECIDE
)
async def approve_credit_request(request: Request, actor: Actor, request_id: str) -> HTTPResponse:
    """Approve: ``{"note"}`` (never the submitter; large amounts need a senior analyst)."""
    return await _decide(request, actor, request_id, approve=True)


@routes.route(
    "POST", "/credit/requests/<request_id:str>/reject", permission=Permission.CREDIT_DECIDE
)
async def reject_credit_request(request: Request, actor: Actor, request_id: str) -> HTTPResponse:
    """Reject: ``{"note"}`` (never the submitter)."""
    return await _decide(request, actor, request_id, approve=False)


@routes.route("GET", "/credit/analytics", permission=Permission.CREDIT_READ)
async def credit_analytics(request: Request, actor: Actor) -> HTTPResponse:
    """Tier distribution, mean limits per tier, weekly approval rates, pending count."""
    data = await credit.analytics(
        request.app.ctx.store,
        actor=actor,
        tenant=_tenant_filter(request),
        weeks=int_arg(request, "weeks", 12),
    )
    return ok(
        {
            "tier_distribution": jsonable(data.tier_distribution),
            "average_limits_minor": jsonable(data.average_limits_minor),
            "approval_rates": [{**jsonable(b), "rate": b.rate} for b in data.approval_rates],
            "pending_count": data.pending_count,
            "needs_review_count": data.needs_review_count,
        }
    )
