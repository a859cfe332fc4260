"""Authentication pieces shared by the REST API and the dashboard."""

from serve.auth.passwords import hash_password, needs_rehash, verify_password
from serve.auth.ratelimit import LoginRateLimiter
from serve.auth.tokens import TokenClaims, TokenPair, TokenService, check_user_current

__all__ = [
    "LoginRateLimiter",
    "TokenClaims",
    "TokenPair",
    "TokenService",
    "check_user_current",
    "hash_password",
    "needs_rehash",
    "verify_password",
]
