"""Credit profiles: list with tier and review filters, server-side pages, and rescoring a client
on demand (also the way to a client that has no profile yet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import CreditProfile, CreditTier
from aml.money import format_money
from serve.services import credit
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

PAGE_SIZE = 25
TIER_COLOURS: dict[CreditTier, str] = {
    CreditTier.A: theme.POSITIVE,
    CreditTier.B: theme.PRIMARY,
    CreditTier.C: theme.SECONDARY,
    CreditTier.D: theme.WARNING,
    CreditTier.E: theme.NEGATIVE,
}


def profile_path(tenant: str, client_id: str) -> str:
    """Dashboard address of one client's profile."""
    return f"/credit/clients/{quote(tenant, safe='')}/{quote(client_id, safe='')}"


def tier_badge(tier: CreditTier, *, prefix: str = "Tier") -> ui.badge:
    return ui.badge(f"{prefix} {tier.value}").style(f"background-color: {TIER_COLOURS[tier]}")


@dataclass
class ListState:
    tiers: list[str] = field(default_factory=list)
    needs_review: bool = False
    tenant: str = ""
    skip: int = 0
    total: int = 0


def _row(p: CreditProfile) -> None:
    with (
        ui.row()
        .classes("bg-white rounded p-2 w-full items-center gap-6")
        .mark(f"profile-{p.client_id}")
    ):
        ui.link(f"Client {p.client_id}", profile_path(p.tenant, p.client_id)).classes("w-40")
        tier_badge(p.tier)
        ui.label(f"score {p.score:.2f}").classes("w-24")
        ui.label(f"limit {format_money(p.limit_minor, p.currency)}").classes("w-44")
        if p.cluster_tier is not None:
            ui.label(f"cluster tier {p.cluster_tier.value}").classes(theme.MUTED)
        if p.needs_review:
            ui.badge("needs review").props("color=warning")
        ui.label(f"{p.tenant} · {p.computed_at:%Y-%m-%d %H:%M} UTC").classes(theme.MUTED)


async def page() -> None:
    actor = await require_page(Permission.CREDIT_READ)
    if actor is None:
        return
    ctx = context.get()
    state = ListState()
    with frame("Credit profiles", actor):
        with ui.row().classes("items-end gap-4 flex-wrap"):
            ui.select(
                {t.value: f"Tier {t.value}" for t in CreditTier},
                multiple=True,
                label="Tier",
                value=[],
                on_change=lambda e: setattr(state, "tiers", list(e.value or [])),
            ).classes("min-w-[12rem]").mark("credit-filter-tier")
            ui.switch(
                "Needs review only",
                on_change=lambda e: setattr(state, "needs_review", bool(e.value)),
            ).mark("credit-filter-review")
            ui.input(
                "Tenant", on_change=lambda e: setattr(state, "tenant", (e.value or "").strip())
            ).mark("credit-filter-tenant")
            ui.button("Apply", on_click=lambda: render(reset=True)).mark("credit-apply")
        if can(actor.role, Permission.CREDIT_REQUEST):
            with ui.row().classes("items-end gap-2"):
                tenant_in = ui.input("Tenant", value="default").mark("rescore-tenant")
                client_in = ui.input("Client id").mark("rescore-client")

                async def rescore() -> None:
                    tenant = (tenant_in.value or "").strip()
                    client_id = (client_in.value or "").strip()
                    done = await run_action(
                        lambda a: credit.refresh_profile(
                            ctx.store, actor=a, tenant=tenant, client_id=client_id
                        ),
                        success="Profile recomputed",
                    )
                    if done is not None:
                        ui.navigate.to(profile_path(done.tenant, done.client_id))

                ui.button("Rescore now", on_click=rescore).props("outline").mark("rescore")
        summary = ui.label("").classes(theme.MUTED).mark("credit-summary")
        rows = ui.column().classes("w-full gap-1")
        with ui.row().classes("items-center gap-2"):
            ui.button("Previous", on_click=lambda: move(-1)).props("flat").mark("credit-prev")
            pager = ui.label("").mark("credit-pager")
            ui.button("Next", on_click=lambda: move(1)).props("flat").mark("credit-next")

        async def render(reset: bool = False) -> None:
            if reset:
                state.skip = 0
            result = await run_action(
                lambda a: credit.list_profiles(
                    ctx.store,
                    actor=a,
                    tenant=state.tenant or None,
                    tiers=[CreditTier(t) for t in state.tiers],
                    needs_review=True if state.needs_review else None,
                    skip=state.skip,
                    limit=PAGE_SIZE,
                )
            )
            if result is None:
                return
            state.total = result.total
            rows.clear()
            with rows:
                for p in result.items:
                    _row(p)
                if not result.items:
                    ui.label("No credit profiles match these filters.").classes(theme.MUTED)
            last = min(state.skip + PAGE_SIZE, state.total)
            pager.text = f"{state.skip + 1 if state.total else 0}-{last} of {state.total}"
            summary.text = f"{state.total} profiles"

        async def move(step: int) -> None:
            new = state.skip + step * PAGE_SIZE
            if 0 <= new < max(state.total, 1):
                state.skip = new
                await render()

        await render()
