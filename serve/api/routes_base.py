"""Route table and the one place every API route is authenticated and authorised.

Routes are declared with ``secured(...)``; a route cannot be added without stating the permission
it needs (or that it is public), and the auth test matrix is generated from the same table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, JSONResponse, json

from aml.auth import Permission
from aml.errors import BadRequest, Unauthorized
from serve.auth import check_user_current
from serve.services import Actor

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One API route: method, path (relative to ``/api/v1``), who may call it."""

    method: str
    path: str
    name: str
    permission: Permission | None  # None: any authenticated user
    public: bool = False
    summary: str = ""
    example_params: dict[str, str] = field(default_factory=dict)


class RouteTable:
    """Collects the routes of one blueprint module."""

    def __init__(self) -> None:
        self.specs: list[tuple[RouteSpec, Handler]] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        permission: Permission | None = None,
        public: bool = False,
        summary: str = "",
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            spec = RouteSpec(
                method=method.upper(),
                path=path,
                name=fn.__name__,
                permission=permission,
                public=public,
                summary=summary or (fn.__doc__ or "").strip().splitlines()[0],
            )
            self.specs.append((spec, fn))
            return fn

        return deco


def client_ip(request: Request) -> str | None:
    """The client address: the proxy-forwarded one when Sanic is configured to trust proxies."""
    return request.remote_addr or request.ip or None


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


async def authenticate(request: Request) -> Actor:
    """Resolve the request's access token to a current, active user.

    Raises:
        Unauthorized: for a missing, invalid, expired or revoked token or an inactive user.
    """
    ctx = request.app.ctx
    claims = ctx.tokens.decode(bearer_token(request), kind="access")
    user = await ctx.store.users.get(claims.user_id)
    return Actor(user=check_user_current(claims, user), ip=client_ip(request))


def wrap(spec: RouteSpec, fn: Handler) -> Handler:
    """The handler Sanic calls: authenticates and authorises, then runs ``fn``."""

    async def handler(request: Request, **params: Any) -> HTTPResponse:
        if spec.public:
            return await fn(request, **params)
        actor = await authenticate(request)
        if spec.permission is not None:
            actor.require(spec.permission)
        return await fn(request, actor, **params)

    handler.__name__ = spec.name
    handler.__qualname__ = spec.name
    return handler


def body(request: Request) -> dict[str, Any]:
    """The JSON object body, or ``BadRequest``."""
    try:
        data = request.json
    except Exception:
        raise BadRequest("body must be JSON") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def ok(data: Any, status: int = 200) -> JSONResponse:
    return json(data, status=status, default=str)


_PARAM = re.compile(r"<(\w+)(?::[^>]*)?>")


def openapi_path(path: str) -> str:
    """Sanic ``/alerts/<alert_id:str>`` → OpenAPI ``/alerts/{alert_id}``."""
    return _PARAM.sub(r"{\1}", path)


def path_params(path: str) -> list[str]:
    return _PARAM.findall(path)


def jsonable(value: Any) -> Any:
    """Domain values → JSON-ready values (enums by value, datetimes ISO, tuples as lists)."""
    import dataclasses
    import enum
    from collections.abc import Mapping
    from datetime import date, datetime

    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def public_user(user: Any) -> dict[str, Any]:
    """A user without its password hash."""
    data = jsonable(user)
    data.pop("password_hash", None)
    return dict(data)


def page_json(page: Any, item: Callable[[Any], Any] = jsonable) -> dict[str, Any]:
    return {
        "items": [item(i) for i in page.items],
        "total": page.total,
        "skip": page.skip,
        "limit": page.limit,
    }


def int_arg(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", field=name) from None


def list_arg(request: Request, name: str) -> list[str]:
    """Repeated or comma-separated query values."""
    out: list[str] = []
    for raw in request.args.getlist(name, []):
        out.extend(p.strip() for p in raw.split(",") if p.strip())
    return out
