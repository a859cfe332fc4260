"""Role model, permission matrix and password policy shared by the REST API and the dashboard.

Framework-free on purpose: the API and the UI ask the same question (``can(role, permission)``)
so a role can never do in one surface what it is refused in the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from aml.domain import Role
from aml.errors import Forbidden, Unprocessable


class Permission(StrEnum):
    OVERVIEW_READ = "overview:read"
    ALERT_READ = "alert:read"
    ALERT_ASSIGN = "alert:assign"
    ALERT_DECIDE = "alert:decide"
    ALERT_ESCALATE = "alert:escalate"
    CASE_READ = "case:read"
    CASE_WRITE = "case:write"
    CASE_APPROVE = "case:approve"  # the checker in four-eyes transitions
    TRANSACTION_READ = "transaction:read"
    USER_ADMIN = "user:admin"
    AUDIT_READ = "audit:read"
    MODEL_READ = "model:read"
    MODEL_MANAGE = "model:manage"
    RULE_READ = "rule:read"
    RULE_CONFIG = "rule:config"
    JOB_READ = "job:read"
    JOB_RUN = "job:run"
    REPORT_EXPORT = "report:export"  # export a suspicious-transaction report of a SAR case
    CREDIT_READ = "credit:read"
    CREDIT_REQUEST = "credit:request"  # submit requests, rescore a profile on demand
    CREDIT_DECIDE = "credit:decide"  # approve/reject a request submitted by someone else
    CREDIT_APPROVE_LARGE = "credit:approve_large"  # approvals above the per-currency threshold


_ANALYST = frozenset(
    {
        Permission.OVERVIEW_READ,
        Permission.ALERT_READ,
        Permission.ALERT_ASSIGN,
        Permission.ALERT_DECIDE,
        Permission.ALERT_ESCALATE,
        Permission.CASE_READ,
        Permission.CASE_WRITE,
        Permission.TRANSACTION_READ,
        Permission.RULE_READ,
        Permission.CREDIT_READ,
        Permission.CREDIT_REQUEST,
        Permission.CREDIT_DECIDE,
    }
)

# ML engineers see alerts and transactions (labels are their training data) but never decide them:
# a person tuning the models must not also be producing the labels the models learn from.
_ML_ENGINEER = frozenset(
    {
        Permission.OVERVIEW_READ,
        Permission.ALERT_READ,
        Permission.CASE_READ,
        Permission.TRANSACTION_READ,
        Permission.MODEL_READ,
        Permission.MODEL_MANAGE,
        Permission.RULE_READ,
        Permission.JOB_READ,
        Permission.JOB_RUN,
        Permission.CREDIT_READ,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ANALYST: _ANALYST,
    Role.SENIOR_ANALYST: _ANALYST
    | {
        Permission.CASE_APPROVE,
        Permission.AUDIT_READ,
        Permission.MODEL_READ,
        Permission.RULE_CONFIG,  # thresholds are a compliance decision, not a modelling one
        Permission.REPORT_EXPORT,
        Permission.CREDIT_APPROVE_LARGE,
    },
    Role.ML_ENGINEER: _ML_ENGINEER,
    Role.ADMIN: frozenset(Permission),
}


def permissions_of(role: Role | str) -> frozenset[Permission]:
    """All permissions held by ``role`` (an unknown role holds none)."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def can(role: Role | str, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission``."""
    return permission in permissions_of(role)


def require(role: Role | str, permission: Permission) -> None:
    """Raise ``Forbidden`` unless ``role`` holds ``permission``.

    Raises:
        Forbidden: naming the missing permission.
    """
    if not can(role, permission):
        raise Forbidden("your role does not allow this action", permission=permission.value)


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """The roles that hold ``permission``, in declaration order."""
    return tuple(r for r in Role if permission in ROLE_PERMISSIONS[r])


def roles_without(permissions: Iterable[Permission]) -> tuple[Role, ...]:
    """The roles that lack at least one of ``permissions`` (used to test refusals)."""
    needed = frozenset(permissions)
    return tuple(r for r in Role if not needed <= ROLE_PERMISSIONS[r])


# Password policy: length and a blocklist rather than composition rules (NIST SP 800-63B).
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "123456789012",
        "qwertyuiop",
        "administrator",
        "admin123",
        "analyst123",
        "senior123",
        "changeme",
        "letmein",
        "welcome1",
        "iloveyou",
        "fineract",
        "fineractaml",
    }
)


def password_problems(password: str, *, username: str = "") -> list[str]:
    """Everything wrong with ``password`` under the policy (empty when acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or any(
        lowered.startswith(c) and len(set(lowered[len(c) :])) <= 1 for c in _COMMON_PASSWORDS
    ):
        problems.append("is a commonly used password")
    if username and username.lower() in lowered:
        problems.append("must not contain the username")
    if password and len(set(password)) < 4:
        problems.append("must use at least 4 different characters")
    return problems


def check_password_policy(password: str, *, username: str = "") -> None:
    """Raise ``Unprocessable`` when ``password`` breaks the policy.

    Raises:
        Unprocessable: listing every problem.
    """
    problems = password_problems(password, username=username)
    if problems:
        raise Unprocessable("password " + "; ".join(problems), field="password")
