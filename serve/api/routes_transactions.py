"""``/transactions``: search and get."""

from __future__ import annotations

from datetime import datetime

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.domain import RiskLevel, ensure_utc
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, int_arg, jsonable, ok, page_json
from serve.services import Actor, transactions

routes = RouteTable()


def _when(request: Request, name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return ensure_utc(datetime.fromisoformat(raw))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 datetime", field=name) from None


def _opt_int(request: Request, name: str) -> int | None:
    return int_arg(request, name, 0) if request.args.get(name) else None


def _risk_levels(request: Request) -> list[RiskLevel]:
    """``risk=high,critical`` (repeatable); unknown values are a 400 naming them."""
    raw = [v for arg in request.args.getlist("risk", []) for v in arg.split(",") if v.strip()]
    try:
        return [RiskLevel(v.strip().lower()) for v in raw]
    except ValueError:
        raise BadRequest(
            "risk must be one of " + ", ".join(r.value for r in RiskLevel), got=raw
        ) from None


@routes.route("GET", "/transactions", permission=Permission.TRANSACTION_READ)
async def search_transactions(request: Request, actor: Actor) -> HTTPResponse:
    """Search transactions by account, client, amount and time; newest first."""
    page = await transactions.search(
        request.app.ctx.store,
        actor=actor,
        tenant=request.args.get("tenant"),
        account_id=request.args.get("account_id"),
        client_id=request.args.get("client_id"),
        min_amount_minor=_opt_int(request, "min_amount_minor"),
        max_amount_minor=_opt_int(request, "max_amount_minor"),
        since=_when(request, "since"),
        until=_when(request, "until"),
        risk_levels=_risk_levels(request),
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("GET", "/transactions/<transaction_id:str>", permission=Permission.TRANSACTION_READ)
async def get_transaction(request: Request, actor: Actor, transaction_id: str) -> HTTPResponse:
    """One transaction."""
    tx = await transactions.get_or_raise(
        request.app.ctx.store, actor=actor, transaction_id=transaction_id
    )
    return ok(jsonable(tx))
