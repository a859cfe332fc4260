"""Scheduler jobs: last run, next run, outcome and message, with "run now" when this dashboard
is connected to the scheduler. Also holds the operational hooks the entry point hands over."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission, can
from serve.services import jobs
from serve.services.jobs import Operations
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

_operations: Operations | None = None


def configure(ops: Operations) -> None:
    """Install the Serve and scheduler hooks of this dashboard process (entry point only)."""
    global _operations
    _operations = ops


def operations() -> Operations:
    """The hooks installed by the entry point (no hooks and default settings when none were:
    built on first use, never at import)."""
    global _operations
    if _operations is None:
        _operations = Operations()
    return _operations


def _when(value: object) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


async def page() -> None:
    actor = await require_page(Permission.JOB_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Scheduled jobs", actor):
        connected = operations().run_job is not None
        if not connected:
            ui.label(
                "This dashboard is not connected to the scheduler: jobs are shown from the "
                "store and cannot be started from here."
            ).classes(theme.MUTED).mark("jobs-offline")
        body = ui.column().classes("w-full gap-2")

        async def render() -> None:
            states = await run_action(lambda a: jobs.list_jobs(ctx.store, actor=a))
            if states is None:
                return
            body.clear()
            with body:
                if not states:
                    ui.label("The scheduler has not recorded any job yet.").classes(theme.MUTED)
                for s in states:
                    with ui.card().classes("w-full").mark(f"job-{s.name}"):
                        with ui.row().classes("items-center gap-6 w-full"):
                            ui.label(s.name).classes("text-lg font-semibold min-w-[12rem]")
                            colour = {
                                "ok": "positive",
                                "error": "negative",
                                "skipped": "warning",
                            }.get(s.outcome or "", "grey")
                            ui.badge(s.outcome or "not run yet").props(f"color={colour}").mark(
                                f"job-outcome-{s.name}"
                            )
                            ui.label(f"Last run: {_when(s.last_run)}")
                            ui.label(f"Next run: {_when(s.next_run)}")
                            ui.label(f"Runs: {s.runs}")
                            if connected and can(actor.role, Permission.JOB_RUN):
                                ui.button("Run now", on_click=lambda name=s.name: run(name)).props(
                                    "outline"
                                ).mark(f"job-run-{s.name}")
                        if s.message:
                            ui.label(s.message).classes(theme.MONO + " whitespace-pre-wrap")

        async def run(name: str) -> None:
            result = await run_action(
                lambda a: jobs.run_now(ctx.store, actor=a, name=name, runner=operations().run_job)
            )
            if result is not None:
                ui.notify(f"{name}: {result.get('outcome')} {result.get('message', '')}")
                await render()

        await render()
