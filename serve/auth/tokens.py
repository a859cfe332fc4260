"""JWT access and refresh tokens (HS256).

Tokens carry the user's ``token_version``; every request re-reads the user and refuses a token
whose version is stale or whose user is inactive, so deactivation and password changes take
effect at once rather than at expiry. The role used for checks is the stored one, never the
token's claim.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from aml.domain import Role, User, utcnow
from aml.errors import Unauthorized

TokenKind = Literal["access", "refresh"]
ALGORITHM = "HS256"
ISSUER = "fineract-aml"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    token_type: str = "bearer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": int((self.access_expires_at - utcnow()).total_seconds()),
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    username: str
    role: Role
    token_version: int
    kind: TokenKind
    expires_at: datetime
    jti: str = ""  # the token's own id (a refresh token is exchanged once)


class TokenService:
    """Issues and verifies tokens signed with one secret."""

    def __init__(
        self,
        secret: str,
        *,
        access_minutes: int = 15,
        refresh_hours: int = 12,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("JWT secret must be at least 32 characters")
        self._secret = secret
        self.access_ttl = timedelta(minutes=access_minutes)
        self.refresh_ttl = timedelta(hours=refresh_hours)

    def _encode(self, user: User, kind: TokenKind, now: datetime, ttl: timedelta) -> str:
        payload = {
            "iss": ISSUER,
            "sub": user.id,
            "username": user.username,
            "role": user.role.value,
            "ver": user.token_version,
            "typ": kind,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def issue(self, user: User, *, now: datetime | None = None) -> TokenPair:
        """A fresh access + refresh pair for ``user``."""
        now = now or utcnow()
        return TokenPair(
            access_token=self._encode(user, "access", now, self.access_ttl),
            refresh_token=self._encode(user, "refresh", now, self.refresh_ttl),
            access_expires_at=now + self.access_ttl,
            refresh_expires_at=now + self.refresh_ttl,
        )

    def decode(self, token: str, *, kind: TokenKind = "access") -> TokenClaims:
        """Verify signature, expiry, issuer and kind.

        Raises:
            Unauthorized: for any invalid, expired or wrong-kind token.
        """
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "ver", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        if payload.get("typ") != kind:
            raise Unauthorized("wrong token type")
        try:
            return TokenClaims(
                user_id=str(payload["sub"]),
                username=str(payload.get("username", "")),
                role=Role(payload["role"]),
                token_version=int(payload["ver"]),
                kind=kind,
                expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=utcnow().tzinfo),
                jti=str(payload.get("jti", "")),
            )
        except (KeyError, ValueError, TypeError):
            raise Unauthorized("invalid token") from None


def check_user_current(claims: TokenClaims, user: User | None) -> User:
    """The stored user behind ``claims`` if still active and the token not revoked.

    Raises:
        Unauthorized: when the user is gone, inactive, or its ``token_version`` moved on.
    """
    if user is None or user.id != claims.user_id:
        raise Unauthorized("unknown user")
    if not user.active:
        raise Unauthorized("user is deactivated")
    if user.token_version != claims.token_version:
        raise Unauthorized("token revoked")
    return user
