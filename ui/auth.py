"""Dashboard authentication: one middleware with an allowlist of open routes, and the per-page
role check.

The browser keeps only a server-side session (``app.storage.user``) holding the JWT pair; every
page re-reads the user from the store, so deactivation, role changes and password resets apply on
the next page load or action, exactly as in the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import app, ui
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from aml.auth import Permission, can
from aml.errors import AmlError, Unauthorized
from serve.auth import check_user_current
from serve.services import Actor, users
from storage.client import unavailable_as_error
from ui import context

T = TypeVar("T")

LOGIN_PATH = "/login"
OPEN_ROUTES = frozenset({LOGIN_PATH})
OPEN_PREFIXES = ("/_nicegui",)


def is_open(path: str) -> bool:
    return path in OPEN_ROUTES or path.startswith(OPEN_PREFIXES)


class AuthMiddleware(BaseHTTPMiddleware):
    """Redirects every request for a non-open route without a session to the login page."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not is_open(request.url.path) and not app.storage.user.get("access_token"):
            target = request.url.path
            return RedirectResponse(f"{LOGIN_PATH}?redirect_to={target}")
        return await call_next(request)


def client_ip() -> str | None:
    try:
        return ui.context.client.ip or None
    except RuntimeError:
        return None


async def sign_in(username: str, password: str) -> Actor:
    """Check credentials (rate-limited, audited) and keep the tokens in the session.

    Raises:
        Unauthorized, TooManyRequests, ServiceUnavailable: shown to the user by the login
            page.
    """
    ctx = context.get()
    with unavailable_as_error():
        user, pair = await users.login(
            ctx.store,
            tokens=ctx.tokens,
            limiter=ctx.limiter,
            username=username,
            password=password,
            ip=client_ip(),
        )
    app.storage.user.update(access_token=pair.access_token, refresh_token=pair.refresh_token)
    return Actor(user=user, ip=client_ip())


def sign_out() -> None:
    app.storage.user.pop("access_token", None)
    app.storage.user.pop("refresh_token", None)


async def current_actor() -> Actor | None:
    """The signed-in, still active user, renewing the access token from the refresh token when
    it expired; ``None`` (and the session cleared) when neither is valid any more."""
    ctx = context.get()
    access = app.storage.user.get("access_token")
    if not access:
        return None
    try:
        claims = ctx.tokens.decode(str(access), kind="access")
        user = check_user_current(claims, await ctx.store.users.get(claims.user_id))
        return Actor(user=user, ip=client_ip())
    except Unauthorized:
        pass
    refresh = app.storage.user.get("refresh_token")
    if refresh:
        try:
            user, pair = await users.refresh(
                ctx.store, tokens=ctx.tokens, refresh_token=str(refresh), ip=client_ip()
            )
            app.storage.user.update(
                access_token=pair.access_token, refresh_token=pair.refresh_token
            )
            return Actor(user=user, ip=client_ip())
        except Unauthorized:
            pass
    sign_out()
    return None


async def require_page(permission: Permission) -> Actor | None:
    """The actor allowed on this page, or ``None`` after sending the visitor away."""
    actor = await current_actor()
    if actor is None:
        ui.navigate.to(LOGIN_PATH)
        return None
    if not can(actor.role, permission):
        ui.label("Your role does not give access to this page.").classes("text-lg m-8")
        ui.link("Back to the overview", "/")
        return None
    return actor


async def run_action(
    action: Callable[[Actor], Awaitable[T]], *, success: str | None = None
) -> T | None:
    """Run a service call from an event handler as the *current* user (re-read now, so a user
    deactivated since the page loaded is stopped); errors, an unavailable store among them,
    become a visible notification."""
    try:
        with unavailable_as_error():
            actor = await current_actor()
            if actor is None:
                ui.navigate.to(LOGIN_PATH)
                return None
            result = await action(actor)
    except AmlError as exc:
        ui.notify(exc.message, type="negative")
        return None
    if success:
        ui.notify(success, type="positive")
    return result
