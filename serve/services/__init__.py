"""Plain keyword-only service functions shared by the REST API and the dashboard.

Every mutating function takes the acting user, checks the permission matrix itself (so the UI and
the API cannot disagree) and writes an audit entry.
"""

from serve.services import alerts, audit, cases, transactions, users
from serve.services.actor import Actor

__all__ = ["Actor", "alerts", "audit", "cases", "transactions", "users"]
