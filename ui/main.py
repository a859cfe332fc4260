"""Dashboard wiring: dependencies, the auth middleware and the page routes. Nothing else."""

from __future__ import annotations

from nicegui import app, ui

from aml.settings import Settings
from serve.auth import LoginRateLimiter, TokenService
from serve.services import credit
from serve.services.jobs import Operations
from storage.store import Store, open_store, resolve_mongodb_uri
from ui import context
from ui.auth import AuthMiddleware
from ui.pages import (
    alert_detail,
    alerts,
    audit,
    cases,
    credit_analytics,
    credit_profile,
    credit_profiles,
    credit_requests,
    errors,
    jobs,
    login,
    models,
    overview,
    report,
    rules,
    transactions,
    users,
)


def register_pages() -> None:
    """Attach the middleware and every page (call once per app instance)."""
    app.add_middleware(AuthMiddleware)
    app.on_page_exception(errors.page)
    ui.page("/login")(login.page)
    ui.page("/")(overview.page)
    ui.page("/alerts")(alerts.page)
    ui.page("/alerts/{alert_id}")(alert_detail.page)
    ui.page("/cases")(cases.list_page)
    ui.page("/cases/{case_id}")(cases.detail_page)
    ui.page("/cases/{case_id}/report")(report.page)
    ui.page("/transactions")(transactions.page)
    ui.page("/users")(users.page)
    ui.page("/audit")(audit.page)
    ui.page("/rules")(rules.page)
    ui.page("/models")(models.page)
    ui.page("/jobs")(jobs.page)
    ui.page("/credit")(credit_profiles.page)
    ui.page("/credit/clients/{tenant}/{client_id}")(credit_profile.page)
    ui.page("/credit/requests")(credit_requests.page)
    ui.page("/credit/analytics")(credit_analytics.page)


def build(
    settings: Settings, *, store: Store | None = None, ops: Operations | None = None
) -> context.UiContext:
    """Configure the dashboard's dependencies from settings (opening the store lazily).

    ``ops`` carries the Serve and scheduler hooks (rule activation, promotion, "run now");
    without them the dashboard changes the store only and says so.
    """
    if settings.jwt_secret is None:
        raise RuntimeError("AML_JWT_SECRET is not set")
    if store is None:
        uri = resolve_mongodb_uri(settings)
        store = open_store(
            uri, settings.mongodb_db, timeout_ms=settings.mongodb_timeout_ms, appname="ui"
        )
    ctx = context.UiContext(
        store=store,
        tokens=TokenService(
            settings.jwt_secret.get_secret_value(),
            access_minutes=settings.access_token_minutes,
            refresh_hours=settings.refresh_token_hours,
        ),
        limiter=LoginRateLimiter(max_attempts=settings.login_attempts_per_minute),
        currency=settings.default_currency,
    )
    context.configure(ctx)
    jobs.configure(ops or Operations(settings=settings))
    return ctx


def run(settings: Settings, *, ops: Operations | None = None) -> None:
    """Serve the dashboard (blocking). The JWT secret doubles as the session-cookie secret."""
    ctx = build(settings, ops=ops)
    register_pages()
    app.on_startup(ctx.store.ensure_indexes)
    # NiceGUI runs a coroutine returned by a start-up handler as a background task and cancels
    # it at shutdown: the periodic expiry of credit requests lives as long as the dashboard.
    app.on_startup(lambda: credit.run_expiry(ctx.store))
    app.on_shutdown(ctx.store.close)
    assert settings.jwt_secret is not None
    ui.run(
        host=settings.ui_host,
        port=settings.ui_port,
        title="fineract-aml",
        storage_secret=settings.jwt_secret.get_secret_value(),
        reload=False,
        show=False,
    )
