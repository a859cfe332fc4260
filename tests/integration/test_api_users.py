"""First-run admin, CLI admin creation and user lifecycle through the services."""

from __future__ import annotations

import asyncio

import pytest

from aml.domain import Role
from aml.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from serve.auth import LoginRateLimiter, TokenService
from serve.services import Actor, users
from storage.store import Store

pytestmark = pytest.mark.integration
TOKENS = TokenService("t" * 48)


async def _login(store: Store, username: str, password: str) -> None:
    await users.login(
        store,
        tokens=TOKENS,
        limiter=LoginRateLimiter(max_attempts=100),
        username=username,
        password=password,
        ip="10.1.1.1",
    )


async def test_first_run_generates_a_one_time_admin_password(store: Store) -> None:
    assert await store.users.count() == 0  # nothing ships with a default account
    password = await users.ensure_first_admin(store)
    assert password is not None and len(password) >= 20
    assert await users.ensure_first_admin(store) is None  # never again, never re-printed
    admin = await store.users.get_by_username(users.FIRST_ADMIN_USERNAME)
    assert admin is not None and admin.role == Role.ADMIN and admin.active
    assert password not in admin.password_hash
    await _login(store, users.FIRST_ADMIN_USERNAME, password)
    entries, _ = await store.audit_log.list_(action="user.create_admin")
    assert entries[0].actor == "system"


async def test_two_first_runs_at_once_print_at_most_one_password(store: Store) -> None:
    results = await asyncio.gather(*(users.ensure_first_admin(store) for _ in range(3)))
    assert await store.users.count() == 1
    assert sum(r is not None for r in results) == 1


async def test_create_admin_enforces_policy_and_uniqueness(store: Store) -> None:
    with pytest.raises(Unprocessable):
        await users.create_admin(store, "boss", "admin123")
    await users.create_admin(store, "boss", "a sufficiently long one")
    with pytest.raises(Conflict):
        await users.create_admin(store, "BOSS", "another long passphrase")


async def test_password_reset_revokes_tokens_and_old_password(store: Store) -> None:
    admin = await users.create_admin(store, "boss", "a sufficiently long one")
    boss = Actor(user=admin)
    ana = await users.create(
        store, actor=boss, username="ana", password="first passphrase!", role=Role.ANALYST
    )
    old = TOKENS.issue(ana)
    await users.reset_password(store, actor=boss, user_id=ana.id, password="second passphrase!")
    with pytest.raises(Unauthorized):
        await users.refresh(store, tokens=TOKENS, refresh_token=old.refresh_token)
    with pytest.raises(Unauthorized):
        await _login(store, "ana", "first passphrase!")
    await _login(store, "ana", "second passphrase!")


async def test_only_admins_manage_users_and_never_lock_themselves_out(store: Store) -> None:
    admin = await users.create_admin(store, "boss", "a sufficiently long one")
    boss = Actor(user=admin)
    ana = await users.create(
        store, actor=boss, username="ana", password="first passphrase!", role=Role.ANALYST
    )
    with pytest.raises(Forbidden):
        await users.create(
            store,
            actor=Actor(user=ana),
            username="eve",
            password="another passphrase",
            role=Role.ADMIN,
        )
    with pytest.raises(Conflict):
        await users.deactivate(store, actor=boss, user_id=admin.id)
    with pytest.raises(Conflict):
        await users.set_role(store, actor=boss, user_id=admin.id, role=Role.ANALYST)


async def test_refresh_tokens_rotate_and_a_replayed_one_signs_the_user_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refresh token is exchanged once; presenting it again later (a stolen copy) revokes
    every token of the user, is audited, and is refused. Two exchanges at once (two tabs)
    both succeed."""
    admin = await users.create_admin(store, "boss", "a sufficiently long one")
    ana = await users.create(
        store,
        actor=Actor(user=admin),
        username="ana",
        password="first passphrase!",
        role=Role.ANALYST,
    )
    first = TOKENS.issue(ana)
    # Two tabs exchanging the same token at the same moment: both get a new pair.
    (_, tab1), (_, tab2) = await asyncio.gather(
        users.refresh(store, tokens=TOKENS, refresh_token=first.refresh_token),
        users.refresh(store, tokens=TOKENS, refresh_token=first.refresh_token),
    )
    assert tab1.refresh_token != first.refresh_token != tab2.refresh_token
    _, second = await users.refresh(store, tokens=TOKENS, refresh_token=tab1.refresh_token)

    # Later, the first token shows up again: a copy.
    monkeypatch.setattr(users, "REFRESH_REUSE_LEEWAY", users.REFRESH_REUSE_LEEWAY * 0)
    with pytest.raises(Unauthorized, match="already used"):
        await users.refresh(store, tokens=TOKENS, refresh_token=first.refresh_token)
    entries, _ = await store.audit_log.list_(action="auth.refresh_reuse")
    assert [e.target_id for e in entries] == [ana.id]
    # Everything issued before is revoked, the legitimate session included.
    with pytest.raises(Unauthorized):
        await users.refresh(store, tokens=TOKENS, refresh_token=second.refresh_token)
    with pytest.raises(Unauthorized):
        await users.refresh(store, tokens=TOKENS, refresh_token=tab2.refresh_token)
    # Signing in again works.
    await _login(store, "ana", "first passphrase!")
