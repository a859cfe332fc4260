"""``/rules``: the active rule configuration and its history (read: analysts and up), validated
edits saved as new versions, activation pushed to Serve, backtest of a candidate (senior
analysts, admin)."""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, body, int_arg, jsonable, ok, page_json
from serve.services import Actor, rules

routes = RouteTable()


def _version(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise BadRequest("version must be an integer", field="version") from None


def _config(data: dict[str, Any]) -> dict[str, Any]:
    config = data.get("config")
    if not isinstance(config, dict):
        raise BadRequest("config must be a JSON object", field="config")
    return config


@routes.route("GET", "/rules", permission=Permission.RULE_READ)
async def get_rules(request: Request, actor: Actor) -> HTTPResponse:
    """The active version (``null`` before the first save) and the configuration in force."""
    store = request.app.ctx.store
    active = await rules.get_active(store, actor=actor)
    return ok(
        {
            "active": jsonable(active),
            "config": rules.effective(active).to_dict(),
        }
    )


@routes.route("GET", "/rules/versions", permission=Permission.RULE_READ)
async def list_rule_versions(request: Request, actor: Actor) -> HTTPResponse:
    """Saved versions, newest first."""
    page = await rules.list_versions(
        request.app.ctx.store,
        actor=actor,
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("GET", "/rules/versions/<version:str>", permission=Permission.RULE_READ)
async def get_rule_version(request: Request, actor: Actor, version: str) -> HTTPResponse:
    """One saved version."""
    record = await rules.get_or_raise(request.app.ctx.store, actor=actor, version=_version(version))
    return ok(jsonable(record))


@routes.route("POST", "/rules/versions", permission=Permission.RULE_CONFIG)
async def save_rule_version(request: Request, actor: Actor) -> HTTPResponse:
    """Save ``{"config": {...}, "comment"?}`` as a new inactive version (422 names bad fields)."""
    data = body(request)
    record = await rules.save(
        request.app.ctx.store,
        actor=actor,
        config=_config(data),
        comment=str(data.get("comment") or ""),
    )
    return ok(jsonable(record), status=201)


@routes.route("POST", "/rules/versions/<version:str>/activate", permission=Permission.RULE_CONFIG)
async def activate_rule_version(request: Request, actor: Actor, version: str) -> HTTPResponse:
    """Activate a version: pushed to the running scorers, then marked active."""
    record = await rules.activate(
        request.app.ctx.store,
        actor=actor,
        version=_version(version),
        apply=request.app.ctx.ops.rule_applier,
    )
    return ok(jsonable(record))


@routes.route("POST", "/rules/backtest", permission=Permission.RULE_CONFIG)
async def backtest_rules(request: Request, actor: Actor) -> HTTPResponse:
    """Replay recent stored transactions: ``{"config": {...}, "days"?: 30}`` against the active
    configuration, per rule."""
    data = body(request)
    days = data.get("days", 30)
    if not isinstance(days, int):
        raise BadRequest("days must be an integer", field="days")
    result = await rules.backtest(
        request.app.ctx.store, actor=actor, candidate=_config(data), days=days
    )
    return ok(jsonable(result))
