"""Models: versions per kind with their metrics and stage, the champion's feature drift (PSI
against its training baseline), champion vs shadow on live traffic, and promote / shadow /
roll back (ML engineers and admins; audited through the promoter)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import ModelRecord
from serve.services import Actor, models
from storage.repositories.jobs import DriftRun
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.jobs import operations

if TYPE_CHECKING:
    from training.promotion import ServeUpdater

LEVEL_COLOURS = {"ok": theme.POSITIVE, "warning": theme.WARNING, "critical": theme.NEGATIVE}
METRICS = ("auprc", "roc_auc", "f1", "precision", "recall")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


async def page() -> None:
    actor = await require_page(Permission.MODEL_READ)
    if actor is None:
        return
    with frame("Models", actor):
        if operations().model_serve is None:
            ui.label(
                "This dashboard is not connected to Serve: stage changes move the registry; the "
                "scorers pick them up when the Serve config is next applied."
            ).classes(theme.MUTED).mark("models-offline")
        with ui.tabs() as tabs:
            for kind in models.KINDS:
                ui.tab(kind, label=theme.label_of(kind)).mark(f"tab-{kind}")
        with ui.tab_panels(tabs, value=models.KINDS[0]).classes("w-full"):
            for kind in models.KINDS:
                with ui.tab_panel(kind):
                    await _kind_panel(actor, kind)


async def _kind_panel(actor: Actor, kind: str) -> None:
    ctx = context.get()
    manage = can(actor.role, Permission.MODEL_MANAGE)
    info = await models.overview(ctx.store, actor=actor, kind=kind)
    comparison = await models.shadow_comparison(ctx.store, actor=actor, kind=kind)

    async def act(call: Callable[[Actor], Awaitable[ModelRecord]], success: str) -> None:
        done = await run_action(call, success=success)
        if done is not None:
            ui.navigate.to("/models")

    def serve() -> ServeUpdater | None:
        hook = operations().model_serve
        return hook() if hook is not None else None

    data_dir = operations().settings.data_dir

    with ui.row().classes("gap-4 w-full"):
        for label, record in (("Champion", info.champion), ("Shadow", info.shadow)):
            with ui.card().classes(theme.CARD).mark(f"{kind}-{label.lower()}"):
                ui.label(label).classes(theme.CARD_LABEL)
                ui.label(record.version if record else "none").classes(theme.CARD_VALUE)
                if record:
                    ui.label(f"AUPRC {_fmt(record.metrics.get('auprc'))}").classes(theme.MUTED)
        with ui.card().classes(theme.CARD).mark(f"{kind}-comparison"):
            ui.label("Shadow on live traffic").classes(theme.CARD_LABEL)
            ui.label(f"{comparison.count} decisions").classes("text-xl font-semibold")
            ui.label(f"Mean abs difference: {_fmt(comparison.mean_abs_diff)}")
            ui.label(
                "Alert agreement: "
                + ("—" if comparison.agreement is None else f"{100 * comparison.agreement:.1f} %")
            )
            ui.label(
                f"Alerts: champion {comparison.champion_alerts}, shadow {comparison.shadow_alerts}"
            ).classes(theme.MUTED)
        if manage and info.champion is not None:
            ui.button(
                "Roll back champion",
                on_click=lambda: act(
                    lambda a: models.rollback(
                        ctx.store, actor=a, kind=kind, serve=serve(), data_dir=data_dir
                    ),
                    "Rolled back",
                ),
            ).props("color=negative outline").mark(f"{kind}-rollback")

    if info.champion is not None and info.shadow is not None:
        _metric_comparison(info.champion, info.shadow)
    _drift(info.drift)

    ui.label(f"Versions ({info.total_versions})").classes(theme.SECTION_TITLE)
    with ui.column().classes("w-full gap-1").mark(f"{kind}-versions"):
        for record in info.versions:
            with (
                ui.row()
                .classes("bg-white rounded p-2 w-full items-center gap-6")
                .mark(f"model-{record.id}")
            ):
                ui.label(record.version).classes("font-semibold min-w-[10rem]")
                ui.badge(record.stage).props(
                    "color="
                    + {"champion": "positive", "shadow": "secondary"}.get(record.stage, "grey")
                )
                ui.label(f"{record.created_at:%Y-%m-%d %H:%M}")
                ui.label(
                    " · ".join(
                        f"{m} {_fmt(record.metrics[m])}" for m in METRICS if m in record.metrics
                    )
                ).classes(theme.MONO)
                if manage and record.stage not in ("champion",):
                    ui.button(
                        "Promote",
                        on_click=lambda r=record: act(
                            lambda a: models.promote(
                                ctx.store, actor=a, model_id=r.id, serve=serve(), data_dir=data_dir
                            ),
                            f"{r.version} is the champion",
                        ),
                    ).props("dense").mark(f"promote-{record.id}")
                if manage and record.stage not in ("champion", "shadow"):
                    ui.button(
                        "Shadow",
                        on_click=lambda r=record: act(
                            lambda a: models.promote_to_shadow(
                                ctx.store, actor=a, model_id=r.id, serve=serve(), data_dir=data_dir
                            ),
                            f"{r.version} scores in shadow",
                        ),
                    ).props("dense outline").mark(f"shadow-{record.id}")


def _metric_comparison(champion: ModelRecord, shadow: ModelRecord) -> None:
    ui.label("Champion vs shadow (held-out metrics)").classes(theme.SECTION_TITLE)
    names = sorted(set(champion.metrics) | set(shadow.metrics))
    ui.table(
        columns=[
            {"name": "metric", "label": "Metric", "field": "metric", "align": "left"},
            {"name": "champion", "label": f"Champion {champion.version}", "field": "champion"},
            {"name": "shadow", "label": f"Shadow {shadow.version}", "field": "shadow"},
        ],
        rows=[
            {
                "metric": n,
                "champion": _fmt(champion.metrics.get(n), 4),
                "shadow": _fmt(shadow.metrics.get(n), 4),
            }
            for n in names
        ],
        row_key="metric",
    ).classes("w-full").mark("metric-comparison")


def _drift(run: DriftRun | None) -> None:
    ui.label("Feature drift of the champion (PSI vs training baseline)").classes(
        theme.SECTION_TITLE
    )
    if run is None:
        ui.label("No drift run yet.").classes(theme.MUTED)
        return
    ui.label(
        f"{run.computed_at:%Y-%m-%d %H:%M} UTC · model {run.model_version} · {run.rows} rows "
        f"from {run.window_from:%Y-%m-%d} · worst level {run.level}"
    ).classes(theme.MUTED).mark("drift-summary")
    with ui.column().classes("w-full gap-0").mark("drift-table"):
        for name, value in sorted(run.psi.items(), key=lambda kv: -kv[1]):
            level = (
                "critical" if name in run.critical else "warning" if name in run.warning else "ok"
            )
            with ui.row().classes("items-center gap-4"):
                ui.label(name).classes(theme.MONO + " min-w-[14rem]")
                ui.label(f"{value:.3f}").classes("w-16 text-right")
                ui.badge(level).style(f"background-color: {LEVEL_COLOURS[level]} !important")
