"""The dashboard's dependencies, handed over once by the entry point (``ui.main.build``)."""

from __future__ import annotations

from dataclasses import dataclass

from serve.auth import LoginRateLimiter, TokenService
from storage.store import Store


@dataclass
class UiContext:
    store: Store
    tokens: TokenService
    limiter: LoginRateLimiter
    refresh_seconds: float = 5.0  # how often the queue and overview poll for new alerts
    currency: str = "XAF"  # currency of amount filters typed by analysts


_current: UiContext | None = None


def configure(ctx: UiContext) -> None:
    """Install the dependencies used by every page of this process."""
    global _current
    _current = ctx


def get() -> UiContext:
    """The configured dependencies.

    Raises:
        RuntimeError: when ``configure`` was not called by the entry point.
    """
    if _current is None:
        raise RuntimeError("the dashboard was started without ui.context.configure(...)")
    return _current
