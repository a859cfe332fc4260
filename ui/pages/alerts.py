"""Alert queue: filters, server-side sort and pagination, SLA age, assign to me, bulk assign;
polls so new alerts appear without a reload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import Alert, AlertStatus, RiskLevel, utcnow
from serve.services import Actor, alerts, cases
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 25
OPEN_STATUSES = [s.value for s in AlertStatus if s.is_open]
SORTS = {
    "created_at": "Created",
    "score": "Score",
    "sla_due_at": "SLA due",
    "updated_at": "Updated",
}


@dataclass
class QueueState:
    statuses: list[str] = field(default_factory=lambda: list(OPEN_STATUSES))
    risks: list[str] = field(default_factory=list)
    rule_id: str = ""
    assignee: str = ""
    min_age_minutes: float = 0
    sort: str = "score"
    descending: bool = True
    skip: int = 0
    selected: set[str] = field(default_factory=set)
    total: int = 0
    signature: object = None


def age_text(alert: Alert) -> str:
    """Age of the alert and how it stands against its SLA."""
    now = utcnow()
    minutes = int((now - alert.created_at).total_seconds() // 60)
    age = f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
    if alert.status.is_open and alert.sla_due_at < now:
        return f"{age} · SLA breached"
    return age


async def page() -> None:
    actor = await require_page(Permission.ALERT_READ)
    if actor is None:
        return
    ctx = context.get()
    state = QueueState()
    with frame("Alert queue", actor):
        with ui.row().classes("items-end gap-4 flex-wrap"):
            ui.select(
                {s.value: theme.label_of(s.value) for s in AlertStatus},
                multiple=True,
                label="Status",
                value=state.statuses,
                on_change=lambda e: _set(state, "statuses", e.value or []),
            ).classes("min-w-[14rem]").mark("filter-status")
            ui.select(
                {r.value: theme.label_of(r.value) for r in RiskLevel},
                multiple=True,
                label="Risk",
                value=[],
                on_change=lambda e: _set(state, "risks", e.value or []),
            ).classes("min-w-[10rem]").mark("filter-risk")
            ui.input("Rule id", on_change=lambda e: _set(state, "rule_id", e.value or "")).mark(
                "filter-rule"
            )
            ui.input("Assignee", on_change=lambda e: _set(state, "assignee", e.value or "")).mark(
                "filter-assignee"
            )
            ui.number(
                "Older than (min)",
                value=0,
                min=0,
                on_change=lambda e: _set(state, "min_age_minutes", e.value or 0),
            ).classes("w-36").mark("filter-age")
            ui.select(
                SORTS,
                label="Sort by",
                value=state.sort,
                on_change=lambda e: _set(state, "sort", e.value),
            ).mark("sort")
            ui.switch(
                "Descending",
                value=True,
                on_change=lambda e: _set(state, "descending", bool(e.value)),
            ).mark("order")
            ui.button("Apply", on_click=lambda: refresh(reset=True)).mark("apply")
        with ui.row().classes("items-center gap-2"):
            ui.button("Assign selected to me", on_click=lambda: bulk_assign(actor.username)).mark(
                "bulk-assign-me"
            )
            if can(actor.role, Permission.CASE_APPROVE):
                target = ui.input("Assign selected to").mark("bulk-assignee")
                ui.button("Assign", on_click=lambda: bulk_assign(target.value or None)).mark(
                    "bulk-assign"
                )
            if can(actor.role, Permission.CASE_WRITE):
                case_title = ui.input("Case title").mark("bulk-case-title")
                ui.button(
                    "Open case from selected", on_click=lambda: open_case(case_title.value or "")
                ).props("outline").mark("bulk-case")
            summary = ui.label("").classes(theme.MUTED).mark("queue-summary")
        rows = ui.column().classes("w-full gap-1")
        with ui.row().classes("items-center gap-2"):
            ui.button("Previous", on_click=lambda: move(-1)).props("flat").mark("prev")
            pager = ui.label("").mark("pager")
            ui.button("Next", on_click=lambda: move(1)).props("flat").mark("next")

        async def refresh(reset: bool = False, force: bool = False) -> None:
            if reset:
                state.skip = 0
            result = await run_action(
                lambda a: alerts.list_alerts(
                    ctx.store,
                    actor=a,
                    status=[AlertStatus(s) for s in state.statuses],
                    risk_level=[RiskLevel(r) for r in state.risks],
                    rule_id=state.rule_id.strip() or None,
                    assignee=state.assignee.strip() or None,
                    min_age=timedelta(minutes=float(state.min_age_minutes))
                    if state.min_age_minutes
                    else None,
                    sort=state.sort,
                    descending=state.descending,
                    skip=state.skip,
                    limit=PAGE_SIZE,
                )
            )
            if result is None:
                return
            # Rebuild only when something changed, so polling does not swap rows under the
            # analyst's cursor.
            signature = (
                result.total,
                state.skip,
                tuple((a.id, a.status, a.assignee, a.updated_at) for a in result.items),
            )
            if signature == state.signature and not force:
                return
            state.signature = signature
            state.total = result.total
            visible = {a.id for a in result.items}
            state.selected &= visible
            rows.clear()
            with rows:
                _header()
                for alert in result.items:
                    _row(alert, actor, state, assign_one)
                if not result.items:
                    ui.label("No alerts match these filters.").classes(theme.MUTED)
            last = min(state.skip + PAGE_SIZE, state.total)
            pager.text = f"{state.skip + 1 if state.total else 0}-{last} of {state.total}"
            summary.text = f"{state.total} alerts"

        async def move(step: int) -> None:
            new = state.skip + step * PAGE_SIZE
            if 0 <= new < max(state.total, 1):
                state.skip = new
                await refresh()

        async def assign_one(alert_id: str) -> None:
            await run_action(
                lambda a: alerts.assign(
                    ctx.store, actor=a, alert_ids=[alert_id], assignee=a.username
                ),
                success="Assigned to you",
            )
            await refresh(force=True)

        async def bulk_assign(assignee: str | None) -> None:
            if not state.selected:
                ui.notify("Select alerts first", type="warning")
                return
            ids = sorted(state.selected)
            done = await run_action(
                lambda a: alerts.assign(ctx.store, actor=a, alert_ids=ids, assignee=assignee)
            )
            if done is not None:
                ui.notify(f"Assigned {done} alerts to {assignee}", type="positive")
                state.selected.clear()
            await refresh(force=True)

        async def open_case(title: str) -> None:
            if not state.selected:
                ui.notify("Select alerts first", type="warning")
                return
            ids = sorted(state.selected)
            case = await run_action(
                lambda a: cases.create(ctx.store, actor=a, title=title, alert_ids=ids),
                success="Case opened",
            )
            if case is not None:
                ui.navigate.to(f"/cases/{case.id}")

        await refresh()
        ui.timer(ctx.refresh_seconds, refresh)


def _set(state: QueueState, name: str, value: object) -> None:
    setattr(state, name, value)


_COLS = "grid grid-cols-[2rem_6rem_1fr_6rem_5rem_9rem_8rem_8rem_8rem] gap-2 items-center w-full"


def _header() -> None:
    with ui.element("div").classes(_COLS + " font-semibold text-sm text-gray-600"):
        for text in ("", "Risk", "Alert", "Status", "Score", "Rules", "Assignee", "Age", ""):
            ui.label(text)


def _row(alert: Alert, actor: Actor, state: QueueState, assign_one: object) -> None:
    def toggle(checked: bool) -> None:
        if checked:
            state.selected.add(alert.id)
        else:
            state.selected.discard(alert.id)

    with ui.element("div").classes(_COLS + " bg-white rounded px-1 py-1").mark(f"row-{alert.id}"):
        ui.checkbox(value=alert.id in state.selected, on_change=lambda e: toggle(e.value)).mark(
            f"select-{alert.id}"
        )
        ui.badge(theme.label_of(alert.risk_level.value)).classes("justify-self-start").style(
            f"background-color: {theme.RISK_COLOURS[alert.risk_level]} !important"
        )
        ui.link(alert.title or alert.id, f"/alerts/{alert.id}").mark(f"open-{alert.id}")
        ui.label(theme.label_of(alert.status.value)).classes("text-sm")
        ui.label(f"{alert.score:.2f}")
        ui.label(", ".join(alert.rule_ids)).classes(theme.MONO)
        ui.label(alert.assignee or "—")
        ui.label(age_text(alert)).classes("text-sm")
        if alert.status.is_open and alert.assignee != actor.username:
            ui.button(
                "Assign to me",
                on_click=lambda: assign_one(alert.id),  # type: ignore[operator]
            ).props("dense flat").mark(f"assign-{alert.id}")
        else:
            ui.label("")
