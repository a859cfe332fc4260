"""``/users`` (admin): list, create, change role, reset password, deactivate."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from aml.domain import Role
from aml.errors import BadRequest
from serve.api.routes_base import RouteTable, body, int_arg, ok, page_json, public_user
from serve.services import Actor, users

routes = RouteTable()


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise BadRequest(f"role must be one of {allowed}", field="role") from None


@routes.route("GET", "/users", permission=Permission.USER_ADMIN)
async def list_users(request: Request, actor: Actor) -> HTTPResponse:
    """All users, by username."""
    page = await users.list_users(
        request.app.ctx.store,
        actor=actor,
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page, public_user))


@routes.route("POST", "/users", permission=Permission.USER_ADMIN)
async def create_user(request: Request, actor: Actor) -> HTTPResponse:
    """Create a user: ``{"username", "password", "role", "full_name"?, "email"?}``."""
    data = body(request)
    user = await users.create(
        request.app.ctx.store,
        actor=actor,
        username=str(data.get("username") or ""),
        password=str(data.get("password") or ""),
        role=_role(data.get("role")),
        full_name=str(data.get("full_name") or ""),
        email=str(data["email"]) if data.get("email") else None,
    )
    return ok(public_user(user), status=201)


@routes.route("POST", "/users/<user_id:str>/role", permission=Permission.USER_ADMIN)
async def set_user_role(request: Request, actor: Actor, user_id: str) -> HTTPResponse:
    """Change a user's role: ``{"role": ...}``."""
    user = await users.set_role(
        request.app.ctx.store, actor=actor, user_id=user_id, role=_role(body(request).get("role"))
    )
    return ok(public_user(user))


@routes.route("POST", "/users/<user_id:str>/password", permission=Permission.USER_ADMIN)
async def reset_user_password(request: Request, actor: Actor, user_id: str) -> HTTPResponse:
    """Set a new password (revokes the user's tokens): ``{"password": ...}``."""
    user = await users.reset_password(
        request.app.ctx.store,
        actor=actor,
        user_id=user_id,
        password=str(body(request).get("password") or ""),
    )
    return ok(public_user(user))


@routes.route("POST", "/users/<user_id:str>/deactivate", permission=Permission.USER_ADMIN)
async def deactivate_user(request: Request, actor: Actor, user_id: str) -> HTTPResponse:
    """Deactivate a user; its tokens stop working at once."""
    user = await users.deactivate(request.app.ctx.store, actor=actor, user_id=user_id)
    return ok(public_user(user))
