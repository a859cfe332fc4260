"""Role model, password policy, hashing, tokens and login rate limiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from aml.auth import (
    Permission,
    can,
    check_password_policy,
    password_problems,
    require,
    roles_with,
    roles_without,
)
from aml.domain import Role, User
from aml.errors import Forbidden, TooManyRequests, Unauthorized, Unprocessable
from serve.auth import (
    LoginRateLimiter,
    TokenService,
    check_user_current,
    hash_password,
    verify_password,
)

SECRET = "s" * 40


def _user(**kw: object) -> User:
    fields: dict[str, object] = {
        "id": "u1",
        "username": "ana",
        "role": Role.ANALYST,
        "password_hash": "x",
        "active": True,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(kw)
    return User(**fields)  # type: ignore[arg-type]


def test_analyst_decides_but_cannot_approve_or_admin() -> None:
    assert can(Role.ANALYST, Permission.ALERT_DECIDE)
    assert not can(Role.ANALYST, Permission.CASE_APPROVE)
    assert not can(Role.ANALYST, Permission.USER_ADMIN)
    assert not can(Role.ANALYST, Permission.AUDIT_READ)
    with pytest.raises(Forbidden):
        require(Role.ANALYST, Permission.USER_ADMIN)


def test_ml_engineer_never_produces_labels() -> None:
    assert can(Role.ML_ENGINEER, Permission.ALERT_READ)
    assert not can(Role.ML_ENGINEER, Permission.ALERT_DECIDE)


def test_approvers_are_senior_and_admin_only() -> None:
    assert roles_with(Permission.CASE_APPROVE) == (Role.SENIOR_ANALYST, Role.ADMIN)
    assert roles_with(Permission.AUDIT_READ) == (Role.SENIOR_ANALYST, Role.ADMIN)
    assert Role.ADMIN not in roles_without([Permission.USER_ADMIN])


def test_unknown_role_holds_nothing() -> None:
    assert not can("viewer", Permission.ALERT_READ)


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 12"),
        ("admin1234567890", None),
        ("password123", "at least 12"),
        ("aaaaaaaaaaaaaaaa", "4 different"),
        ("my-ana-password-x", "username"),
        ("Password1111111", "commonly used"),
    ],
)
def test_password_policy(password: str, fragment: str | None) -> None:
    problems = password_problems(password, username="ana")
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


def test_policy_raises_unprocessable() -> None:
    with pytest.raises(Unprocessable):
        check_password_policy("abc")
    check_password_policy("correct horse battery staple")


def test_argon2_hash_verifies_only_the_right_password() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert not verify_password(None, "anything")
    assert not verify_password("garbage", "anything")


def test_access_and_refresh_tokens_round_trip() -> None:
    svc = TokenService(SECRET)
    pair = svc.issue(_user())
    claims = svc.decode(pair.access_token)
    assert (claims.user_id, claims.role, claims.kind) == ("u1", Role.ANALYST, "access")
    assert svc.decode(pair.refresh_token, kind="refresh").kind == "refresh"
    assert pair.access_expires_at - datetime.now(UTC) <= timedelta(minutes=15)
    with pytest.raises(Unauthorized, match="wrong token type"):
        svc.decode(pair.refresh_token, kind="access")


def test_expired_tampered_and_foreign_tokens_are_refused() -> None:
    svc = TokenService(SECRET)
    old = svc.issue(_user(), now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(Unauthorized, match="expired"):
        svc.decode(old.access_token)
    token = svc.issue(_user()).access_token
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthorized):
        svc.decode(tampered)
    forged = jwt.encode(
        {"sub": "u1", "role": "admin", "typ": "access", "ver": 0, "iss": "fineract-aml"},
        "x" * 40,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized):
        svc.decode(forged)
    unsigned = jwt.encode({"sub": "u1", "typ": "access"}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        svc.decode(unsigned)


def test_deactivated_or_bumped_user_is_refused_at_once() -> None:
    svc = TokenService(SECRET)
    claims = svc.decode(svc.issue(_user()).access_token)
    assert check_user_current(claims, _user()).username == "ana"
    with pytest.raises(Unauthorized, match="deactivated"):
        check_user_current(claims, _user(active=False))
    with pytest.raises(Unauthorized, match="revoked"):
        check_user_current(claims, _user(token_version=1))
    with pytest.raises(Unauthorized):
        check_user_current(claims, None)


def test_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError):
        TokenService("short")


def test_rate_limiter_locks_ip_and_username_then_releases() -> None:
    now = [0.0]
    rl = LoginRateLimiter(max_attempts=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        rl.check(ip="1.1.1.1", username="ana")
        rl.record_failure(ip="1.1.1.1", username="ana")
    with pytest.raises(TooManyRequests):
        rl.check(ip="1.1.1.1", username="ana")
    # Same username from another address is still locked: one account, many IPs.
    with pytest.raises(TooManyRequests):
        rl.check(ip="2.2.2.2", username="ANA")
    # Same address, another username is locked too: one IP, many accounts.
    with pytest.raises(TooManyRequests):
        rl.check(ip="1.1.1.1", username="bob")
    rl.check(ip="3.3.3.3", username="bob")
    now[0] = 61.0
    rl.check(ip="1.1.1.1", username="ana")
