"""What a page shows when it could not be built (NiceGUI's page exception handler)."""

from __future__ import annotations

from nicegui import ui

from storage.client import unavailable_error
from ui import theme


def page(exc: Exception) -> None:
    """An unavailable store says so and offers a reload; anything else says the error was
    logged (NiceGUI logs it with its traceback, and answers 500)."""
    theme.apply()
    with ui.card().classes("absolute-center w-[32rem] gap-4"):
        unavailable = unavailable_error(exc)
        if unavailable is not None:
            ui.label("The database is unavailable").classes("text-xl font-semibold")
            ui.label(unavailable.message).classes(theme.MUTED).mark("store-unavailable")
            ui.button("Reload", on_click=ui.navigate.reload).mark("reload")
        else:
            ui.label("This page could not be shown").classes("text-xl font-semibold")
            ui.label("The error was logged for the operators.").classes(theme.MUTED).mark(
                "page-error"
            )
            ui.link("Back to the overview", "/")
