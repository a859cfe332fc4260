"""Transaction search by account, client and amount; newest first."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission
from aml.money import to_major, to_minor
from serve.services import transactions
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 50


async def page() -> None:
    actor = await require_page(Permission.TRANSACTION_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Transactions", actor):
        with ui.row().classes("items-end gap-4"):
            account = ui.input("Account (e.g. savings:12)").mark("tx-account")
            client = ui.input("Fineract client id").mark("tx-client")
            minimum = ui.number(f"Min amount ({ctx.currency})", min=0).mark("tx-min")
            ui.button("Search", on_click=lambda: render()).mark("tx-search")
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
            )
        ]
        table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full").mark("tx-table")

        async def render() -> None:
            currency = ctx.currency
            result = await run_action(
                lambda a: transactions.search(
                    ctx.store,
                    actor=a,
                    account_id=(account.value or "").strip() or None,
                    client_id=(client.value or "").strip() or None,
                    min_amount_minor=to_minor(str(minimum.value), currency)
                    if minimum.value
                    else None,
                    limit=PAGE_SIZE,
                )
            )
            if result is None:
                return
            summary.text = f"{result.total} transactions (showing up to {PAGE_SIZE})"
            table.rows = [
                {
                    "id": tx.id,
                    "occurred_at": tx.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    "type": tx.type.value,
                    "amount": f"{to_major(tx.amount_minor, tx.currency):,.2f} {tx.currency}",
                    "account_id": tx.account_id,
                    "client_id": tx.client_id or "—",
                    "external_id": tx.external_id or "—",
                    "status": tx.status.value,
                }
                for tx in result.items
            ]
            table.update()

        await render()
