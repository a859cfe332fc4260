"""The shared page chrome: header with navigation (only what the role may open), the signed-in
user and a sign-out button."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import ui

from aml.auth import Permission, can
from serve.services import Actor
from ui import theme
from ui.auth import LOGIN_PATH, sign_out

NAV: tuple[tuple[str, str, Permission], ...] = (
    ("Overview", "/", Permission.OVERVIEW_READ),
    ("Alerts", "/alerts", Permission.ALERT_READ),
    ("Cases", "/cases", Permission.CASE_READ),
    ("Transactions", "/transactions", Permission.TRANSACTION_READ),
    ("Credit", "/credit", Permission.CREDIT_READ),
    ("Credit requests", "/credit/requests", Permission.CREDIT_READ),
    ("Credit analytics", "/credit/analytics", Permission.CREDIT_READ),
    ("Users", "/users", Permission.USER_ADMIN),
    ("Audit log", "/audit", Permission.AUDIT_READ),
    ("Rules", "/rules", Permission.RULE_READ),
    ("Models", "/models", Permission.MODEL_READ),
    ("Jobs", "/jobs", Permission.JOB_READ),
)


def _sign_out() -> None:
    sign_out()
    ui.navigate.to(LOGIN_PATH)


@contextmanager
def frame(title: str, actor: Actor) -> Iterator[ui.column]:
    """Page chrome around the page's content."""
    theme.apply()
    ui.page_title(f"{title} · fineract-aml")
    with ui.header().classes("items-center justify-between bg-primary"):
        with ui.row().classes("items-center gap-4"):
            ui.label("fineract-aml").classes("text-xl font-bold")
            for label, path, permission in NAV:
                if can(actor.role, permission):
                    ui.link(label, path).classes("text-white no-underline").mark(f"nav-{path}")
        with ui.row().classes("items-center gap-2"):
            ui.label(f"{actor.username} ({theme.label_of(actor.role.value)})")
            ui.button("Sign out", on_click=_sign_out).props("flat color=white")
    with ui.column().classes(theme.PAGE_WIDTH) as content:
        ui.label(title).classes("text-2xl font-semibold")
        yield content
