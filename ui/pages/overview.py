"""Overview: counts and charts (alerts by status and risk, over time, alert rate, decisions per
minute, queue age)."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from aml.auth import Permission
from aml.domain import AlertStatus, RiskLevel, utcnow
from serve.services import alerts
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame


def _age(minutes: float) -> str:
    if minutes < 60:
        return f"{int(minutes)} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


def _bar(title: str, labels: list[str], values: list[int], colours: list[str]) -> dict[str, Any]:
    return {
        "title": {"text": title, "textStyle": {"fontSize": 14}},
        "tooltip": {},
        "xAxis": {"type": "category", "data": labels},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "type": "bar",
                "data": [
                    {"value": v, "itemStyle": {"color": c}}
                    for v, c in zip(values, colours, strict=True)
                ],
            }
        ],
    }


async def page() -> None:
    actor = await require_page(Permission.OVERVIEW_READ)
    if actor is None:
        return
    ctx = context.get()
    with frame("Overview", actor):
        cards = ui.row().classes("gap-4 flex-wrap")
        charts = ui.grid(columns=2).classes("w-full gap-4")

        async def render() -> None:
            # Through run_action: the periodic refresh re-checks the user and says so when the
            # store is unavailable, like the queue's.
            data = await run_action(lambda a: alerts.overview(ctx.store, actor=a))
            if data is None:
                return
            cards.clear()
            oldest = (
                _age((utcnow() - data.oldest_open_at).total_seconds() / 60)
                if data.oldest_open_at
                else "—"
            )
            with cards:
                for label, value, mark in (
                    ("Open alerts", str(data.open_count), "card-open"),
                    ("Past SLA", str(data.overdue_count), "card-overdue"),
                    ("Oldest open alert", oldest, "card-age"),
                    ("Alert rate (24 h)", f"{data.alert_rate:.1%}", "card-rate"),
                ):
                    with ui.card().classes(theme.CARD).mark(mark):
                        ui.label(value).classes(theme.CARD_VALUE)
                        ui.label(label).classes(theme.CARD_LABEL)
            charts.clear()
            statuses = list(AlertStatus)
            risks = list(RiskLevel)
            with charts:
                ui.echart(
                    _bar(
                        "Alerts by status",
                        [theme.label_of(s.value) for s in statuses],
                        [data.by_status.get(s.value, 0) for s in statuses],
                        [theme.ALERT_STATUS_COLOURS[s] for s in statuses],
                    )
                ).classes(theme.CHART_HEIGHT)
                ui.echart(
                    _bar(
                        "Open alerts by risk",
                        [theme.label_of(r.value) for r in risks],
                        [data.by_risk.get(r.value, 0) for r in risks],
                        [theme.RISK_COLOURS[r] for r in risks],
                    )
                ).classes(theme.CHART_HEIGHT)
                ui.echart(
                    {
                        "title": {"text": "Alerts per day", "textStyle": {"fontSize": 14}},
                        "tooltip": {"trigger": "axis"},
                        "xAxis": {"type": "category", "data": [d["day"] for d in data.by_day]},
                        "yAxis": {"type": "value", "minInterval": 1},
                        "series": [{"type": "bar", "data": [d["count"] for d in data.by_day]}],
                    }
                ).classes(theme.CHART_HEIGHT)
                ui.echart(
                    {
                        "title": {"text": "Decisions per minute", "textStyle": {"fontSize": 14}},
                        "tooltip": {"trigger": "axis"},
                        "xAxis": {
                            "type": "category",
                            "data": [d["minute"][11:16] for d in data.decisions_per_minute],
                        },
                        "yAxis": {"type": "value", "minInterval": 1},
                        "series": [
                            {
                                "type": "line",
                                "areaStyle": {},
                                "data": [d["count"] for d in data.decisions_per_minute],
                            }
                        ],
                    }
                ).classes(theme.CHART_HEIGHT)

        await render()
        ui.timer(max(ctx.refresh_seconds, 5.0), render)
