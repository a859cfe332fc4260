"""Cases: list, and one case with linked alerts and transactions, append-only notes, assignment
and the status workflow with four-eyes approval."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import Case, CaseStatus
from aml.errors import NotFound
from serve.services import Actor, cases
from serve.services.cases import FOUR_EYES, TRANSITIONS
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 25


async def list_page() -> None:
    actor = await require_page(Permission.CASE_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Cases", actor):
        with ui.row().classes("items-end gap-4"):
            status = (
                ui.select(
                    {s.value: theme.label_of(s.value) for s in CaseStatus},
                    multiple=True,
                    label="Status",
                    value=[],
                )
                .classes("min-w-[14rem]")
                .mark("case-filter-status")
            )
            pending = ui.switch("Awaiting approval only").mark("case-filter-pending")
            ui.button("Apply", on_click=lambda: render(reset=True)).mark("case-apply")
        body = ui.column().classes("w-full gap-1")
        with ui.row().classes("items-center gap-2"):
            ui.button("Previous", on_click=lambda: move(-1)).props("flat").mark("case-prev")
            pager = ui.label("").mark("case-pager")
            ui.button("Next", on_click=lambda: move(1)).props("flat").mark("case-next")
        window = {"skip": 0, "total": 0}

        async def render(reset: bool = False) -> None:
            if reset:
                window["skip"] = 0
            page = await run_action(
                lambda a: cases.list_cases(
                    ctx.store,
                    actor=a,
                    status=[CaseStatus(s) for s in status.value or []],
                    pending_only=bool(pending.value),
                    skip=window["skip"],
                    limit=PAGE_SIZE,
                )
            )
            if page is None:
                return
            window["total"] = page.total
            last = min(page.skip + PAGE_SIZE, page.total)
            pager.text = f"{page.skip + 1 if page.total else 0}-{last} of {page.total}"
            body.clear()
            with body:
                ui.label(f"{page.total} cases").classes(theme.MUTED)
                for case in page.items:
                    with ui.row().classes("bg-white rounded p-2 w-full items-center gap-6"):
                        ui.link(f"{case.number} · {case.title}", f"/cases/{case.id}").mark(
                            f"case-{case.id}"
                        )
                        ui.label(theme.label_of(case.status.value))
                        if case.pending_status:
                            ui.badge(
                                f"awaiting approval: {theme.label_of(case.pending_status.value)}"
                            ).props("color=warning")
                        ui.label(f"{len(case.alert_ids)} alerts · assignee {case.assignee or '—'}")

        async def move(step: int) -> None:
            new = window["skip"] + step * PAGE_SIZE
            if 0 <= new < max(window["total"], 1):
                window["skip"] = new
                await render()

        await render()


async def detail_page(case_id: str) -> None:
    actor = await require_page(Permission.CASE_READ)
    if actor is None:
        return
    ctx = context.get()
    try:
        case = await cases.get_or_raise(ctx.store, actor=actor, case_id=case_id)
    except NotFound:
        with frame("Case not found", actor):
            ui.link("Back to cases", "/cases")
        return
    with frame(f"{case.number} · {case.title}", actor):
        with ui.row().classes("gap-6 items-center"):
            ui.label(f"Status: {theme.label_of(case.status.value)}").mark("case-status")
            if case.pending_status:
                ui.badge(f"Awaiting approval: {theme.label_of(case.pending_status.value)}").props(
                    "color=warning"
                ).mark("case-pending")
            if case.approved_by:
                ui.label(f"Approved by {case.approved_by}")
            ui.label(f"Assignee: {case.assignee or '—'}")
            ui.label(f"Opened by {case.created_by} on {case.created_at:%Y-%m-%d %H:%M}")
            ui.label(f"SLA due {case.sla_due_at:%Y-%m-%d}")
        _workflow(actor, case)
        if case.status == CaseStatus.CLOSED_SAR_FILED and can(actor.role, Permission.REPORT_EXPORT):
            ui.button(
                "Suspicious transaction report (goAML)",
                on_click=lambda: ui.navigate.to(f"/cases/{case.id}/report"),
            ).props("color=primary").mark("case-str")
        ui.label("Alerts").classes(theme.SECTION_TITLE)
        with ui.column().mark("case-alerts"):
            for alert_id in case.alert_ids:
                ui.link(alert_id, f"/alerts/{alert_id}")
        ui.label("Transactions").classes(theme.SECTION_TITLE)
        with ui.column().mark("case-transactions"):
            for tx_id in case.transaction_ids:
                ui.label(tx_id).classes(theme.MONO)
        if can(actor.role, Permission.CASE_WRITE) and case.status in (
            CaseStatus.OPEN,
            CaseStatus.INVESTIGATING,
            CaseStatus.ESCALATED,
        ):
            with ui.row().classes("items-end gap-2"):
                tx_input = ui.input("Add transaction id").mark("case-add-tx")

                async def add_tx() -> None:
                    ids = [t.strip() for t in (tx_input.value or "").split(",") if t.strip()]
                    done = await run_action(
                        lambda a: cases.add_transactions(
                            ctx.store, actor=a, case_id=case.id, transaction_ids=ids
                        ),
                        success="Transaction added",
                    )
                    if done is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                ui.button("Add", on_click=add_tx).props("outline").mark("case-add-tx-button")
        ui.label("Notes").classes(theme.SECTION_TITLE)
        with ui.column().classes("w-full gap-2").mark("case-notes"):
            for n in case.notes:
                with ui.card().classes("w-full"):
                    ui.label(f"{n.author} · {n.at:%Y-%m-%d %H:%M} UTC").classes(theme.MUTED)
                    ui.label(n.text)
        if can(actor.role, Permission.CASE_WRITE):
            note = ui.textarea("New note").classes("w-full").mark("case-note")

            async def add_note() -> None:
                done = await run_action(
                    lambda a: cases.add_note(
                        ctx.store, actor=a, case_id=case.id, text=note.value or ""
                    ),
                    success="Note added",
                )
                if done is not None:
                    ui.navigate.to(f"/cases/{case.id}")

            ui.button("Add note", on_click=add_note).mark("case-add-note")


def _workflow(actor: Actor, case: Case) -> None:
    ctx = context.get()
    if not can(actor.role, Permission.CASE_WRITE):
        return
    with ui.card().classes("w-full"):
        with ui.row().classes("items-end gap-4 flex-wrap"):
            reason = ui.input("Reason / SAR reference").classes("min-w-[20rem]").mark("case-reason")

            def go(status: CaseStatus) -> None:
                async def handler() -> None:
                    done = await run_action(
                        lambda a: cases.change_status(
                            ctx.store,
                            actor=a,
                            case_id=case.id,
                            status=status,
                            note=reason.value or "",
                        ),
                        success="Sent for approval" if status in FOUR_EYES else "Status changed",
                    )
                    if done is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                label = theme.label_of(status.value)
                if status in FOUR_EYES:
                    label += " (needs approval)"
                ui.button(label, on_click=handler).props("outline").mark(f"to-{status.value}")

            if case.pending_status is None:
                for status in sorted(TRANSITIONS[case.status], key=list(CaseStatus).index):
                    go(status)
            if (
                case.assignee != actor.username
                and case.status in TRANSITIONS
                and TRANSITIONS[case.status]
            ):

                async def take() -> None:
                    done = await run_action(
                        lambda a: cases.assign(
                            ctx.store, actor=a, case_id=case.id, assignee=a.username
                        ),
                        success="Case assigned to you",
                    )
                    if done is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                ui.button("Assign to me", on_click=take).props("flat").mark("case-take")
        if case.pending_status is not None and can(actor.role, Permission.CASE_APPROVE):
            with ui.row().classes("items-end gap-4"):

                async def approve() -> None:
                    done = await run_action(
                        lambda a: cases.approve(ctx.store, actor=a, case_id=case.id),
                        success="Approved",
                    )
                    if done is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                async def reject() -> None:
                    done = await run_action(
                        lambda a: cases.reject(
                            ctx.store, actor=a, case_id=case.id, note=reason.value or ""
                        ),
                        success="Request rejected",
                    )
                    if done is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                ui.button(
                    f"Approve: {theme.label_of(case.pending_status.value)}", on_click=approve
                ).props("color=positive").mark("case-approve")
                ui.button("Reject request", on_click=reject).props("color=negative outline").mark(
                    "case-reject"
                )
