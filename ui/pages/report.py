"""Suspicious-transaction report of a SAR-filed case: the report on screen, the goAML XML and a
printable HTML page to download (each download is audited)."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission
from aml.errors import AmlError
from serve.services import str_export
from serve.services.str_export import Party, StrReport
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.jobs import operations


def _party(p: Party) -> str:
    side = "our client" if p.my_client else "third party"
    account = p.account or ("cash" if p.funds_code == str_export.CASH_FUNDS else "unknown")
    extra = f" · client {p.client_id}" if p.client_id else ""
    return f"{side} · {account}{extra}" + (f" · {p.name}" if p.name else "")


async def page(case_id: str) -> None:
    actor = await require_page(Permission.REPORT_EXPORT)
    if actor is None:
        return
    ctx = context.get()
    settings = operations().settings
    try:
        report = await str_export.build(ctx.store, actor=actor, case_id=case_id, settings=settings)
    except AmlError as exc:
        with frame("Suspicious transaction report", actor):
            ui.label(exc.message).classes("text-negative").mark("str-error")
            ui.link("Back to the case", f"/cases/{case_id}")
        return
    with frame(f"Suspicious transaction report · {report.case.number}", actor):
        _show(report)

        async def download(fmt: str) -> None:
            done = await run_action(
                lambda a: str_export.export(
                    ctx.store, actor=a, case_id=case_id, settings=settings, fmt=fmt
                ),
                success="Export recorded in the audit log",
            )
            if done is None:
                return
            rendered = done[1]
            content = rendered if isinstance(rendered, bytes) else rendered.encode()
            ui.download.content(
                content,
                f"{report.filename}.{fmt}",
                "application/xml" if fmt == "xml" else "text/html",
            )

        with ui.row().classes("gap-2"):
            ui.button("Download goAML XML", on_click=lambda: download("xml")).mark("str-xml")
            ui.button("Download printable HTML", on_click=lambda: download("html")).props(
                "outline"
            ).mark("str-html")
            ui.button("Print", on_click=lambda: ui.run_javascript("window.print()")).props("flat")
            ui.link("Back to the case", f"/cases/{case_id}")


def _show(report: StrReport) -> None:
    with ui.card().classes("w-full"):
        for label, value in (
            ("Reporting entity", f"{report.entity.name} ({report.entity.id})"),
            ("Report", f"{str_export.REPORT_CODE}, submission {str_export.SUBMISSION_CODE}"),
            ("Reporting person", f"{report.reporting_person_name} ({report.reporting_person})"),
            ("Local currency", report.currency_local),
            ("Subject client", report.case.client_id or "—"),
            ("Approved by", report.case.approved_by or "—"),
        ):
            with ui.row().classes("gap-4"):
                ui.label(label).classes(theme.MUTED + " min-w-[10rem]")
                ui.label(value)
    ui.label("Reason").classes(theme.SECTION_TITLE)
    ui.label(report.reason).classes("whitespace-pre-wrap").mark("str-reason")
    ui.label("Action").classes(theme.SECTION_TITLE)
    ui.label(report.action)
    ui.label("Transactions").classes(theme.SECTION_TITLE)
    columns = [
        {"name": k, "label": v, "field": k, "align": "left"}
        for k, v in (
            ("date", "Date"),
            ("number", "Number"),
            ("type", "Type"),
            ("amount", "Amount"),
            ("source", "From"),
            ("destination", "To"),
        )
    ]
    ui.table(
        columns=columns,
        rows=[
            {
                "id": r.transaction.id,
                "date": f"{r.transaction.occurred_at:%Y-%m-%d %H:%M}",
                "number": r.transaction.external_id or r.transaction.id,
                "type": r.transaction.type.value,
                "amount": f"{r.amount_local} {report.currency_local}",
                "source": _party(r.source),
                "destination": _party(r.destination),
            }
            for r in report.transactions
        ],
        row_key="id",
    ).classes("w-full").mark("str-transactions")
    ui.label("Indicators").classes(theme.SECTION_TITLE)
    ui.label(", ".join(report.indicators) or "none").classes(theme.MONO).mark("str-indicators")
