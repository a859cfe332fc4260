"""A model scorer that failed is skipped for a cool-down, then tried again (half-open)."""

from __future__ import annotations

from serve.scoring.pipeline import ScorerBreaker


def test_breaker_opens_on_failure_and_half_opens_after_cooldown() -> None:
    now = [100.0]
    breaker = ScorerBreaker(cooldown_s=15.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    now[0] += 14.9
    assert not breaker.allow()
    now[0] += 0.2
    assert breaker.allow()  # one batch may try again
    breaker.failure()  # still down: closed for another cool-down
    now[0] += 1.0
    assert not breaker.allow()
    now[0] += 15.0
    assert breaker.allow()
    breaker.success()
    assert breaker.allow()
