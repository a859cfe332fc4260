"""One client's credit profile: score, tier and limit, components as a chart (the round-trip
deduction shown apart, as it is a negative deduction and not a 0-1 component), the 180-day
activity, the behavioural cluster and whether it agrees, reasons and requests."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from aml.auth import Permission, can
from aml.credit.score import COMPONENT_NAMES, ROUND_TRIP_COMPONENT
from aml.domain import CreditProfile
from aml.errors import NotFound
from aml.money import format_money, to_major
from serve.services import credit
from serve.services.credit import ActivityBucket, ProfileDetail
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.credit_profiles import TIER_COLOURS, profile_path, tier_badge


def components_chart(profile: CreditProfile) -> dict[str, Any]:
    """Horizontal bars of the seven 0-1 components (the round-trip deduction is not one)."""
    names = [n for n in COMPONENT_NAMES if n in profile.components]
    return {
        "title": {"text": "Score components (0-1)", "textStyle": {"fontSize": 14}},
        "tooltip": {},
        "grid": {"left": 150},
        "xAxis": {"type": "value", "min": 0, "max": 1},
        "yAxis": {"type": "category", "data": [theme.label_of(n) for n in names]},
        "series": [
            {
                "type": "bar",
                "data": [round(float(profile.components[n]), 4) for n in names],
                "itemStyle": {"color": theme.PRIMARY},
            }
        ],
    }


def activity_chart(activity: list[ActivityBucket], currency: str) -> dict[str, Any]:
    """Weekly money in and out (bars, major units) and the number of transactions (line)."""
    return {
        "title": {"text": f"Activity per week ({currency})", "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["In", "Out", "Transactions"], "right": 0},
        "xAxis": {"type": "category", "data": [f"{b.start:%m-%d}" for b in activity]},
        "yAxis": [{"type": "value"}, {"type": "value", "minInterval": 1}],
        "series": [
            {
                "name": "In",
                "type": "bar",
                "data": [to_major(b.inflow_minor, currency) for b in activity],
                "itemStyle": {"color": theme.POSITIVE},
            },
            {
                "name": "Out",
                "type": "bar",
                "data": [to_major(b.outflow_minor, currency) for b in activity],
                "itemStyle": {"color": theme.NEGATIVE},
            },
            {
                "name": "Transactions",
                "type": "line",
                "yAxisIndex": 1,
                "data": [b.count for b in activity],
            },
        ],
    }


def agreement_text(detail: ProfileDetail) -> str:
    """How the behavioural cluster's tier compares with the rule tier."""
    p = detail.profile
    gap = detail.tier_gap
    if gap is None or p.cluster_tier is None:
        return "No behavioural cluster (no promoted clustering model, or too little history)."
    where = f"Cluster {p.cluster_id} suggests tier {p.cluster_tier.value}"
    if gap == 0:
        return f"{where}: agrees with the rule tier."
    if gap == 1:
        return f"{where}: one tier from the rule tier {p.tier.value}, within tolerance."
    return f"{where}: {gap} tiers from the rule tier {p.tier.value}; review before lending."


def _card(label: str, value: str, mark: str) -> None:
    with ui.card().classes(theme.CARD).mark(mark):
        ui.label(value).classes(theme.CARD_VALUE)
        ui.label(label).classes(theme.CARD_LABEL)


async def page(tenant: str, client_id: str) -> None:
    actor = await require_page(Permission.CREDIT_READ)
    if actor is None:
        return
    ctx = context.get()
    try:
        detail = await credit.get_profile(
            ctx.store, actor=actor, tenant=tenant, client_id=client_id
        )
    except NotFound:
        with frame("Credit profile not found", actor):
            ui.label(f"No credit profile for client {client_id} in {tenant}.")
            ui.link("Back to credit profiles", "/credit")
        return
    p = detail.profile
    with frame(f"Client {p.client_id} · credit profile", actor):
        with ui.row().classes("items-center gap-4 flex-wrap"):
            tier_badge(p.tier).classes("text-lg").mark("profile-tier")
            if p.needs_review:
                ui.badge("Needs review: the cluster disagrees with the rule tier").props(
                    "color=warning"
                ).mark("profile-needs-review")
            ui.label(f"{p.tenant} · computed {p.computed_at:%Y-%m-%d %H:%M} UTC").classes(
                theme.MUTED
            )
            if can(actor.role, Permission.CREDIT_REQUEST):

                async def refresh() -> None:
                    done = await run_action(
                        lambda a: credit.refresh_profile(
                            ctx.store, actor=a, tenant=p.tenant, client_id=p.client_id
                        ),
                        success="Profile recomputed",
                    )
                    if done is not None:
                        ui.navigate.to(profile_path(p.tenant, p.client_id))

                ui.button("Rescore now", on_click=refresh).props("outline").mark("profile-refresh")
                ui.link("New credit request", f"/credit/requests?client_id={p.client_id}")
        with ui.row().classes("gap-4 flex-wrap"):
            _card("Score", f"{p.score:.2f}", "profile-score")
            _card("Credit limit", format_money(p.limit_minor, p.currency), "profile-limit")
            deduction = float(p.components.get(ROUND_TRIP_COMPONENT, 0.0))
            # Shown apart from the 0-1 components: it is subtracted from the weighted sum.
            _card(
                "Round-trip deduction",
                f"{deduction:.2f}" if deduction else "0.00",
                "profile-round-trip",
            )
            _card("Window", f"{p.window_days} days", "profile-window")
        with ui.card().classes("w-full").mark("profile-cluster"):
            ui.label("Behavioural cluster").classes(theme.SECTION_TITLE)
            label = ui.label(agreement_text(detail))
            if p.cluster_tier is not None:
                label.style(f"color: {TIER_COLOURS[p.cluster_tier]}")
        with ui.grid(columns=2).classes("w-full gap-4"):
            ui.echart(components_chart(p)).classes(theme.CHART_HEIGHT).mark("profile-components")
            ui.echart(activity_chart(list(detail.activity), p.currency)).classes(
                theme.CHART_HEIGHT
            ).mark("profile-activity")
        ui.label("Reasons").classes(theme.SECTION_TITLE)
        with ui.column().classes("gap-1").mark("profile-reasons"):
            for reason in p.reasons:
                ui.label(f"• {reason}")
        ui.label("Credit requests").classes(theme.SECTION_TITLE)
        with ui.column().classes("w-full gap-1").mark("profile-requests"):
            for r in detail.requests:
                ui.label(
                    f"{r.submitted_at:%Y-%m-%d} · {format_money(r.amount_minor, r.currency)} · "
                    f"{theme.label_of(r.status.value)} · advice "
                    f"{theme.label_of(r.recommendation.value)}"
                )
            if not detail.requests:
                ui.label("No credit requests yet.").classes(theme.MUTED)
