"""Users: creation (no default accounts, ever), login, refresh, role changes, deactivation."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta

from aml.auth import Permission, check_password_policy
from aml.domain import Role, User, utcnow
from aml.errors import BadRequest, Conflict, NotFound, Unauthorized
from serve.auth import (
    LoginRateLimiter,
    TokenPair,
    TokenService,
    check_user_current,
    hash_password,
    needs_rehash,
    verify_password,
)
from serve.services import audit
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store

log = logging.getLogger(__name__)

# Two exchanges of one refresh token this close together are one client racing itself (two
# tabs, a retried request), not a stolen copy.
REFRESH_REUSE_LEEWAY = timedelta(seconds=10)

FIRST_ADMIN_USERNAME = "admin"


def _clean_username(username: str) -> str:
    name = username.strip()
    if not 3 <= len(name) <= 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise BadRequest(
            "username must be 3-64 characters of letters, digits and . _ - @", field="username"
        )
    return name


async def _create(
    store: Store,
    *,
    username: str,
    password: str,
    role: Role,
    full_name: str = "",
    email: str | None = None,
) -> User:
    name = _clean_username(username)
    check_password_policy(password, username=name)
    user = User(
        id=uuid.uuid4().hex,
        username=name,
        role=role,
        password_hash=hash_password(password),
        active=True,
        created_at=utcnow(),
        full_name=full_name,
        email=email,
    )
    return await store.users.create(user)


async def create(
    store: Store,
    *,
    actor: Actor,
    username: str,
    password: str,
    role: Role,
    full_name: str = "",
    email: str | None = None,
) -> User:
    """Create a user (admin only). Raises ``Conflict`` when the username exists."""
    actor.require(Permission.USER_ADMIN)
    user = await _create(
        store, username=username, password=password, role=role, full_name=full_name, email=email
    )
    await audit.record(
        store,
        actor=actor,
        action="user.create",
        target_type="user",
        target_id=user.id,
        details={"username": user.username, "role": user.role.value},
    )
    return user


async def create_admin(store: Store, username: str, password: str) -> User:
    """Create an admin from the command line (no acting user; audited as ``system``).

    Raises:
        Conflict: the username exists.
        Unprocessable: the password breaks the policy.
    """
    user = await _create(store, username=username, password=password, role=Role.ADMIN)
    await audit.record(
        store,
        actor=None,
        action="user.create_admin",
        target_type="user",
        target_id=user.id,
        details={"username": user.username, "role": user.role.value},
    )
    return user


async def ensure_first_admin(store: Store) -> str | None:
    """On the very first run create ``admin`` with a generated one-time password.

    Returns:
        The generated password (to be printed once) when no user existed, else ``None``.
    """
    if await store.users.count() > 0:
        return None
    password = secrets.token_urlsafe(18)
    try:
        await create_admin(store, FIRST_ADMIN_USERNAME, password)
    except Conflict:
        return None  # another process won the race; its password is the one printed
    return password


async def get_or_raise(store: Store, *, user_id: str) -> User:
    user = await store.users.get(user_id)
    if user is None:
        raise NotFound("user not found", user_id=user_id)
    return user


async def list_users(store: Store, *, actor: Actor, skip: int = 0, limit: int = 50) -> Page[User]:
    """All users, by username (admin only)."""
    actor.require(Permission.USER_ADMIN)
    check_window(skip, limit)
    items, total = await store.users.list_(skip=skip, limit=limit)
    return Page(items=items, total=total, skip=skip, limit=limit)


async def login(
    store: Store,
    *,
    tokens: TokenService,
    limiter: LoginRateLimiter,
    username: str,
    password: str,
    ip: str | None,
) -> tuple[User, TokenPair]:
    """Check credentials and issue tokens; failures are rate-limited and audited.

    Raises:
        TooManyRequests: too many recent failures for this IP or username.
        Unauthorized: wrong username, password, or deactivated user (one message for all).
    """
    limiter.check(ip=ip, username=username)
    user = await store.users.get_by_username(username.strip())
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        limiter.record_failure(ip=ip, username=username)
        await audit.record(
            store,
            actor=None,
            action="auth.login_failed",
            target_type="user",
            target_id=user.id if user else None,
            details={"username": username[:64]},
            ip=ip,
        )
        raise Unauthorized("invalid username or password")
    limiter.record_success(ip=ip, username=username)
    if needs_rehash(user.password_hash):
        # Upgrading the hash bumps token_version, so do it before issuing the new tokens.
        user = await store.users.set_password_hash(user.id, password_hash=hash_password(password))
    await audit.record(
        store,
        actor=Actor(user=user, ip=ip),
        action="auth.login",
        target_type="user",
        target_id=user.id,
    )
    return user, tokens.issue(user)


async def refresh(
    store: Store, *, tokens: TokenService, refresh_token: str, ip: str | None = None
) -> tuple[User, TokenPair]:
    """Exchange a refresh token for a new pair; refused once the user is deactivated.

    Refresh tokens rotate: each is good for one exchange (two within
    :data:`REFRESH_REUSE_LEEWAY`, e.g. two browser tabs refreshing at once, both succeed). One
    presented again later was copied, so the user's every token is revoked (``token_version``
    is bumped), the event is audited, and the exchange is refused.

    Raises:
        Unauthorized: invalid, expired, revoked or already exchanged refresh token.
    """
    claims = tokens.decode(refresh_token, kind="refresh")
    user = check_user_current(claims, await store.users.get(claims.user_id))
    if not claims.jti:
        raise Unauthorized("invalid token")
    now = utcnow()
    first = await store.refresh_tokens.mark_used(
        claims.jti, user_id=user.id, used_at=now, expires_at=claims.expires_at
    )
    if first is not None and now - first > REFRESH_REUSE_LEEWAY:
        await store.users.revoke_tokens(user.id)
        await audit.record(
            store,
            actor=None,
            action="auth.refresh_reuse",
            target_type="user",
            target_id=user.id,
            details={"username": user.username, "first_exchanged_at": first.isoformat()},
            ip=ip,
        )
        log.warning(
            "refresh token of %s presented again (first exchanged at %s); every token of the "
            "user is revoked",
            user.username,
            first.isoformat(),
        )
        raise Unauthorized("refresh token already used; every session of this user is signed out")
    return user, tokens.issue(user)


async def deactivate(store: Store, *, actor: Actor, user_id: str) -> User:
    """Deactivate a user; its tokens stop working at once (``token_version`` is bumped)."""
    actor.require(Permission.USER_ADMIN)
    if user_id == actor.user.id:
        raise Conflict("you cannot deactivate yourself")
    await get_or_raise(store, user_id=user_id)
    user = await store.users.deactivate(user_id)
    await audit.record(
        store,
        actor=actor,
        action="user.deactivate",
        target_type="user",
        target_id=user_id,
        details={"username": user.username},
    )
    return user


async def set_role(store: Store, *, actor: Actor, user_id: str, role: Role) -> User:
    """Change a user's role (admin only); applies to the next request, tokens need no reissue."""
    actor.require(Permission.USER_ADMIN)
    if user_id == actor.user.id and role != Role.ADMIN:
        raise Conflict("you cannot remove your own admin role")
    before = await get_or_raise(store, user_id=user_id)
    user = await store.users.update_role(user_id, role=role)
    await audit.record(
        store,
        actor=actor,
        action="user.set_role",
        target_type="user",
        target_id=user_id,
        details={"username": user.username, "from": before.role.value, "to": role.value},
    )
    return user


async def reset_password(store: Store, *, actor: Actor, user_id: str, password: str) -> User:
    """Set a new password (admin, or the user themself); revokes existing tokens."""
    if user_id != actor.user.id:
        actor.require(Permission.USER_ADMIN)
    target = await get_or_raise(store, user_id=user_id)
    check_password_policy(password, username=target.username)
    user = await store.users.set_password_hash(user_id, password_hash=hash_password(password))
    await audit.record(
        store,
        actor=actor,
        action="user.reset_password",
        target_type="user",
        target_id=user_id,
        details={"username": target.username},
    )
    return user
