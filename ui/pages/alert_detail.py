"""Alert detail: transactions with Fineract ids, fired rules with values, score per scorer, top
feature contributions, the customer's recent activity, related alerts; decide, escalate, add to a
case."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import AnalystDecision, Decision, Transaction
from aml.errors import NotFound
from aml.explain import contributions_basis
from aml.money import to_major
from serve.services import Actor, alerts, cases
from serve.services.alerts import AlertDetail
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

TOP_CONTRIBUTIONS = 5  # per scorer

DECISIONS = {
    AnalystDecision.LEGITIMATE.value: "Legitimate",
    AnalystDecision.SUSPICIOUS.value: "Suspicious",
    AnalystDecision.CONFIRMED_FRAUD.value: "Confirmed fraud",
}


def _money(tx: Transaction) -> str:
    return f"{to_major(tx.amount_minor, tx.currency):,.2f} {tx.currency}"


def _transactions(detail: AlertDetail) -> None:
    ui.label("Transactions").classes(theme.SECTION_TITLE)
    columns = [
        {"name": k, "label": v, "field": k, "align": "left"}
        for k, v in (
            ("occurred_at", "When"),
            ("type", "Type"),
            ("amount", "Amount"),
            ("account_id", "Account"),
            ("external_id", "Fineract tx id"),
            ("client_id", "Fineract client"),
            ("office_id", "Office"),
            ("counterparty", "Counterparty"),
        )
    ]
    rows = [
        {
            "id": tx.id,
            "occurred_at": tx.occurred_at.strftime("%Y-%m-%d %H:%M"),
            "type": tx.type.value,
            "amount": _money(tx),
            "account_id": tx.account_id,
            "external_id": tx.external_id or "—",
            "client_id": tx.client_id or "—",
            "office_id": tx.office_id or "—",
            "counterparty": tx.counterparty_account_id or tx.counterparty_name or "—",
        }
        for tx in detail.transactions
    ]
    ui.table(columns=columns, rows=rows, row_key="id").classes("w-full").mark("transactions")


def _decision(dec: Decision) -> None:
    with ui.card().classes("w-full"):
        ui.label(
            f"Transaction {dec.transaction_id}: score {dec.score:.2f} "
            f"({theme.label_of(dec.risk_level.value)})"
        ).classes("font-semibold")
        if dec.explanation:
            ui.label(dec.explanation).classes(theme.MUTED)
        with ui.row().classes("gap-8 items-start flex-wrap"):
            with ui.column().mark("scorers"):
                ui.label("Score per scorer").classes("font-semibold")
                for s in dec.scorers:
                    text = (
                        f"{s.scorer}: {s.score:.2f}"
                        if s.available and s.score is not None
                        else f"{s.scorer}: unavailable ({s.reason or 'no reason'})"
                    )
                    ui.label(text + (f" · {s.model_version}" if s.model_version else ""))
            with ui.column().mark("rules"):
                ui.label("Rules fired").classes("font-semibold")
                for hit in dec.rule_hits:
                    values = ", ".join(f"{k}={v}" for k, v in hit.values.items())
                    ui.label(f"{hit.rule_id} ({hit.category}, {hit.severity:.2f}): {values}")
                    if hit.description:
                        ui.label(hit.description).classes(theme.MUTED)
                if not dec.rule_hits:
                    ui.label("none").classes(theme.MUTED)
            with ui.column().mark("contributions"):
                ui.label("Top feature contributions").classes("font-semibold")
                # Per scorer: an anomaly distance and a SHAP value are not on one scale, and
                # the analyst must see what each anomaly distance is measured against.
                explained = [s for s in dec.scorers if s.contributions]
                for s in explained:
                    basis = contributions_basis(s)
                    ui.label(f"{s.scorer} {basis}".strip()).classes(theme.MUTED).mark(
                        f"contributions-{s.scorer}"
                    )
                    for c in s.contributions[:TOP_CONTRIBUTIONS]:
                        ui.label(f"{c.feature} = {c.value:g} → {c.contribution:+.3f}")
                if not explained:
                    ui.label("none").classes(theme.MUTED)


def _activity(detail: AlertDetail) -> None:
    ui.label("Customer activity (30 days)").classes(theme.SECTION_TITLE)
    points = [
        [tx.occurred_at.isoformat(), to_major(tx.amount_minor, tx.currency)]
        for tx in detail.recent_activity
    ]
    flagged = [
        [tx.occurred_at.isoformat(), to_major(tx.amount_minor, tx.currency)]
        for tx in detail.transactions
    ]
    ui.echart(
        {
            "tooltip": {"trigger": "item"},
            "xAxis": {"type": "time"},
            "yAxis": {"type": "value"},
            "legend": {"data": ["activity", "alerted"]},
            "series": [
                {"name": "activity", "type": "scatter", "data": points},
                {
                    "name": "alerted",
                    "type": "scatter",
                    "data": flagged,
                    "itemStyle": {"color": theme.ACCENT},
                    "symbolSize": 14,
                },
            ],
        }
    ).classes(theme.CHART_HEIGHT).mark("activity")


async def page(alert_id: str) -> None:
    actor = await require_page(Permission.ALERT_READ)
    if actor is None:
        return
    ctx = context.get()
    try:
        detail = await alerts.get_detail(ctx.store, actor=actor, alert_id=alert_id)
    except NotFound:
        with frame("Alert not found", actor):
            ui.link("Back to the queue", "/alerts")
        return
    alert = detail.alert
    with frame(alert.title or f"Alert {alert.id}", actor):
        with ui.row().classes("gap-6 items-center flex-wrap"):
            ui.badge(theme.label_of(alert.risk_level.value)).style(
                f"background-color: {theme.RISK_COLOURS[alert.risk_level]} !important"
            )
            ui.label(f"Status: {theme.label_of(alert.status.value)}").mark("alert-status")
            ui.label(f"Score {alert.score:.2f}")
            ui.label(f"Account {alert.account_id} · client {alert.client_id or '—'}")
            ui.label(f"Assignee: {alert.assignee or '—'}")
            ui.label(f"SLA due {alert.sla_due_at:%Y-%m-%d %H:%M} UTC")
            if alert.case_id:
                ui.link("Open case", f"/cases/{alert.case_id}").mark("alert-case")
        if alert.decision:
            ui.label(
                f"Decided {DECISIONS[alert.decision.value]} by {alert.decided_by}: "
                f"{alert.decision_note}"
            ).classes("text-lg").mark("alert-decision")
        _actions(actor, alert.id, alert.status.is_open, alert.case_id)
        _transactions(detail)
        ui.label("Why it was flagged").classes(theme.SECTION_TITLE)
        for dec in detail.decisions:
            _decision(dec)
        _activity(detail)
        ui.label("Related alerts of this customer").classes(theme.SECTION_TITLE)
        with ui.column().mark("related"):
            for other in detail.related:
                ui.link(
                    f"{other.created_at:%Y-%m-%d} · {theme.label_of(other.status.value)} · "
                    f"{other.title or other.id}",
                    f"/alerts/{other.id}",
                )
            if not detail.related:
                ui.label("none").classes(theme.MUTED)


def _actions(actor: Actor, alert_id: str, is_open: bool, case_id: str | None) -> None:
    ctx = context.get()
    if not is_open:
        return
    with ui.card().classes("w-full"):
        with ui.row().classes("items-end gap-4 w-full flex-wrap"):
            note = (
                ui.textarea("Note (required)")
                .classes("min-w-[24rem] grow")
                .props("autogrow")
                .mark("decision-note")
            )
            choice = ui.radio(DECISIONS, value=None).props("inline").mark("decision-choice")

            async def decide() -> None:
                if not choice.value:
                    ui.notify("Choose a decision", type="warning")
                    return
                done = await run_action(
                    lambda a: alerts.decide(
                        ctx.store,
                        actor=a,
                        alert_id=alert_id,
                        decision=AnalystDecision(choice.value),
                        note=note.value or "",
                    ),
                    success="Decision recorded",
                )
                if done is not None:
                    ui.navigate.to("/alerts")

            async def escalate() -> None:
                done = await run_action(
                    lambda a: alerts.escalate(
                        ctx.store, actor=a, alert_id=alert_id, note=note.value or ""
                    ),
                    success="Escalated",
                )
                if done is not None:
                    ui.navigate.to(f"/alerts/{alert_id}")

            if can(actor.role, Permission.ALERT_DECIDE):
                ui.button("Submit decision", on_click=decide).mark("decide")
            if can(actor.role, Permission.ALERT_ESCALATE):
                ui.button("Escalate", on_click=escalate).props("outline").mark("escalate")
        if can(actor.role, Permission.CASE_WRITE) and case_id is None:
            with ui.row().classes("items-end gap-4"):
                title = ui.input("New case title").mark("case-title")

                async def new_case() -> None:
                    case = await run_action(
                        lambda a: cases.create(
                            ctx.store, actor=a, title=title.value or "", alert_ids=[alert_id]
                        ),
                        success="Case opened",
                    )
                    if case is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                ui.button("Open a case", on_click=new_case).props("outline").mark("new-case")
                existing = ui.input("or add to case (id)").mark("case-id")

                async def add_to_case() -> None:
                    case = await run_action(
                        lambda a: cases.add_alerts(
                            ctx.store,
                            actor=a,
                            case_id=(existing.value or "").strip(),
                            alert_ids=[alert_id],
                        ),
                        success="Added to case",
                    )
                    if case is not None:
                        ui.navigate.to(f"/cases/{case.id}")

                ui.button("Add to case", on_click=add_to_case).props("outline").mark("add-to-case")
