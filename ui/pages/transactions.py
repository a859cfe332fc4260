"""Transaction search by account, client, amount range and date range, newest first, with
server-side pagination and the risk level each transaction was scored at."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from nicegui import ui

from aml.auth import Permission
from aml.domain import RiskLevel
from aml.money import to_major, to_minor
from serve.services import transactions
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 50


def _day(value: str | None) -> datetime | None:
    """``YYYY-MM-DD`` typed by the analyst as the start of that day in UTC (``None``: blank)."""
    if not value or not value.strip():
        return None
    try:
        return datetime.combine(date.fromisoformat(value.strip()), datetime.min.time(), UTC)
    except ValueError:
        ui.notify(f"{value!r} is not a date (YYYY-MM-DD)", type="warning")
        return None


async def page() -> None:
    actor = await require_page(Permission.TRANSACTION_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Transactions", actor):
        with ui.row().classes("items-end gap-4 flex-wrap"):
            account = ui.input("Account (e.g. savings:12)").mark("tx-account")
            client = ui.input("Fineract client id").mark("tx-client")
            minimum = ui.number(f"Min amount ({ctx.currency})", min=0).mark("tx-min")
            maximum = ui.number(f"Max amount ({ctx.currency})", min=0).mark("tx-max")
            since = ui.input("From (YYYY-MM-DD)").classes("w-40").mark("tx-from")
            until = ui.input("To, inclusive (YYYY-MM-DD)").classes("w-48").mark("tx-to")
            risks = (
                ui.select([r.value for r in RiskLevel], multiple=True, label="Risk", value=[])
                .classes("w-48")
                .mark("tx-risk")
            )
            ui.button("Search", on_click=lambda: render(reset=True)).mark("tx-search")
        summary = ui.label("").classes(theme.MUTED).mark("tx-summary")
        columns = [
            {"name": k, "label": v, "field": k, "align": "left", "sortable": True}
            for k, v in (
                ("occurred_at", "When"),
                ("type", "Type"),
                ("amount", "Amount"),
                ("account_id", "Account"),
                ("client_id", "Client"),
                ("external_id", "Fineract tx id"),
                ("status", "Status"),
                ("risk", "Risk"),
            )
        ]
        table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full").mark("tx-table")
        with ui.row().classes("items-center gap-2"):
            ui.button("Previous", on_click=lambda: move(-1)).props("flat").mark("tx-prev")
            pager = ui.label("").mark("tx-pager")
            ui.button("Next", on_click=lambda: move(1)).props("flat").mark("tx-next")
        window = {"skip": 0, "total": 0}

        async def render(reset: bool = False) -> None:
            if reset:
                window["skip"] = 0
            currency = ctx.currency
            end = _day(until.value)
            result = await run_action(
                lambda a: transactions.search(
                    ctx.store,
                    actor=a,
                    account_id=(account.value or "").strip() or None,
                    client_id=(client.value or "").strip() or None,
                    min_amount_minor=to_minor(str(minimum.value), currency)
                    if minimum.value
                    else None,
                    max_amount_minor=to_minor(str(maximum.value), currency)
                    if maximum.value
                    else None,
                    since=_day(since.value),
                    until=end + timedelta(days=1) if end else None,
                    risk_levels=[RiskLevel(v) for v in risks.value or []],
                    skip=window["skip"],
                    limit=PAGE_SIZE,
                )
            )
            if result is None:
                return
            window["total"] = result.total
            last = min(result.skip + PAGE_SIZE, result.total)
            summary.text = f"{result.total} transactions"
            pager.text = f"{result.skip + 1 if result.total else 0}-{last} of {result.total}"
            table.rows = [
                {
                    "id": tx.id,
                    "occurred_at": tx.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    "type": tx.type.value,
                    "amount": f"{to_major(tx.amount_minor, tx.currency):,.2f} {tx.currency}",
                    "account_id": tx.account_id,
                    "client_id": tx.client_id or "—",
                    "external_id": tx.external_id or "—",
                    # A transaction Fineract later undid stays listed (it moved money then), marked.
                    "status": f"{tx.status.value} · reversed" if tx.reversed else tx.status.value,
                    "risk": tx.risk_level.value if tx.risk_level else "—",
                }
                for tx in result.items
            ]
            table.update()

        async def move(step: int) -> None:
            new = window["skip"] + step * PAGE_SIZE
            if 0 <= new < max(window["total"], 1):
                window["skip"] = new
                await render()

        await render()
