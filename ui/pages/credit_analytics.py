"""Credit analytics: tier distribution, mean limit per tier, weekly approval rates, pending
requests and profiles flagged for review."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from aml.auth import Permission
from aml.domain import CreditTier
from aml.money import to_major
from serve.services import credit
from serve.services.credit import ApprovalBucket, CreditAnalytics
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.credit_profiles import TIER_COLOURS

WEEKS = 12


def tier_chart(data: CreditAnalytics) -> dict[str, Any]:
    tiers = list(CreditTier)
    return {
        "title": {"text": "Clients per tier", "textStyle": {"fontSize": 14}},
        "tooltip": {},
        "xAxis": {"type": "category", "data": [f"Tier {t.value}" for t in tiers]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "type": "bar",
                "data": [
                    {"value": data.tier_distribution.get(t, 0), "itemStyle": {"color": c}}
                    for t, c in ((t, TIER_COLOURS[t]) for t in tiers)
                ],
            }
        ],
    }


def limits_chart(data: CreditAnalytics) -> dict[str, Any]:
    """Mean limit per tier, one series per currency (major units; currencies never mixed)."""
    tiers = list(CreditTier)
    return {
        "title": {"text": "Average limit per tier", "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": list(data.average_limits_minor), "right": 0},
        "xAxis": {"type": "category", "data": [f"Tier {t.value}" for t in tiers]},
        "yAxis": {"type": "value"},
        "series": [
            {
                "name": currency,
                "type": "bar",
                "data": [
                    round(to_major(round(by_tier[t]), currency), 2) if t in by_tier else None
                    for t in tiers
                ],
            }
            for currency, by_tier in data.average_limits_minor.items()
        ],
    }


def approvals_chart(buckets: list[ApprovalBucket]) -> dict[str, Any]:
    """Decisions per week (bars) and the share approved (line, percent)."""
    return {
        "title": {"text": "Approval rate per week", "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["Decided", "Approved %"], "right": 0},
        "xAxis": {"type": "category", "data": [f"{b.start:%m-%d}" for b in buckets]},
        "yAxis": [
            {"type": "value", "minInterval": 1},
            {"type": "value", "min": 0, "max": 100},
        ],
        "series": [
            {
                "name": "Decided",
                "type": "bar",
                "data": [b.decided for b in buckets],
                "itemStyle": {"color": theme.SECONDARY},
            },
            {
                "name": "Approved %",
                "type": "line",
                "yAxisIndex": 1,
                # No line through weeks without a decision: a 0 % there would be a false signal.
                "data": [round(100 * b.rate, 1) if b.decided else None for b in buckets],
                "itemStyle": {"color": theme.POSITIVE},
            },
        ],
    }


async def page() -> None:
    actor = await require_page(Permission.CREDIT_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Credit analytics", actor):
        data = await run_action(lambda a: credit.analytics(ctx.store, actor=a, weeks=WEEKS))
        if data is None:
            return
        decided = sum(b.decided for b in data.approval_rates)
        approved = sum(b.approved for b in data.approval_rates)
        with ui.row().classes("gap-4 flex-wrap"):
            for label, value, mark in (
                ("Pending requests", str(data.pending_count), "credit-card-pending"),
                ("Profiles needing review", str(data.needs_review_count), "credit-card-review"),
                ("Scored clients", str(sum(data.tier_distribution.values())), "credit-card-total"),
                (
                    f"Approved ({WEEKS} weeks)",
                    f"{approved / decided:.0%} of {decided}" if decided else "—",
                    "credit-card-approved",
                ),
            ):
                with ui.card().classes(theme.CARD).mark(mark):
                    ui.label(value).classes(theme.CARD_VALUE)
                    ui.label(label).classes(theme.CARD_LABEL)
        with ui.grid(columns=2).classes("w-full gap-4"):
            ui.echart(tier_chart(data)).classes(theme.CHART_HEIGHT).mark("credit-chart-tiers")
            ui.echart(limits_chart(data)).classes(theme.CHART_HEIGHT).mark("credit-chart-limits")
            ui.echart(approvals_chart(list(data.approval_rates))).classes(theme.CHART_HEIGHT).mark(
                "credit-chart-approvals"
            )
