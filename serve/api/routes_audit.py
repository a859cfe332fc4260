"""``/audit`` (admin, senior analyst): read the trail and verify its hash chain."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from serve.api.routes_base import RouteTable, int_arg, ok, page_json
from serve.services import Actor, audit

routes = RouteTable()


@routes.route("GET", "/audit", permission=Permission.AUDIT_READ)
async def list_audit(request: Request, actor: Actor) -> HTTPResponse:
    """Audit entries, newest first; filters actor, action, target_type, target_id."""
    page = await audit.list_entries(
        request.app.ctx.store,
        actor=actor,
        who=request.args.get("actor"),
        action=request.args.get("action"),
        target_type=request.args.get("target_type"),
        target_id=request.args.get("target_id"),
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("POST", "/audit/verify", permission=Permission.AUDIT_READ)
async def verify_audit(request: Request, actor: Actor) -> HTTPResponse:
    """Walk the hash chain: ``{"intact": bool, "first_broken_seq": int | null}``."""
    broken = await audit.verify(request.app.ctx.store, actor=actor)
    return ok({"intact": broken is None, "first_broken_seq": broken})
