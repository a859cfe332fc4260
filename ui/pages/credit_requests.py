"""Credit request queue: submit a request, pending ones first, each with the recommendation,
its reasons and the score-inflation flag; approve or reject with a note. Four-eyes and senior
refusals come back from the service as plain messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from nicegui import ui

from aml.auth import Permission, can
from aml.domain import CreditRecommendation, CreditRequest, CreditRequestStatus
from aml.errors import BadRequest
from aml.money import format_money, to_minor
from serve.services import Actor, credit
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame
from ui.pages.credit_profiles import profile_path

PAGE_SIZE = 25
RECOMMENDATION_COLOURS: dict[CreditRecommendation, str] = {
    CreditRecommendation.APPROVE: "positive",
    CreditRecommendation.REVIEW_CAREFULLY: "warning",
    CreditRecommendation.REJECT: "negative",
}
STATUS_COLOURS: dict[CreditRequestStatus, str] = {
    CreditRequestStatus.PENDING_REVIEW: "primary",
    CreditRequestStatus.APPROVED: "positive",
    CreditRequestStatus.REJECTED: "negative",
    CreditRequestStatus.EXPIRED: "grey",
}


@dataclass
class QueueState:
    statuses: list[str] = field(default_factory=list)
    skip: int = 0
    total: int = 0


def parse_amount(text: str, currency: str) -> int:
    """Amount typed in major units → minor units.

    Raises:
        BadRequest: not a positive number.
    """
    try:
        value = Decimal((text or "").replace(",", "").replace(" ", ""))
    except InvalidOperation:
        raise BadRequest("the amount must be a number", field="amount") from None
    if not value.is_finite() or value <= 0:
        raise BadRequest("the amount must be a positive number", field="amount")
    return to_minor(value, currency)


async def page(client_id: str = "") -> None:
    actor = await require_page(Permission.CREDIT_READ)
    if actor is None:
        return
    ctx = context.get()
    state = QueueState()
    with frame("Credit requests", actor):
        if can(actor.role, Permission.CREDIT_REQUEST):
            with ui.card().classes("w-full"):
                ui.label("New credit request").classes(theme.SECTION_TITLE)
                with ui.row().classes("items-end gap-4 flex-wrap"):
                    tenant_in = ui.input("Tenant", value="default").mark("req-tenant")
                    client_in = ui.input("Client id", value=client_id).mark("req-client")
                    amount_in = ui.input("Amount").mark("req-amount")
                    currency_in = ui.input("Currency", value=ctx.currency).mark("req-currency")

                    async def submit() -> None:
                        currency = (currency_in.value or "").strip().upper()

                        async def go(a: Actor) -> CreditRequest:
                            return await credit.submit_request(
                                ctx.store,
                                actor=a,
                                tenant=(tenant_in.value or "").strip(),
                                client_id=(client_in.value or "").strip(),
                                amount_minor=parse_amount(amount_in.value or "", currency),
                                currency=currency,
                            )

                        created = await run_action(go)
                        if created is not None:
                            ui.notify(
                                "Request submitted; advice: "
                                f"{theme.label_of(created.recommendation.value)}",
                                type="positive",
                            )
                            amount_in.value = ""
                            await render(reset=True)

                    ui.button("Submit for review", on_click=submit).mark("req-submit")
        with ui.row().classes("items-end gap-4"):
            ui.select(
                {s.value: theme.label_of(s.value) for s in CreditRequestStatus},
                multiple=True,
                label="Status",
                value=[],
                on_change=lambda e: setattr(state, "statuses", list(e.value or [])),
            ).classes("min-w-[14rem]").mark("req-filter-status")
            ui.button("Apply", on_click=lambda: render(reset=True)).mark("req-apply")
            summary = ui.label("").classes(theme.MUTED).mark("req-summary")
        rows = ui.column().classes("w-full gap-2")
        with ui.row().classes("items-center gap-2"):
            ui.button("Previous", on_click=lambda: move(-1)).props("flat").mark("req-prev")
            pager = ui.label("").mark("req-pager")
            ui.button("Next", on_click=lambda: move(1)).props("flat").mark("req-next")

        async def render(reset: bool = False) -> None:
            if reset:
                state.skip = 0
            result = await run_action(
                lambda a: credit.list_requests(
                    ctx.store,
                    actor=a,
                    statuses=[CreditRequestStatus(s) for s in state.statuses],
                    skip=state.skip,
                    limit=PAGE_SIZE,
                )
            )
            if result is None:
                return
            state.total = result.total
            rows.clear()
            with rows:
                for r in result.items:
                    _request_card(r, actor, decide)
                if not result.items:
                    ui.label("No credit requests.").classes(theme.MUTED)
            last = min(state.skip + PAGE_SIZE, state.total)
            pager.text = f"{state.skip + 1 if state.total else 0}-{last} of {state.total}"
            summary.text = f"{state.total} requests"

        async def move(step: int) -> None:
            new = state.skip + step * PAGE_SIZE
            if 0 <= new < max(state.total, 1):
                state.skip = new
                await render()

        async def decide(request_id: str, approve: bool, note: str) -> None:
            done = await run_action(
                lambda a: credit.decide_request(
                    ctx.store, actor=a, request_id=request_id, approve=approve, note=note
                ),
                success="Approved" if approve else "Rejected",
            )
            if done is not None:
                await render()

        await render()


Decide = Callable[[str, bool, str], Awaitable[None]]


def _request_card(r: CreditRequest, actor: Actor, decide: Decide) -> None:
    with ui.card().classes("w-full").mark(f"request-{r.id}"):
        with ui.row().classes("items-center gap-4 flex-wrap"):
            ui.link(f"Client {r.client_id}", profile_path(r.tenant, r.client_id))
            ui.label(format_money(r.amount_minor, r.currency)).classes("font-semibold")
            ui.badge(theme.label_of(r.status.value)).props(
                f"color={STATUS_COLOURS[r.status]}"
            ).mark(f"request-status-{r.id}")
            ui.badge(f"Advice: {theme.label_of(r.recommendation.value)}").props(
                f"color={RECOMMENDATION_COLOURS[r.recommendation]}"
            )
            if r.inflation_flag:
                ui.badge("Possible score inflation").props("color=negative").mark(
                    f"request-inflation-{r.id}"
                )
            ui.label(
                f"score {r.score_at_request:.2f} · tier {r.tier_at_request.value} · "
                f"limit {format_money(r.limit_at_request_minor, r.currency)}"
            ).classes(theme.MUTED)
        with ui.column().classes("gap-0"):
            for reason in r.reasons:
                ui.label(f"• {reason}").classes("text-sm")
        ui.label(
            f"Submitted by {r.submitted_by} on {r.submitted_at:%Y-%m-%d %H:%M} UTC · "
            f"expires {r.expires_at:%Y-%m-%d %H:%M} UTC"
        ).classes(theme.MUTED)
        if r.decided_by:
            decided_at = f"{r.decided_at:%Y-%m-%d %H:%M} UTC" if r.decided_at else ""
            ui.label(
                f"{theme.label_of(r.status.value)} by {r.decided_by} {decided_at}: "
                f"{r.decision_note or ''}"
            )
        if r.status is CreditRequestStatus.PENDING_REVIEW and can(
            actor.role, Permission.CREDIT_DECIDE
        ):
            if r.submitted_by == actor.username:
                ui.label("You submitted this request: another reviewer must decide it.").classes(
                    theme.MUTED
                )
            with ui.row().classes("items-end gap-2 w-full"):
                note = ui.input("Decision note").classes("min-w-[24rem]").mark(f"note-{r.id}")
                ui.button("Approve", on_click=lambda: decide(r.id, True, note.value or "")).props(
                    "color=positive"
                ).mark(f"approve-{r.id}")
                ui.button("Reject", on_click=lambda: decide(r.id, False, note.value or "")).props(
                    "color=negative outline"
                ).mark(f"reject-{r.id}")
