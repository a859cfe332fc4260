"""Every API route x (no token, expired, tampered, forged, refresh-as-access, wrong role,
deactivated user) is refused. Generated from the route table so a new route cannot escape it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from aml.auth import roles_without
from aml.domain import Role, utcnow
from aml.settings import Settings
from serve.api.app import API_PREFIX, ApiApp, all_route_specs, create_app
from serve.api.routes_base import RouteSpec, path_params
from serve.auth import LoginRateLimiter, TokenService
from serve.services import Actor, users
from storage.store import Store
from tests.ui.seed import Team, seed_team

pytestmark = pytest.mark.integration

SECRET = "k" * 48
PUBLIC = {("POST", "/auth/login"), ("POST", "/auth/refresh")}


def _app(store: Store) -> tuple[ApiApp, TokenService]:
    tokens = TokenService(SECRET)
    app = create_app(
        Settings(jwt_secret=SECRET),
        store=store,
        tokens=tokens,
        limiter=LoginRateLimiter(max_attempts=1000),
    )
    return app, tokens


def _url(spec: RouteSpec) -> str:
    path = spec.path
    for name in path_params(path):
        path = path.replace(f"<{name}:str>", "x0").replace(f"<{name}>", "x0")
    return API_PREFIX + path


async def _call(app: ApiApp, spec: RouteSpec, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kwargs: dict[str, object] = {"headers": headers}
    if spec.method != "GET":
        kwargs["json"] = {}
    _, response = await app.asgi_client.request(spec.method.lower(), _url(spec), **kwargs)
    return int(response.status)


def _secured() -> list[RouteSpec]:
    return [s for s in all_route_specs() if not s.public]


def test_only_login_and_refresh_are_public() -> None:
    assert {(s.method, s.path) for s in all_route_specs() if s.public} == PUBLIC


async def test_every_served_route_is_in_the_route_table(store: Store) -> None:
    app, _ = _app(store)
    app.router.finalize()
    served = set()
    for route in app.router.routes:
        for method in route.methods:
            if method in ("HEAD", "OPTIONS"):
                continue
            served.add((method, "/" + route.path))
    declared = {(s.method, (API_PREFIX + s.path).lstrip("/")) for s in all_route_specs()}
    declared = {(m, "/" + p) for m, p in declared}
    declared.add(("GET", f"{API_PREFIX}/openapi.json"))
    normalise = {(m, p.replace(":str>", ">")) for m, p in served}
    assert normalise == {(m, p.replace(":str>", ">")) for m, p in declared}


def _tamper_signature(token: str) -> str:
    head, body, sig = token.split(".")
    return f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"


def _tamper_claims(token: str) -> str:
    """Rewrite the role claim to admin, keeping the original signature."""
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


TokenMaker = Callable[[TokenService, Team], str | None]
MODES: dict[str, TokenMaker] = {
    "no token": lambda t, team: None,
    "garbage": lambda t, team: "not-a-jwt",
    "expired": lambda t, team: (
        t.issue(team.by_role[Role.ADMIN], now=utcnow() - timedelta(hours=1)).access_token
    ),
    "tampered signature": lambda t, team: _tamper_signature(
        t.issue(team.by_role[Role.ADMIN]).access_token
    ),
    "tampered claims": lambda t, team: _tamper_claims(
        t.issue(team.by_role[Role.ANALYST]).access_token
    ),
    "foreign key": lambda t, team: (
        TokenService("z" * 48).issue(team.by_role[Role.ADMIN]).access_token
    ),
    "refresh as access": lambda t, team: t.issue(team.by_role[Role.ADMIN]).refresh_token,
}


@pytest.mark.parametrize("mode", list(MODES))
async def test_bad_tokens_are_refused_with_401_on_every_route(store: Store, mode: str) -> None:
    app, tokens = _app(store)
    team = await seed_team(store)
    token = MODES[mode](tokens, team)
    wrong = {
        f"{s.method} {s.path}": code
        for s in _secured()
        if (code := await _call(app, s, token)) != 401
    }
    assert wrong == {}


async def test_deactivated_user_is_refused_at_once_on_every_route(store: Store) -> None:
    app, tokens = _app(store)
    team = await seed_team(store)
    victim = await users.create(
        store,
        actor=team.actor(Role.ADMIN),
        username="gone",
        password="a long enough passphrase",
        role=Role.ADMIN,
    )
    token = tokens.issue(victim).access_token
    assert await _call(app, RouteSpec("GET", "/auth/me", "me", None), token) == 200
    await users.deactivate(store, actor=team.actor(Role.ADMIN), user_id=victim.id)
    wrong = {
        f"{s.method} {s.path}": code
        for s in _secured()
        if (code := await _call(app, s, token)) != 401
    }
    assert wrong == {}


async def test_wrong_role_is_refused_with_403_on_every_route(store: Store) -> None:
    app, tokens = _app(store)
    team = await seed_team(store)
    checked = 0
    wrong: dict[str, int] = {}
    for spec in _secured():
        if spec.permission is None:
            continue
        for role in roles_without([spec.permission]):
            code = await _call(app, spec, tokens.issue(team.by_role[role]).access_token)
            checked += 1
            if code != 403:
                wrong[f"{role.value} {spec.method} {spec.path}"] = code
    assert wrong == {}
    assert checked >= 20  # the matrix really ran over the admin/approver/audit routes


async def test_admin_can_reach_every_route_past_auth(store: Store) -> None:
    """The positive control: the same calls with a valid admin token are not 401/403."""
    app, tokens = _app(store)
    team = await seed_team(store)
    token = tokens.issue(team.by_role[Role.ADMIN]).access_token
    refused = {
        f"{s.method} {s.path}": code
        for s in _secured()
        if (code := await _call(app, s, token)) in (401, 403)
    }
    assert refused == {}


async def test_role_is_read_from_the_store_not_the_token(store: Store) -> None:
    app, tokens = _app(store)
    team = await seed_team(store)
    admin_token = tokens.issue(team.by_role[Role.SENIOR_ANALYST]).access_token
    spec = RouteSpec("GET", "/audit", "list_audit", None)
    assert await _call(app, spec, admin_token) == 200
    await users.set_role(
        store,
        actor=Actor(user=team.by_role[Role.ADMIN]),
        user_id=team.by_role[Role.SENIOR_ANALYST].id,
        role=Role.ANALYST,
    )
    assert await _call(app, spec, admin_token) == 403
