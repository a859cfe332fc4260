"""``/auth``: login, refresh, me."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import permissions_of
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, body, client_ip, ok, public_user
from serve.services import Actor, users

routes = RouteTable()


@routes.route("POST", "/auth/login", public=True)
async def login(request: Request) -> HTTPResponse:
    """Exchange username and password for an access and a refresh token."""
    data = body(request)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadRequest("username and password are required")
    ctx = request.app.ctx
    user, pair = await users.login(
        ctx.store,
        tokens=ctx.tokens,
        limiter=ctx.limiter,
        username=username,
        password=password,
        ip=client_ip(request),
    )
    return ok({**pair.to_dict(), "user": public_user(user)})


@routes.route("POST", "/auth/refresh", public=True)
async def refresh(request: Request) -> HTTPResponse:
    """Exchange a refresh token for a new token pair."""
    token = body(request).get("refresh_token")
    if not isinstance(token, str) or not token:
        raise BadRequest("refresh_token is required")
    ctx = request.app.ctx
    user, pair = await users.refresh(
        ctx.store, tokens=ctx.tokens, refresh_token=token, ip=client_ip(request)
    )
    return ok({**pair.to_dict(), "user": public_user(user)})


@routes.route("GET", "/auth/me")
async def me(request: Request, actor: Actor) -> HTTPResponse:
    """The current user and its permissions."""
    return ok(
        {
            **public_user(actor.user),
            "permissions": sorted(p.value for p in permissions_of(actor.role)),
        }
    )
