"""Login rate limiting: a sliding window of failed attempts per client IP and per username.

Counting per username as well as per IP stops one account being brute-forced from many
addresses; counting per IP stops one address spraying many accounts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from threading import Lock

from aml.errors import TooManyRequests


class LoginRateLimiter:
    """At most ``max_attempts`` failed logins per key within ``window_s`` seconds.

    Held per process; the dashboard and the API each run one.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    @staticmethod
    def _keys(ip: str | None, username: str) -> tuple[str, str]:
        return f"ip:{ip or '-'}", f"user:{username.strip().lower()}"

    def _prune(self, key: str, now: float) -> deque[float]:
        window = self._failures.setdefault(key, deque())
        while window and now - window[0] >= self.window_s:
            window.popleft()
        return window

    def retry_after(self, *, ip: str | None, username: str) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in self._keys(ip, username):
                window = self._prune(key, now)
                if len(window) >= self.max_attempts:
                    wait = max(wait, self.window_s - (now - window[0]))
        return wait

    def check(self, *, ip: str | None, username: str) -> None:
        """Raise ``TooManyRequests`` when this IP or username is locked out.

        Raises:
            TooManyRequests: with ``retry_after`` seconds.
        """
        wait = self.retry_after(ip=ip, username=username)
        if wait > 0:
            raise TooManyRequests(
                "too many failed login attempts; try again later", retry_after=int(wait) + 1
            )

    def record_failure(self, *, ip: str | None, username: str) -> None:
        now = self._clock()
        with self._lock:
            for key in self._keys(ip, username):
                self._prune(key, now).append(now)

    def record_success(self, *, ip: str | None, username: str) -> None:
        """A successful login clears the username's failures (not the IP's)."""
        with self._lock:
            self._failures.pop(self._keys(ip, username)[1], None)
