"""Who is acting, from where: passed to every service call."""

from __future__ import annotations

from dataclasses import dataclass

from aml.auth import Permission, require
from aml.domain import Role, User


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated user behind a request, and the client IP it came from."""

    user: User
    ip: str | None = None

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> Role:
        return self.user.role

    def require(self, permission: Permission) -> None:
        """Raise ``Forbidden`` unless this actor's role holds ``permission``."""
        require(self.user.role, permission)
