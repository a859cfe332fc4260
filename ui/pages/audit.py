"""Audit log (admin, senior analysts): filterable trail with a hash-chain verify button."""

from __future__ import annotations

import json

from nicegui import ui

from aml.auth import Permission
from serve.services import Actor, audit
from ui import context
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 50


async def page() -> None:
    actor = await require_page(Permission.AUDIT_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Audit log", actor):
        with ui.row().classes("items-end gap-4"):
            who = ui.input("Actor").mark("audit-actor")
            action = ui.input("Action (e.g. alert.decide)").mark("audit-action")
            ui.button("Filter", on_click=lambda: render()).mark("audit-filter")
            ui.button("Verify chain", on_click=lambda: verify()).props("outline").mark(
                "audit-verify"
            )
            result = ui.label("").mark("audit-result")
        columns = [
            {"name": k, "label": v, "field": k, "align": "left"}
            for k, v in (
                ("seq", "#"),
                ("at", "When (UTC)"),
                ("actor", "Who"),
                ("ip", "IP"),
                ("action", "Action"),
                ("target", "Target"),
                ("details", "Details"),
            )
        ]
        table = (
            ui.table(columns=columns, rows=[], row_key="seq").classes("w-full").mark("audit-table")
        )

        async def render() -> None:
            page = await run_action(
                lambda a: audit.list_entries(
                    ctx.store,
                    actor=a,
                    who=(who.value or "").strip() or None,
                    action=(action.value or "").strip() or None,
                    limit=PAGE_SIZE,
                )
            )
            if page is None:
                return
            table.rows = [
                {
                    "seq": e.seq,
                    "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                    "actor": e.actor,
                    "ip": e.ip or "—",
                    "action": e.action,
                    "target": f"{e.target_type}:{e.target_id or ''}",
                    "details": json.dumps(dict(e.details), default=str)[:200],
                }
                for e in page.items
            ]
            table.update()

        async def verify() -> None:
            async def check(a: Actor) -> tuple[int | None]:
                # Boxed so "intact" (None) is distinguishable from a refused call.
                return (await audit.verify(ctx.store, actor=a),)

            outcome = await run_action(check)
            if outcome is None:
                return
            broken = outcome[0]
            if broken is None:
                result.text = "Chain intact"
                result.classes(replace="text-positive")
            else:
                result.text = f"Chain broken at entry #{broken}"
                result.classes(replace="text-negative")
            await render()

        await render()
