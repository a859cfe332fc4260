"""Garbage-collector policy of the product's long-lived, high-throughput processes.

The webhook ingress, the scoring replicas, the state actors and the embedded store allocate
hundreds of thousands of short-lived objects per second (requests, documents, transactions
unpickled, contexts, decisions), which reference counting frees. At the interpreter's default
young-generation threshold (700) the cyclic collector runs thousands of times per second, and
its full passes walk every object the process holds: every imported module (Ray, pymongo,
Sanic, NumPy...), every window in memory. Measured in the ingress at 1,000 hooks/s: eleven full
passes in 100 s, 2.3 s in all, the longest 444 ms, during which no request was answered.

:func:`collect_rarely` moves what exists after start-up (modules, loaded models, connections) to
the permanent generation, so later passes never walk it again, and raises the young threshold.
Only reference cycles wait longer to be freed.
"""

from __future__ import annotations

import gc

# Allocations (net of frees) between two young-generation passes.
YOUNG_THRESHOLD = 100_000


def collect_rarely(young: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze what is left, and collect rarely from now on (call it once the
    process has started: imports done, models loaded)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, max(older, 50), max(oldest, 100))
