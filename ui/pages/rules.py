"""Rule configuration: the active version and its history; senior analysts and admins edit
per-currency thresholds, switch rules on or off and pin severities, save a new version
(validated, every bad field named), backtest it against the active rules, and activate it on
the running scorers. Analysts see the same page read-only."""

from __future__ import annotations

import copy
from typing import Any

from nicegui import ui

from aml.auth import Permission, can
from aml.errors import Unprocessable
from aml.rules.catalog import RULES
from aml.rules.config import CurrencyThresholds
from serve.services import Actor, rules
from serve.services.rules import BacktestComparison
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.jobs import operations

THRESHOLD_FIELDS = tuple(CurrencyThresholds.model_fields)
RULE_STATES = {"default": "Catalog default", "on": "On", "off": "Off"}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


async def page() -> None:
    actor = await require_page(Permission.RULE_READ)
    if actor is None:
        return
    ctx = context.get()
    editable = can(actor.role, Permission.RULE_CONFIG)
    active = await rules.get_active(ctx.store, actor=actor)
    draft: dict[str, Any] = copy.deepcopy(rules.effective(active).to_dict())
    with frame("Rule configuration", actor):
        ui.label(
            f"Active version: {active.version} (by {active.created_by}, "
            f"{active.created_at:%Y-%m-%d %H:%M} UTC)"
            if active
            else "Active: the shipped defaults (no version saved yet)"
        ).mark("rules-active")
        if not editable:
            ui.label("Read-only: senior analysts and administrators change the rules.").classes(
                theme.MUTED
            )
        _thresholds(draft, editable)
        _rule_overrides(draft, editable)
        errors = ui.column().classes("gap-0").mark("rules-errors")
        result = ui.column().classes("w-full").mark("rules-backtest")
        if editable:
            with ui.row().classes("items-end gap-2"):
                comment = ui.input("Comment").classes("min-w-[20rem]").mark("rules-comment")
                days = ui.number("Backtest days", value=30, min=1, max=366).mark("rules-days")

                def check() -> bool:
                    errors.clear()
                    try:
                        rules.validate(draft)
                    except Unprocessable as exc:
                        with errors:
                            for e in exc.details.get("errors", []):
                                ui.label(f"{e['field']}: {e['message']}").classes("text-negative")
                        return False
                    return True

                async def save() -> None:
                    if not check():
                        return
                    saved = await run_action(
                        lambda a: rules.save(
                            ctx.store, actor=a, config=draft, comment=comment.value or ""
                        )
                    )
                    if saved is not None:
                        ui.notify(f"Saved as version {saved.version}", type="positive")
                        await history.refresh()

                async def backtest() -> None:
                    if not check():
                        return
                    ui.notify("Replaying recent transactions…")
                    outcome = await run_action(
                        lambda a: rules.backtest(
                            ctx.store, actor=a, candidate=draft, days=int(days.value or 30)
                        )
                    )
                    if outcome is not None:
                        result.clear()
                        with result:
                            _backtest_table(outcome)

                ui.button("Save as new version", on_click=save).mark("rules-save")
                ui.button("Backtest against active", on_click=backtest).props("outline").mark(
                    "rules-backtest-run"
                )

        @ui.refreshable
        async def history() -> None:
            await _history(actor, editable)

        await history()


def _thresholds(draft: dict[str, Any], editable: bool) -> None:
    ui.label("Per-currency thresholds (major units)").classes(theme.SECTION_TITLE)
    grid = ui.column().classes("w-full gap-1")

    def render() -> None:
        grid.clear()
        with grid:
            for code in sorted(draft["thresholds"]):
                values = draft["thresholds"][code]
                with ui.row().classes("items-end gap-2 flex-wrap bg-white rounded p-2"):
                    ui.label(code).classes("font-semibold w-12")
                    for name in THRESHOLD_FIELDS:

                        def set_value(e: Any, code: str = code, name: str = name) -> None:
                            draft["thresholds"][code][name] = e.value

                        ui.number(
                            theme.label_of(name), value=values.get(name), on_change=set_value
                        ).classes("w-40").props("" if editable else "readonly").mark(
                            f"th-{code}-{name}"
                        )

    render()
    if editable:
        with ui.row().classes("items-end gap-2"):
            new_code = (
                ui.input("Add currency (ISO code)").classes("w-48").mark("rules-new-currency")
            )

            def add() -> None:
                code = (new_code.value or "").strip().upper()
                if not code or code in draft["thresholds"]:
                    return
                base = draft["thresholds"][draft["default_currency"]]
                draft["thresholds"][code] = dict(base)
                render()

            ui.button("Add", on_click=add).props("flat").mark("rules-add-currency")


def _rule_overrides(draft: dict[str, Any], editable: bool) -> None:
    ui.label("Rules").classes(theme.SECTION_TITLE)
    overrides: dict[str, dict[str, Any]] = draft.setdefault("rules", {})
    with ui.element("div").classes("grid grid-cols-[14rem_8rem_10rem_10rem] gap-2 items-center"):
        for text in ("Rule", "Category", "State", "Severity (blank: computed)"):
            ui.label(text).classes("font-semibold text-sm text-gray-600")
        for rule_id in sorted(RULES):
            spec = RULES[rule_id]
            current = overrides.get(rule_id, {})
            enabled = current.get("enabled")
            state = "default" if enabled is None else ("on" if enabled else "off")

            def set_state(e: Any, rule_id: str = rule_id) -> None:
                entry = overrides.setdefault(rule_id, {})
                entry["enabled"] = None if e.value == "default" else e.value == "on"

            def set_severity(e: Any, rule_id: str = rule_id) -> None:
                entry = overrides.setdefault(rule_id, {})
                entry["severity"] = None if e.value in (None, "") else float(e.value)

            ui.label(rule_id).classes(theme.MONO)
            ui.label(spec.category).classes("text-sm")
            ui.select(RULE_STATES, value=state, on_change=set_state).props(
                "dense" + ("" if editable else " readonly")
            ).mark(f"rule-state-{rule_id}")
            ui.number(
                value=current.get("severity"), min=0, max=1, step=0.05, on_change=set_severity
            ).props("dense" + ("" if editable else " readonly")).mark(f"rule-severity-{rule_id}")


def _backtest_table(outcome: BacktestComparison) -> None:
    ui.label(
        f"{outcome.transactions} transactions replayed from {outcome.since:%Y-%m-%d} to "
        f"{outcome.until:%Y-%m-%d}, {outcome.labelled} labelled ({outcome.positives} positive)"
    ).classes(theme.MUTED)
    columns = [
        {"name": k, "label": v, "field": k, "align": "left"}
        for k, v in (
            ("rule", "Rule"),
            ("active_alerts", "Alerts (active)"),
            ("candidate_alerts", "Alerts (candidate)"),
            ("active_precision", "Precision (active)"),
            ("candidate_precision", "Precision (candidate)"),
        )
    ]
    ui.table(
        columns=columns,
        rows=[
            {
                "rule": r.rule,
                "active_alerts": r.active_alerts,
                "candidate_alerts": r.candidate_alerts,
                "active_precision": _pct(r.active_precision),
                "candidate_precision": _pct(r.candidate_precision),
            }
            for r in outcome.rows
        ],
        row_key="rule",
    ).classes("w-full").mark("rules-backtest-table")


async def _history(actor: Actor, editable: bool) -> None:
    ctx = context.get()
    page = await rules.list_versions(ctx.store, actor=actor, limit=50)
    ui.label(f"History ({page.total} versions)").classes(theme.SECTION_TITLE)
    for record in page.items:
        with (
            ui.row()
            .classes("bg-white rounded p-2 w-full items-center gap-6")
            .mark(f"rules-version-{record.version}")
        ):
            ui.label(f"v{record.version}").classes("font-semibold")
            ui.label(f"{record.created_by} · {record.created_at:%Y-%m-%d %H:%M} UTC")
            ui.label(record.comment or "—").classes(theme.MUTED)
            if record.active:
                ui.badge("active").props("color=positive")
            elif editable:

                async def activate(version: int = record.version) -> None:
                    applier = operations().rule_applier
                    done = await run_action(
                        lambda a: rules.activate(
                            ctx.store, actor=a, version=version, apply=applier
                        ),
                        success=f"Version {version} is active"
                        + (
                            ""
                            if applier
                            else " (this dashboard is not connected to Serve: the scorers "
                            "take it when the Serve config is next applied)"
                        ),
                    )
                    if done is not None:
                        ui.navigate.to("/rules")

                ui.button("Activate", on_click=activate).props("outline dense").mark(
                    f"rules-activate-{record.version}"
                )
