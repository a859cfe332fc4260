"""``/alerts``: queue, detail with explanation, assign, bulk assign, decide, escalate."""

from __future__ import annotations

from datetime import timedelta

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.domain import AlertStatus, AnalystDecision, RiskLevel
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, body, int_arg, jsonable, list_arg, ok, page_json
from serve.services import Actor, alerts

routes = RouteTable()


def _enums(request: Request, name: str, enum: type[AlertStatus] | type[RiskLevel]) -> list:  # type: ignore[type-arg]
    try:
        return [enum(v) for v in list_arg(request, name)]
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"{name} must be among: {allowed}", field=name) from None


@routes.route("GET", "/alerts", permission=Permission.ALERT_READ)
async def list_alerts(request: Request, actor: Actor) -> HTTPResponse:
    """Alert queue with filters (status, risk_level, rule_id, assignee, min_age_minutes), sort
    (created_at, score, updated_at, sla_due_at; order=asc|desc) and pagination (skip, limit)."""
    min_age = int_arg(request, "min_age_minutes", 0)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", field="order")
    page = await alerts.list_alerts(
        request.app.ctx.store,
        actor=actor,
        status=_enums(request, "status", AlertStatus),
        risk_level=_enums(request, "risk_level", RiskLevel),
        rule_id=request.args.get("rule_id"),
        assignee=request.args.get("assignee"),
        min_age=timedelta(minutes=min_age) if min_age > 0 else None,
        sort=request.args.get("sort", "created_at"),
        descending=order == "desc",
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("GET", "/alerts/<alert_id:str>", permission=Permission.ALERT_READ)
async def get_alert(request: Request, actor: Actor, alert_id: str) -> HTTPResponse:
    """An alert with its transactions, each transaction's decision explanation (score per scorer,
    fired rules with values, top feature contributions) and related alerts."""
    detail = await alerts.get_detail(request.app.ctx.store, actor=actor, alert_id=alert_id)
    return ok(jsonable(detail))


def _assignee(data: dict[str, object], actor: Actor) -> str | None:
    if "assignee" not in data:
        return actor.username  # "assign to me"
    value = data["assignee"]
    if value is not None and not isinstance(value, str):
        raise BadRequest("assignee must be a username or null", field="assignee")
    return value


@routes.route("POST", "/alerts/<alert_id:str>/assign", permission=Permission.ALERT_ASSIGN)
async def assign_alert(request: Request, actor: Actor, alert_id: str) -> HTTPResponse:
    """Assign one alert (to the caller when no ``assignee`` is given)."""
    data = body(request)
    await alerts.assign(
        request.app.ctx.store, actor=actor, alert_ids=[alert_id], assignee=_assignee(data, actor)
    )
    alert = await alerts.get_or_raise(request.app.ctx.store, alert_id=alert_id)
    return ok(jsonable(alert))


@routes.route("POST", "/alerts/assign", permission=Permission.ALERT_ASSIGN)
async def bulk_assign_alerts(request: Request, actor: Actor) -> HTTPResponse:
    """Assign many alerts at once: ``{"alert_ids": [...], "assignee": "..."}``."""
    data = body(request)
    ids = data.get("alert_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("alert_ids must be a list of ids", field="alert_ids")
    changed = await alerts.assign(
        request.app.ctx.store, actor=actor, alert_ids=ids, assignee=_assignee(data, actor)
    )
    return ok({"assigned": changed})


@routes.route("POST", "/alerts/<alert_id:str>/decision", permission=Permission.ALERT_DECIDE)
async def decide_alert(request: Request, actor: Actor, alert_id: str) -> HTTPResponse:
    """Decide an alert: ``{"decision": legitimate|suspicious|confirmed_fraud, "note": "..."}``;
    the note is required and the decision is stored as a training label."""
    data = body(request)
    try:
        decision = AnalystDecision(str(data.get("decision")))
    except ValueError:
        allowed = ", ".join(d.value for d in AnalystDecision)
        raise BadRequest(f"decision must be one of {allowed}", field="decision") from None
    alert = await alerts.decide(
        request.app.ctx.store,
        actor=actor,
        alert_id=alert_id,
        decision=decision,
        note=str(data.get("note") or ""),
    )
    return ok(jsonable(alert))


@routes.route("POST", "/alerts/<alert_id:str>/escalate", permission=Permission.ALERT_ESCALATE)
async def escalate_alert(request: Request, actor: Actor, alert_id: str) -> HTTPResponse:
    """Escalate an alert to a senior analyst: ``{"note": "..."}`` (required)."""
    alert = await alerts.escalate(
        request.app.ctx.store,
        actor=actor,
        alert_id=alert_id,
        note=str(body(request).get("note") or ""),
    )
    return ok(jsonable(alert))


@routes.route("GET", "/overview", permission=Permission.OVERVIEW_READ)
async def overview(request: Request, actor: Actor) -> HTTPResponse:
    """Counters and series for the overview: alerts by status and risk, per day, alert rate,
    decisions per minute, queue age."""
    data = await alerts.overview(request.app.ctx.store, actor=actor)
    return ok(jsonable(data))
