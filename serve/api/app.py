"""Sanic app factory for the versioned REST API (``/api/v1``).

Resources are opened in ``after_server_start`` and closed in ``before_server_stop`` (the two
listeners that also run under ASGI); tests pass an open ``store`` instead.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError
from sanic import Blueprint, Request, Sanic
from sanic.config import Config
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, JSONResponse, json

from aml.credit.score import CreditConfig
from aml.errors import AmlError, TooManyRequests
from aml.settings import Settings
from serve.api import (
    routes_alerts,
    routes_audit,
    routes_auth,
    routes_cases,
    routes_credit,
    routes_models,
    routes_reports,
    routes_rules,
    routes_transactions,
    routes_users,
)
from serve.api.routes_base import RouteSpec, RouteTable, openapi_path, path_params, wrap
from serve.auth import LoginRateLimiter, TokenService
from serve.services.credit import CreditWorkflowPolicy
from serve.services.jobs import Operations
from storage.client import unavailable_error
from storage.store import Store, open_store, resolve_mongodb_uri

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Seconds a client is asked to wait before retrying a request the store could not serve.
STORE_RETRY_AFTER = "5"

ROUTE_MODULES: tuple[tuple[str, RouteTable], ...] = (
    ("auth", routes_auth.routes),
    ("alerts", routes_alerts.routes),
    ("cases", routes_cases.routes),
    ("transactions", routes_transactions.routes),
    ("users", routes_users.routes),
    ("audit", routes_audit.routes),
    ("credit", routes_credit.routes),
    ("reports", routes_reports.routes),
    ("rules", routes_rules.routes),
    ("models", routes_models.routes),
)
_app_names = itertools.count(1)


@dataclass
class ApiContext:
    settings: Settings
    tokens: TokenService
    limiter: LoginRateLimiter
    store: Store | None = None
    owns_store: bool = False
    routes: list[RouteSpec] = field(default_factory=list)
    credit_config: CreditConfig = field(default_factory=CreditConfig)
    credit_policy: CreditWorkflowPolicy = field(default_factory=CreditWorkflowPolicy)
    ops: Operations = field(default_factory=Operations)


ApiApp = Sanic[Config, ApiContext]


def all_route_specs() -> list[RouteSpec]:
    """Every declared API route (the auth test matrix is generated from this)."""
    return [spec for _, table in ROUTE_MODULES for spec, _ in table.specs]


def _internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """The answer to an error nobody expected (logged with its traceback, never shown)."""
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json({"error": "internal_error", "message": "internal error"}, status=500)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    tokens: TokenService | None = None,
    limiter: LoginRateLimiter | None = None,
    name: str | None = None,
    ops: Operations | None = None,
) -> ApiApp:
    """Build the API app.

    Args:
        settings: process settings (JWT secret, token lifetimes, login rate).
        store: an open store; when omitted one is opened at server start and closed at stop.
        tokens: token service; built from ``settings.jwt_secret`` when omitted.
        limiter: login rate limiter; built from ``settings.login_attempts_per_minute`` when omitted.
        name: Sanic app name (unique per process).
        ops: Serve and scheduler hooks (rule activation, promotion, "run now"); without them
            those actions change the store only or answer 503.
    """
    if tokens is None:
        if settings.jwt_secret is None:
            raise AmlError("AML_JWT_SECRET is not set")
        tokens = TokenService(
            settings.jwt_secret.get_secret_value(),
            access_minutes=settings.access_token_minutes,
            refresh_hours=settings.refresh_token_hours,
        )
    ctx = ApiContext(
        settings=settings,
        tokens=tokens,
        limiter=limiter or LoginRateLimiter(max_attempts=settings.login_attempts_per_minute),
        store=store,
        ops=ops or Operations(settings=settings),
    )
    app: ApiApp = Sanic(name or f"fineract-aml-api-{next(_app_names)}", ctx=ctx)
    app.config.FALLBACK_ERROR_FORMAT = "json"

    for source, table in ROUTE_MODULES:
        bp = Blueprint(f"api_{source}", url_prefix=API_PREFIX)
        for spec, fn in table.specs:
            bp.add_route(wrap(spec, fn), spec.path, methods=[spec.method], name=spec.name)
            ctx.routes.append(spec)
        app.blueprint(bp)

    async def openapi(request: Request) -> HTTPResponse:
        return json(openapi_document(ctx.routes))

    app.add_route(openapi, f"{API_PREFIX}/openapi.json", methods=["GET"], name="openapi")

    @app.exception(AmlError)
    async def _aml_error(request: Request, exc: AmlError) -> JSONResponse:
        if not exc.quiet:
            log.exception("request failed: %s", exc.message)
        headers = {}
        if isinstance(exc, TooManyRequests) and "retry_after" in exc.details:
            headers["Retry-After"] = str(exc.details["retry_after"])
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return json(exc.to_dict(), status=exc.status_code, headers=headers)

    @app.exception(PyMongoError)
    async def _store_error(request: Request, exc: PyMongoError) -> JSONResponse:
        unavailable = unavailable_error(exc)
        if unavailable is None:
            return _internal_error(request, exc)
        # The store is unreachable or too slow: the client may retry, nothing is wrong with
        # its request.
        log.warning("store unavailable on %s %s: %s", request.method, request.path, exc)
        return json(unavailable.to_dict(), status=503, headers={"Retry-After": STORE_RETRY_AFTER})

    @app.exception(SanicException)
    async def _sanic_error(request: Request, exc: SanicException) -> JSONResponse:
        status = int(getattr(exc, "status_code", 500) or 500)
        return json({"error": "http_error", "message": str(exc)}, status=status)

    @app.exception(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request, exc)

    @app.after_server_start
    async def _open(app: ApiApp) -> None:
        if app.ctx.store is None:
            uri = resolve_mongodb_uri(settings)
            app.ctx.store = open_store(
                uri, settings.mongodb_db, timeout_ms=settings.mongodb_timeout_ms, appname="api"
            )
            app.ctx.owns_store = True
            await app.ctx.store.ensure_indexes()

    @app.before_server_stop
    async def _close(app: ApiApp) -> None:
        if app.ctx.owns_store and app.ctx.store is not None:
            await app.ctx.store.close()
            app.ctx.store = None

    return app


def openapi_document(routes: list[RouteSpec]) -> dict[str, Any]:
    """A hand-written OpenAPI 3.1 description of the declared routes."""
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        op: dict[str, Any] = {
            "operationId": spec.name,
            "summary": spec.summary,
            "responses": {"200": {"description": "OK"}},
        }
        params = path_params(spec.path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if not spec.public:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "missing, invalid, expired or revoked token"}
            op["responses"]["403"] = {"description": "role lacks the permission"}
            if spec.permission is not None:
                op["x-permission"] = spec.permission.value
        paths.setdefault(API_PREFIX + openapi_path(spec.path), {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "fineract-aml API", "version": "1"},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "paths": paths,
    }
