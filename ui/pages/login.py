"""Login page (the only open route)."""

from __future__ import annotations

from nicegui import ui

from aml.errors import AmlError
from ui import theme
from ui.auth import current_actor, sign_in


def _safe_target(redirect_to: str) -> str:
    # Only same-site paths: an open redirect would let a phishing link bounce through us.
    if redirect_to.startswith("/") and not redirect_to.startswith("//"):
        return redirect_to
    return "/"


async def page(redirect_to: str = "/") -> None:
    theme.apply()
    ui.page_title("Sign in · fineract-aml")
    target = _safe_target(redirect_to)
    if await current_actor() is not None:
        ui.navigate.to(target)
        return

    async def submit() -> None:
        try:
            await sign_in(username.value or "", password.value or "")
        except AmlError as exc:
            error.text = exc.message
            error.visible = True
            password.value = ""
            return
        ui.navigate.to(target)

    with ui.card().classes("absolute-center w-96 gap-4"):
        ui.label("fineract-aml").classes("text-2xl font-bold")
        ui.label("Sign in to review alerts and cases").classes(theme.MUTED)
        username = ui.input("Username").props("autofocus").classes("w-full").mark("username")
        password = (
            ui.input("Password", password=True, password_toggle_button=True)
            .classes("w-full")
            .mark("password")
            .on("keydown.enter", submit)
        )
        error = ui.label("").classes("text-negative").mark("login-error")
        error.visible = False
        ui.button("Sign in", on_click=submit).classes("w-full").mark("sign-in")
