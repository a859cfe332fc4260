"""Users (admin): create, change role, deactivate."""

from __future__ import annotations

from nicegui import ui

from aml.auth import Permission
from aml.domain import Role
from serve.services import users
from ui import context, theme
from ui.auth import require_page, run_action
from ui.frame import frame

ROLES = {r.value: theme.label_of(r.value) for r in Role}


async def page() -> None:
    actor = await require_page(Permission.USER_ADMIN)
    if actor is None:
        return
    ctx = context.get()
    with frame("Users", actor):
        with ui.card().classes("w-full"):
            ui.label("New user").classes("font-semibold")
            with ui.row().classes("items-end gap-4"):
                username = ui.input("Username").mark("new-username")
                full_name = ui.input("Full name").mark("new-fullname")
                password = ui.input("Initial password", password=True).mark("new-password")
                role = ui.select(ROLES, value=Role.ANALYST.value, label="Role").mark("new-role")

                async def create() -> None:
                    done = await run_action(
                        lambda a: users.create(
                            ctx.store,
                            actor=a,
                            username=username.value or "",
                            password=password.value or "",
                            role=Role(role.value),
                            full_name=full_name.value or "",
                        ),
                        success="User created",
                    )
                    if done is not None:
                        ui.navigate.to("/users")

                ui.button("Create", on_click=create).mark("create-user")
        rows = ui.column().classes("w-full gap-1")

        async def render() -> None:
            page = await run_action(lambda a: users.list_users(ctx.store, actor=a, limit=200))
            if page is None:
                return
            rows.clear()
            with rows:
                for u in page.items:
                    with (
                        ui.row()
                        .classes("bg-white rounded p-2 w-full items-center gap-6")
                        .mark(f"user-{u.username}")
                    ):
                        ui.label(u.username).classes("font-semibold w-40")
                        ui.label(u.full_name or "—").classes("w-48")
                        ui.label("active" if u.active else "deactivated").classes("w-24")

                        def set_role(value: str, user_id: str = u.id) -> None:
                            async def go() -> None:
                                await run_action(
                                    lambda a: users.set_role(
                                        ctx.store, actor=a, user_id=user_id, role=Role(value)
                                    ),
                                    success="Role changed",
                                )
                                await render()

                            ui.timer(0, go, once=True)

                        ui.select(
                            ROLES, value=u.role.value, on_change=lambda e, s=set_role: s(e.value)
                        ).mark(f"role-{u.username}")
                        if u.active and u.id != actor.user.id:

                            async def deactivate(user_id: str = u.id) -> None:
                                await run_action(
                                    lambda a: users.deactivate(ctx.store, actor=a, user_id=user_id),
                                    success="User deactivated; their sessions end now",
                                )
                                await render()

                            ui.button("Deactivate", on_click=deactivate).props(
                                "flat color=negative"
                            ).mark(f"deactivate-{u.username}")

        await render()
