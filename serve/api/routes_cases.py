"""``/cases``: create from alerts, link alerts/transactions, notes, assign, status with
four-eyes approval."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.domain import CaseStatus
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, body, int_arg, jsonable, list_arg, ok, page_json
from serve.services import Actor, cases

routes = RouteTable()


def _ids(data: dict[str, object], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise BadRequest(f"{name} must be a list of ids", field=name)
    return list(value)


@routes.route("GET", "/cases", permission=Permission.CASE_READ)
async def list_cases(request: Request, actor: Actor) -> HTTPResponse:
    """Cases, newest first; filters status, assignee, pending=true."""
    try:
        statuses = [CaseStatus(s) for s in list_arg(request, "status")]
    except ValueError:
        raise BadRequest("unknown case status", field="status") from None
    page = await cases.list_cases(
        request.app.ctx.store,
        actor=actor,
        status=statuses,
        assignee=request.args.get("assignee"),
        pending_only=request.args.get("pending") == "true",
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("POST", "/cases", permission=Permission.CASE_WRITE)
async def create_case(request: Request, actor: Actor) -> HTTPResponse:
    """Open a case: ``{"title", "alert_ids": [...], "transaction_ids": [...], "note"?}``."""
    data = body(request)
    case = await cases.create(
        request.app.ctx.store,
        actor=actor,
        title=str(data.get("title") or ""),
        alert_ids=_ids(data, "alert_ids"),
        transaction_ids=_ids(data, "transaction_ids"),
        note=str(data["note"]) if data.get("note") else None,
    )
    return ok(jsonable(case), status=201)


@routes.route("GET", "/cases/<case_id:str>", permission=Permission.CASE_READ)
async def get_case(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """One case with its notes, alerts and transactions."""
    case = await cases.get_or_raise(request.app.ctx.store, actor=actor, case_id=case_id)
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/alerts", permission=Permission.CASE_WRITE)
async def add_case_alerts(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Link alerts: ``{"alert_ids": [...]}``."""
    case = await cases.add_alerts(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        alert_ids=_ids(body(request), "alert_ids"),
    )
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/alerts/remove", permission=Permission.CASE_WRITE)
async def remove_case_alerts(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Unlink alerts: ``{"alert_ids": [...]}``."""
    case = await cases.remove_alerts(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        alert_ids=_ids(body(request), "alert_ids"),
    )
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/transactions", permission=Permission.CASE_WRITE)
async def add_case_transactions(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Link transactions: ``{"transaction_ids": [...]}``."""
    case = await cases.add_transactions(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        transaction_ids=_ids(body(request), "transaction_ids"),
    )
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/transactions/remove", permission=Permission.CASE_WRITE)
async def remove_case_transactions(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Unlink transactions: ``{"transaction_ids": [...]}``."""
    case = await cases.remove_transactions(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        transaction_ids=_ids(body(request), "transaction_ids"),
    )
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/notes", permission=Permission.CASE_WRITE)
async def add_case_note(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Append a note: ``{"text": ...}`` (notes are never edited)."""
    case = await cases.add_note(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        text=str(body(request).get("text") or ""),
    )
    return ok(jsonable(case), status=201)


@routes.route("POST", "/cases/<case_id:str>/assign", permission=Permission.CASE_WRITE)
async def assign_case(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Assign the case: ``{"assignee": ...}`` (to the caller when omitted)."""
    data = body(request)
    assignee = data.get("assignee", actor.username)
    if assignee is not None and not isinstance(assignee, str):
        raise BadRequest("assignee must be a username or null", field="assignee")
    case = await cases.assign(
        request.app.ctx.store, actor=actor, case_id=case_id, assignee=assignee
    )
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/status", permission=Permission.CASE_WRITE)
async def change_case_status(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Move the case: ``{"status", "note"?}``; escalation and SAR closure wait for approval."""
    data = body(request)
    try:
        status = CaseStatus(str(data.get("status")))
    except ValueError:
        raise BadRequest("unknown case status", field="status") from None
    case = await cases.change_status(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        status=status,
        note=str(data.get("note") or ""),
    )
    return ok(jsonable(case), status=202 if case.pending_status else 200)


@routes.route("POST", "/cases/<case_id:str>/approve", permission=Permission.CASE_APPROVE)
async def approve_case(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Approve the pending transition (a second user; never the maker)."""
    case = await cases.approve(request.app.ctx.store, actor=actor, case_id=case_id)
    return ok(jsonable(case))


@routes.route("POST", "/cases/<case_id:str>/reject", permission=Permission.CASE_APPROVE)
async def reject_case(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """Turn down the pending transition: ``{"note": ...}``."""
    case = await cases.reject(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        note=str(body(request).get("note") or ""),
    )
    return ok(jsonable(case))
