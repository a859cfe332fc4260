"""End to end over real HTTP: the whole product under a sustained Fineract hook load.

What one run does, in order:

1. **Ceiling.** A bare Sanic app (one worker, one route answering a small JSON) in its own
   process, hit closed-loop by ``wrk -t1 -c32`` for ``--ceiling-seconds`` (the asyncio load
   generator when ``wrk`` is not installed). Measured before the product starts, under the same
   machine load, so acked/s can be read as a share of what Sanic alone does here.
2. **Stack.** ``fineract-aml run`` as an operator starts it (``make run``): its own temporary
   ``AML_DATA_DIR``, the webhook secret through ``AML_FINERACT_WEBHOOK_SECRETS``, free ports, the
   embedded store, a local Ray with the Serve scoring app, ingress, API and dashboard. The
   harness waits for the ingress ``/readyz`` (store and Serve scoring ready).
3. **Load.** A separate process posts Fineract-shaped hooks open-loop at ``--rate`` for
   ``--seconds`` over keep-alive connections and records each ack's latency from the request's
   *scheduled* time. The mix (:class:`HookMix`) is savings deposits and withdrawals, account
   transfers, loan repayments and disbursements across ``--accounts`` accounts, plus a planted
   share of risky ones (amounts at or above the 500,000 XAF reporting threshold and amounts
   just below it) that must alert. Hook timestamps replay one business day (08:00-18:00 local,
   yesterday) at the offered rate, so per-account velocity stays at a few per hour as in a real
   day, whatever the benchmark's speed.
4. **Verification** from the store (``storage.store.open_store``) once every scorable
   transaction is decided (bounded by ``--drain-timeout``): stored transactions are exactly the
   acknowledged hooks (0 lost, 0 duplicated), there is exactly one decision per scorable
   transaction, and every planted transaction has an alerting decision and belongs to an alert.
5. **Latency receive -> decision stored.** No timestamp of the moment a decision is written is
   stored. Two honest measures bracket it: ``decided_at - received_at`` over *every*
   transaction (``decided_at`` is stamped when the scoring batch starts, so it is a lower
   bound: it leaves out scoring and the write), and a poll-based observation of a sample
   (every ``--sample-every``-th hook): the harness polls the decisions of due sampled
   transactions, so each stored time lies between the last poll that missed it and the end of
   the poll that found it; both ends are reported. The polls are a load on the store like any
   other reader (in the embedded store each one decodes the documents it finds), so they are
   kept light: one hook in a hundred by default, at most 500 ids and about ten polls a second.
6. **Memory.** RSS (and PSS, which counts shared pages once) of every process of the stack —
   the ``fineract-aml run`` tree plus every process carrying this run's environment marker
   (Ray's GCS, raylet, workers and replicas, the embedded store); peak total and peak per
   process name. RSS is read every second (≈ 1 ms of CPU for the stack's 21 processes). PSS
   costs the kernel a walk of every process's page tables, ≈ 85 ms of CPU per sample here
   (a twelfth of a core at one a second, taken from the stack under test), so it is read every
   ten seconds, and at once whenever the RSS total has grown 64 MiB past its value at the
   last PSS reading: the PSS peak follows every growth.
7. **CPU.** User + system CPU of every process of the stack, of the load generator and of
   this harness, from the first scheduled hook to the generator's last answer, in cores and
   per process name; the stack's CPU per acknowledged hook says what a hook costs the whole
   product on this machine.
8. **Stop.** SIGTERM to ``fineract-aml run``; then no process with the marker may be left.

Run: ``.venv/bin/python -m bench e2e --rate 1000 --seconds 60``. Results go to
``bench/results/e2e-<date>[-label].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from aml.domain import stable_id
from bench._load import closed_loop_process, generator_process, percentile, wait_ready
from bench._load import marked_pids as _marked_pids
from storage.store import Store, open_store

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
MARKER = "AML_BENCH_E2E"
TENANT = "default"
# Names of the two processes outside the stack whose CPU is reported beside it.
LOAD_GENERATOR = "load generator"
HARNESS = "benchmark harness"
DB_NAME = "fineract_aml"  # the product's default database: the stack runs unconfigured

# Reporting threshold and structuring band of the shipped XAF rule config
# (``aml.rules.config.default_rule_config``): what the planted hooks must cross.
LARGE_AMOUNT = 500_000
STRUCTURING_FLOOR = 450_000
NORMAL_MAX = 150_000  # ordinary amounts stay far below the structuring band

BUSINESS_DAY_S = 10 * 3600

# (kind, share in percent) of ordinary hooks.
MIX: tuple[tuple[str, int], ...] = (
    ("deposit", 40),
    ("withdrawal", 25),
    ("transfer", 20),
    ("loan_repayment", 10),
    ("loan_disbursement", 5),
)
PLANTED_KINDS = ("large", "structuring")


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# --- the hook mix -----------------------------------------------------------------------------


def _mix64(x: int) -> int:
    """splitmix64: a cheap, well-spread hash so hook ``n`` is the same in every process."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _ordinary_kind(pick: int) -> str:
    """The kind whose share in ``MIX`` covers ``pick`` (0-99)."""
    for kind, share in MIX:
        if pick < share:
            return kind
        pick -= share
    return MIX[-1][0]


@dataclass(frozen=True, slots=True)
class Hook:
    """What hook ``n`` of a run is: its kind, accounts and amount (XAF, no minor unit)."""

    n: int
    kind: str
    entity: str
    action: str
    account: int  # savings id, or loan id for loan kinds
    client: int
    amount: int
    counterparty: int | None = None
    planted: str | None = None  # "large" or "structuring": must alert

    @property
    def dedupe_key(self) -> str:
        """The key the product derives from this hook (see ``serve.ingest.fineract``)."""
        return f"{self.entity}|{self.action}|{self.n}"

    @property
    def transaction_id(self) -> str:
        """The id of the transaction the product stores for this hook."""
        return stable_id(TENANT, self.dedupe_key)


_ENTITY_ACTION = {
    "deposit": ("SAVINGSACCOUNT", "DEPOSIT"),
    "withdrawal": ("SAVINGSACCOUNT", "WITHDRAWAL"),
    "transfer": ("ACCOUNTTRANSFER", "CREATE"),
    "loan_repayment": ("LOAN", "REPAYMENT"),
    "loan_disbursement": ("LOAN", "DISBURSE"),
}


@dataclass(frozen=True, slots=True)
class HookMix:
    """Request factory for the load generator: hook ``n`` as a full HTTP request.

    Deterministic in ``(seed, n)``, so the harness knows every hook's transaction id and whether
    it was planted without the generator sending anything back.
    """

    secret: str
    port: int
    day_start: datetime  # UTC instant of hook 1's publish timestamp
    spacing_s: float  # publish-time distance between consecutive hooks
    value_date: str  # the business date, as Fineract writes it ("28 November 2026")
    accounts: int = 3000
    planted_share: float = 0.01
    seed: int = 7

    @classmethod
    def replaying(
        cls,
        *,
        secret: str,
        port: int,
        total: int,
        day: date,
        timezone: str = "Africa/Douala",
        accounts: int = 3000,
        planted_share: float = 0.01,
        seed: int = 7,
    ) -> HookMix:
        """``total`` hooks spread over 08:00-18:00 local time of ``day``."""
        start = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(timezone))
        start += timedelta(hours=8)
        return cls(
            secret=secret,
            port=port,
            day_start=start.astimezone(UTC),
            spacing_s=BUSINESS_DAY_S / max(total, 1),
            value_date=f"{day.day:02d} {day:%B} {day.year}",
            accounts=accounts,
            planted_share=planted_share,
            seed=seed,
        )

    def hook(self, n: int) -> Hook:
        """What hook ``n`` (1-based) is."""
        h = _mix64(self.seed * 1_000_003 + n)
        account = 1 + (h >> 32) % self.accounts
        if (h % 1_000_000) < self.planted_share * 1_000_000:
            planted = PLANTED_KINDS[(h >> 20) & 1]
            if planted == "large":
                kind = "deposit" if (h >> 21) & 1 else "withdrawal"
                amount = 600_000 + (h >> 40) % 2_400_000
            else:
                kind = "deposit"
                amount = STRUCTURING_FLOOR + (h >> 40) % (LARGE_AMOUNT - STRUCTURING_FLOOR - 1000)
            entity, action = _ENTITY_ACTION[kind]
            return Hook(n, kind, entity, action, account, account, amount, planted=planted)
        kind = _ordinary_kind((h >> 20) % 100)
        entity, action = _ENTITY_ACTION[kind]
        amount = 500 + (h >> 40) % (NORMAL_MAX - 500)
        if kind.startswith("loan"):
            loan = 1 + (h >> 32) % max(1, self.accounts // 4)
            if kind == "loan_disbursement":
                amount = 50_000 + (h >> 40) % (400_000 - 50_000)
            return Hook(n, kind, entity, action, loan, loan, amount)
        if kind == "transfer":
            other = 1 + (account + (h >> 8) % (self.accounts - 1)) % self.accounts
            return Hook(n, kind, entity, action, account, account, amount, counterparty=other)
        return Hook(n, kind, entity, action, account, account, amount)

    def timestamp(self, n: int) -> str:
        """Hook ``n``'s publish time (``Instant.toString()`` form)."""
        at = self.day_start + timedelta(seconds=(n - 1) * self.spacing_s)
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def body(self, hook: Hook) -> bytes:
        """The hook's JSON body, shaped like Fineract >= 1.5 sends it."""
        d, ts, n = self.value_date, self.timestamp(hook.n), hook.n
        a, c, amt = hook.account, hook.client, hook.amount
        fmt = '"dateFormat":"dd MMMM yyyy","locale":"en"'
        who = '"createdByName":"mifos","createdBy":1,"createdByFullName":"App Administrator"'
        if hook.kind in ("deposit", "withdrawal"):
            text = (
                f'{{{who},"request":{{{fmt},"transactionDate":"{d}","transactionAmount":{amt},'
                f'"paymentTypeId":1}},"clientId":{c},"officeId":1,"entityName":"SAVINGSACCOUNT",'
                f'"response":{{"clientId":{c},"savingsId":{a},"resourceId":{n},'
                f'"changes":{{"paymentTypeId":1}}}},"actionName":"{hook.action}",'
                f'"timestamp":"{ts}"}}'
            )
        elif hook.kind == "transfer":
            b = hook.counterparty
            text = (
                f'{{{who},"request":{{"fromOfficeId":1,"fromClientId":{c},"fromAccountType":2,'
                f'"fromAccountId":{a},"toOfficeId":1,"toClientId":{b},"toAccountType":2,'
                f'"toAccountId":{b},{fmt},"transferDate":"{d}","transferAmount":"{amt}.00",'
                f'"transferDescription":"Transfer"}},"entityName":"ACCOUNTTRANSFER",'
                f'"response":{{"savingsId":{a},"resourceId":{n}}},"actionName":"CREATE",'
                f'"timestamp":"{ts}"}}'
            )
        elif hook.kind == "loan_repayment":
            text = (
                f'{{{who},"request":{{{fmt},"transactionDate":"{d}","transactionAmount":{amt},'
                f'"paymentTypeId":1}},"clientId":{c},"officeId":1,"entityName":"LOAN",'
                f'"response":{{"clientId":{c},"loanId":{a},"resourceId":{n},"changes":'
                f'{{"transactionDate":"{d}","transactionAmount":"{amt}",{fmt},'
                f'"paymentTypeId":1}}}},"actionName":"REPAYMENT","timestamp":"{ts}"}}'
            )
        else:
            text = (
                f'{{{who},"request":{{{fmt},"actualDisbursementDate":"{d}",'
                f'"transactionAmount":{amt},"paymentTypeId":1}},"clientId":{c},"officeId":1,'
                f'"entityName":"LOAN","response":{{"clientId":{c},"loanId":{a},"resourceId":{a},'
                f'"subResourceId":{n},"changes":{{"paymentTypeId":1,{fmt},'
                f'"actualDisbursementDate":"{d}"}}}},"actionName":"DISBURSE","timestamp":"{ts}"}}'
            )
        return text.encode()

    def __call__(self, n: int) -> bytes:
        hook = self.hook(n)
        body = self.body(hook)
        head = (
            f"POST /webhooks/fineract/{self.secret}/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            f"X-Fineract-Entity: {hook.entity}\r\n"
            f"X-Fineract-Action: {hook.action}\r\n"
            f"Fineract-Platform-TenantId: {TENANT}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n"
            "User-Agent: okhttp/4.12.0\r\n"
            "Connection: Keep-Alive\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verification:
    """Counts that say whether every acknowledged event was stored, scored and alerted once."""

    acked: int  # distinct hooks answered 200
    stored: int  # transaction documents
    lost: int  # acknowledged, not stored
    unacknowledged_stored: int  # stored although the generator saw no 200 for it
    duplicated: int  # documents beyond one per dedupe key
    scorable: int  # stored transactions that must get a decision
    decisions: int  # decision documents
    undecided: int  # scorable transactions without a decision
    duplicate_decisions: int  # decisions beyond one per transaction
    orphan_decisions: int  # decisions of no stored transaction
    planted: int
    planted_not_alerting: int  # planted, decided, but the decision did not alert
    planted_without_alert: int  # planted, but in no alert's transactions
    alerting_decisions: int

    @property
    def ok(self) -> bool:
        """True when nothing was lost, duplicated, left undecided or left unalerted."""
        return not (
            self.lost
            or self.unacknowledged_stored
            or self.duplicated
            or self.undecided
            or self.duplicate_decisions
            or self.orphan_decisions
            or self.planted_not_alerting
            or self.planted_without_alert
        )


def verify(
    *,
    acked_ids: Collection[str],
    stored: Sequence[tuple[str, str]],
    scorable_ids: Collection[str],
    decision_ids: Sequence[str],
    alerting_ids: Collection[str],
    alerted_ids: Collection[str],
    planted_ids: Collection[str],
) -> Verification:
    """Compare what was acknowledged with what the store holds.

    Args:
        acked_ids: transaction ids of the hooks answered 200.
        stored: ``(id, dedupe_key)`` of every stored transaction document.
        scorable_ids: stored transactions that must be decided (not corrections or attempts).
        decision_ids: the transaction id of every decision document.
        alerting_ids: transaction ids whose decision alerted.
        alerted_ids: transaction ids found in any alert.
        planted_ids: transaction ids of the planted risky hooks that were acknowledged.
    """
    acked = set(acked_ids)
    stored_ids = {tx_id for tx_id, _ in stored}
    keys = {key for _, key in stored}
    decided = set(decision_ids)
    scorable = set(scorable_ids)
    planted = set(planted_ids)
    return Verification(
        acked=len(acked),
        stored=len(stored),
        lost=len(acked - stored_ids),
        unacknowledged_stored=len(stored_ids - acked),
        duplicated=len(stored) - len(keys),
        scorable=len(scorable),
        decisions=len(decision_ids),
        undecided=len(scorable - decided),
        duplicate_decisions=len(decision_ids) - len(decided),
        orphan_decisions=len(decided - stored_ids),
        planted=len(planted),
        planted_not_alerting=len((planted & decided) - set(alerting_ids)) + len(planted - decided),
        planted_without_alert=len(planted - set(alerted_ids)),
        alerting_decisions=len(set(alerting_ids)),
    )


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of latencies in milliseconds (NaN when empty)."""
    nan = float("nan")
    return {
        "n": float(len(values_ms)),
        "p50": percentile(values_ms, 0.50),
        "p90": percentile(values_ms, 0.90),
        "p99": percentile(values_ms, 0.99),
        "max": max(values_ms) if values_ms else nan,
        "mean": statistics.fmean(values_ms) if values_ms else nan,
    }


# Ack latencies are also summarised per window of the load, so that a start-up transient (every
# account's window rebuilt on first use, Serve replicas warming up) and the steady state can be
# told apart.
WINDOW_S = 10.0


def windowed(latencies_s: Sequence[float], sent_at_s: Sequence[float]) -> list[dict[str, float]]:
    """Ack latency summaries (ms) of the requests scheduled in each ``WINDOW_S`` of the load."""
    by_window: dict[int, list[float]] = {}
    for latency, at in zip(latencies_s, sent_at_s, strict=True):
        by_window.setdefault(int(at // WINDOW_S), []).append(latency * 1000)
    return [{"from_s": w * WINDOW_S, **summary(v)} for w, v in sorted(by_window.items())]


def decisions_by_window(
    received: Mapping[str, datetime],
    decided: Mapping[str, datetime],
    start_s: float,
    end_s: float,
) -> list[dict[str, float]]:
    """Per ``WINDOW_S`` of the load (from ``start_s``, up to ``end_s``, epoch seconds): the
    decisions made in it per second, and receive -> decided (ms) of the hooks received in it.

    Whether decisions keep pace is read here: a pipeline that keeps up decides at the offered
    rate in every window and its latency stays flat, one falling behind decides less and less
    of what arrives while the latency of each window grows. "Decided during the load" alone
    cannot tell them apart: both leave the last second's hooks to be decided after it.
    """
    nan = float("nan")
    # Whole windows; the last one also takes what the load ran past them (a load of 60 s ends
    # a few milliseconds late).
    n = max(1, int((end_s - start_s) / WINDOW_S + 0.5))
    counts = [0] * n
    lags: list[list[float]] = [[] for _ in range(n)]
    for tx_id, at in decided.items():
        t = at.timestamp()
        w = min(int((t - start_s) // WINDOW_S), n - 1)
        if w >= 0 and t <= end_s:
            counts[w] += 1
        got = received.get(tx_id)
        if got is None:
            continue
        w = min(int((got.timestamp() - start_s) // WINDOW_S), n - 1)
        if w >= 0:
            lags[w].append((at - got).total_seconds() * 1000)
    out = []
    for w in range(n):
        until = end_s if w == n - 1 else start_s + (w + 1) * WINDOW_S
        span = until - (start_s + w * WINDOW_S)
        out.append(
            {
                "from_s": w * WINDOW_S,
                "decided_per_s": counts[w] / span if span > 0 else nan,
                "receive_to_decided_p99_ms": percentile(lags[w], 0.99) if lags[w] else nan,
            }
        )
    return out


def after_warm_up(latencies_s: Sequence[float], sent_at_s: Sequence[float]) -> dict[str, float]:
    """Ack latency summary (ms) of the requests scheduled after the first ``WINDOW_S``."""
    return summary(
        [v * 1000 for v, at in zip(latencies_s, sent_at_s, strict=True) if at >= WINDOW_S]
    )


# --- processes and memory ----------------------------------------------------------------------


def process_label(cmdline: Sequence[str], name: str) -> str:
    """A stable, readable name for one process of the stack (memory is reported per name).

    Ray retitles a worker while it runs a method (``ray::StateShard.__init__``,
    ``ray::SERVE_REPLICA::scoring#RuleScorer#id:ServeReplica:scoring:RuleScorer.__init__``):
    the actor or replica name without the method is kept, so one process keeps one name.
    """
    if not cmdline:
        return name
    first = cmdline[0]
    if first.startswith("ray::"):
        title = first.split()[0][len("ray::") :]
        if "ServeReplica:" in title:
            title = title[title.index("ServeReplica:") :]
        elif ":" in title:
            title = title.rsplit(":", 1)[1]
        return "ray::" + title.split(".", 1)[0]
    if "-m" in cmdline[:-1]:
        module = cmdline[cmdline.index("-m") + 1]
        rest = cmdline[cmdline.index("-m") + 2 :]
        if module == "fineract_aml.cli":
            return f"fineract-aml {rest[0]}" if rest else "fineract-aml"
        if module.startswith("nx_27017"):
            return "nx-27017"
        return module
    exe = Path(first).name
    args = [a for a in cmdline[1:] if not a.startswith("-")]
    if exe.startswith("python") and args:
        script = Path(args[0]).name
        if script == "fineract-aml":
            return f"fineract-aml {args[1]}" if len(args) > 1 else script
        return script
    if exe == "fineract-aml":
        return f"fineract-aml {args[0]}" if args else exe
    return exe


def marked_pids(tag: str) -> list[int]:
    """Processes whose environment carries ``MARKER=tag`` (this run's, and only those)."""
    return _marked_pids(MARKER, tag)


@dataclass
class MemoryPeaks:
    """Peaks over the samples taken so far."""

    samples: int = 0
    peak_rss_total: int = 0
    peak_pss_total: int = 0
    peak_processes: int = 0
    peak_rss_by_name: dict[str, int] = field(default_factory=dict)
    peak_count_by_name: dict[str, int] = field(default_factory=dict)
    # (t, rss, pss); pss is None for a sample that read RSS only
    timeline: list[tuple[float, int, int | None]] = field(default_factory=list)

    def add(self, at: float, by_name: Mapping[str, tuple[int, int, int | None]]) -> None:
        """One sample: per name, ``(process count, rss bytes, pss bytes or None)``."""
        rss = sum(v[1] for v in by_name.values())
        pss: int | None = None
        if all(v[2] is not None for v in by_name.values()):
            pss = sum(v[2] or 0 for v in by_name.values())
            self.peak_pss_total = max(self.peak_pss_total, pss)
        self.samples += 1
        self.peak_rss_total = max(self.peak_rss_total, rss)
        self.peak_processes = max(self.peak_processes, sum(v[0] for v in by_name.values()))
        for name, (count, rss_n, _) in by_name.items():
            self.peak_rss_by_name[name] = max(self.peak_rss_by_name.get(name, 0), rss_n)
            self.peak_count_by_name[name] = max(self.peak_count_by_name.get(name, 0), count)
        self.timeline.append((round(at, 1), rss, pss))


def pss_due(since_pss: float, rss_growth: int, interval: float, growth: int) -> bool:
    """Whether a sample reads PSS too: ``interval`` seconds have passed since the last PSS
    reading, or the RSS total has grown ``growth`` bytes since it."""
    return since_pss >= interval or rss_growth >= growth


class MemorySampler(threading.Thread):
    """Samples the stack's RSS every ``interval`` seconds until stopped, and its PSS every
    ``pss_interval`` seconds or as soon as the RSS total is ``pss_growth`` bytes above its value
    at the last PSS reading (see the module notes: PSS is what costs)."""

    def __init__(
        self,
        root_pid: int,
        tag: str,
        interval: float = 1.0,
        pss_interval: float = 10.0,
        pss_growth: int = 64 << 20,
    ) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.root_pid = root_pid
        self.tag = tag
        self.interval = interval
        self.pss_interval = pss_interval
        self.pss_growth = pss_growth
        self.peaks = MemoryPeaks()
        self.load_window = MemoryPeaks()  # the same, while the load runs
        self.in_load = False
        self._stop_event = threading.Event()
        self._started_at = time.monotonic()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def pids(self) -> set[int]:
        import psutil

        found = set(marked_pids(self.tag))
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.root_pid)
            found.add(root.pid)
            found.update(p.pid for p in root.children(recursive=True))
        return found

    def sample(self, *, pss: bool = True) -> dict[str, tuple[int, int, int | None]]:
        """Per process name: ``(count, rss, pss)``; pss is None when not asked for."""
        import psutil

        by_name: dict[str, tuple[int, int, int | None]] = {}
        for pid in self.pids():
            try:
                proc = psutil.Process(pid)
                label = process_label(proc.cmdline(), proc.name())
                proc_pss: int | None = None
                if pss:
                    try:
                        info = proc.memory_full_info()
                        rss, proc_pss = int(info.rss), int(getattr(info, "pss", info.rss))
                    except psutil.AccessDenied:
                        rss = proc_pss = int(proc.memory_info().rss)
                else:
                    rss = int(proc.memory_info().rss)
            except psutil.Error:
                continue  # exited between listing and reading
            count, r, p = by_name.get(label, (0, 0, 0))
            total = None if proc_pss is None or p is None else p + proc_pss
            by_name[label] = (count + 1, r + rss, total)
        return by_name

    def run(self) -> None:
        pss_at = float("-inf")  # monotonic time of the last PSS reading
        pss_rss = 0  # the RSS total then
        while not self._stop_event.is_set():
            now = time.monotonic()
            by_name = self.sample(pss=False)
            rss = sum(v[1] for v in by_name.values())
            if pss_due(now - pss_at, rss - pss_rss, self.pss_interval, self.pss_growth):
                by_name = self.sample()
                pss_at, pss_rss = now, sum(v[1] for v in by_name.values())
            at = time.monotonic() - self._started_at
            self.peaks.add(at, by_name)
            if self.in_load:
                self.load_window.add(at, by_name)
            self._stop_event.wait(self.interval)


CpuSnapshot = dict[int, tuple[str, float]]  # pid -> (process name, CPU seconds so far)


def cpu_snapshot(pids: Mapping[int, str | None]) -> CpuSnapshot:
    """User + system CPU seconds of each process (``pids``: pid -> fixed name, or None to name
    it as the memory report does)."""
    import psutil

    out: CpuSnapshot = {}
    for pid, name in pids.items():
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            label = name or process_label(proc.cmdline(), proc.name())
        except psutil.Error:
            continue  # exited between listing and reading
        out[pid] = (label, float(times.user + times.system))
    return out


def cpu_during(
    start: CpuSnapshot, end: CpuSnapshot, seconds: float, extra: Mapping[str, float] = {}
) -> dict[str, Any]:
    """Cores used between two snapshots, per process name (the name at the end: Ray renames a
    worker that becomes a replica) and in all; a process started in between counts from zero,
    one that exited in between is left out. ``extra``: CPU seconds of processes that measured
    themselves (name -> seconds)."""
    by_name: dict[str, float] = dict(extra)
    for pid, (name, cpu) in end.items():
        before = start.get(pid)
        used = cpu - (before[1] if before else 0.0)
        by_name[name] = by_name.get(name, 0.0) + max(used, 0.0)
    cores = {k: v / seconds for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}
    return {"seconds": seconds, "cores_by_name": cores, "cores": sum(cores.values())}


# --- the bare Sanic ceiling --------------------------------------------------------------------


def bare_serve(argv: Sequence[str]) -> None:
    """Entry of the ceiling process: one Sanic worker answering ``{"status": "ok"}``."""
    from sanic import Sanic
    from sanic.request import Request
    from sanic.response import HTTPResponse, json

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = Sanic("bench-bare")

    async def _ok(request: Request, path: str = "") -> HTTPResponse:
        return json({"status": "ok"})

    app.add_route(_ok, "/", methods=["GET", "POST"], name="root")
    app.add_route(_ok, "/<path:path>", methods=["GET", "POST"], name="any")

    app.run(
        host="127.0.0.1",
        port=args.port,
        single_process=True,
        access_log=False,
        motd=False,
        debug=False,
    )


def parse_wrk(text: str) -> float:
    """``Requests/sec`` from wrk's report.

    Raises:
        ValueError: when the report has no such line.
    """
    match = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if match is None:
        raise ValueError("no Requests/sec in wrk output")
    return float(match.group(1))


def wrk_script(request: bytes) -> str:
    """A wrk Lua script that sends ``request`` (a full HTTP/1.1 request) on every call."""
    head, _, body = request.partition(b"\r\n\r\n")
    method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
    headers = [line.split(": ", 1) for line in head.decode().split("\r\n")[1:]]
    lines = [f"wrk.method = {json.dumps(method)}", f"wrk.path = {json.dumps(path)}"]
    lines += [f"wrk.body = {json.dumps(body.decode())}"]
    for name, value in headers:
        if name.lower() not in ("host", "content-length", "connection"):
            lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Same:
    request: bytes

    def __call__(self, n: int) -> bytes:
        return self.request


def measure_ceiling(
    seconds: float, make_request: Callable[[int], bytes], connections: int = 32
) -> dict[str, Any]:
    """Closed-loop req/s of a bare one-worker Sanic JSON endpoint on this machine, now.

    Every request is ``make_request(port)`` (a Fineract hook like the run's), so the ceiling
    receives the same bytes per request as the product; the bare app answers without parsing.
    """
    from storage.embedded import free_port

    port = free_port()
    request = make_request(port)
    cmd = [sys.executable, "-m", "bench", "e2e", "bare", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/", proc, timeout=60)
        wrk = shutil.which("wrk")
        if wrk is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
                fh.write(wrk_script(request))
            try:
                out = subprocess.run(
                    [wrk, "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", fh.name,
                     f"http://127.0.0.1:{port}/"],
                    capture_output=True, text=True, check=True, timeout=seconds + 60,
                ).stdout  # fmt: skip
            finally:
                os.unlink(fh.name)
            tool = f"wrk -t1 -c{connections} -d{int(seconds)}s, POST of one hook"
            return {"tool": tool, "per_s": parse_wrk(out)}
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        gen = ctx.Process(
            target=closed_loop_process, args=(port, connections, seconds, _Same(request), queue)
        )
        gen.start()
        result = queue.get(timeout=seconds + 60)
        gen.join()
        return {
            "tool": f"asyncio closed loop, {connections} connections, {seconds:.0f} s, POST",
            "per_s": float(result["per_s"]),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """One ``fineract-aml run`` of this benchmark."""

    proc: subprocess.Popen[bytes]
    tag: str
    data_dir: Path
    log_path: Path
    ingress_port: int
    secret: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def load_result(queue: Any, generator: Any, stack: Stack, timeout: float) -> dict[str, Any]:
    """The load generator's result, or an error as soon as the generator or the stack has
    ended without one (instead of waiting the whole ``timeout`` for it)."""
    import queue as queues

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(queues.Empty):
            return dict(queue.get(timeout=1.0))
        if stack.proc.poll() is not None:
            raise RuntimeError(
                f"fineract-aml run exited (code {stack.proc.returncode}) during the load:\n"
                + stack.log_tail(2000)
            )
        if not generator.is_alive():
            with contextlib.suppress(queues.Empty):
                return dict(queue.get(timeout=1.0))
            raise RuntimeError(f"the load generator exited (code {generator.exitcode}) early")
    raise TimeoutError(f"no result from the load generator in {timeout:.0f} s")


def start_stack(root: Path, tag: str) -> Stack:
    """Start ``fineract-aml run`` in ``root`` as an operator would, with a fresh secret."""
    from storage.embedded import free_port_for_later

    secret = secrets.token_urlsafe(32)
    ports = {name: free_port_for_later() for name in ("ingress", "api", "ui")}
    # As an operator starts it: nothing from the calling shell's AML_/Ray/test settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AML_", "RAY_ADDRESS", "PYTEST_", "NICEGUI_"))
    }
    env.update(
        {
            "AML_DATA_DIR": str(root / "data"),
            "AML_FINERACT_WEBHOOK_SECRETS": secret,
            "AML_INGRESS_PORT": str(ports["ingress"]),
            "AML_API_PORT": str(ports["api"]),
            "AML_UI_PORT": str(ports["ui"]),
            "AML_LOG_LEVEL": "WARNING",
            MARKER: tag,
        }
    )
    script = Path(sys.executable).parent / "fineract-aml"
    cmd = [str(script), "run"] if script.exists() else [sys.executable, "-m", "fineract_aml.cli"]
    if not script.exists():
        cmd.append("run")
    log_path = root / "run.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Stack(proc, tag, root / "data", log_path, ports["ingress"], secret)


def stop_stack(stack: Stack, timeout: float = 90.0) -> dict[str, Any]:
    """SIGTERM ``fineract-aml run`` and check that every process of the run has ended.

    Returns:
        ``returncode``, ``stop_s`` and ``leftovers`` (label and pid of every marked process
        still alive afterwards; they are then killed so that nothing outlives the benchmark).
    """
    import psutil

    started = time.monotonic()
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)
    try:
        stack.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
        stack.proc.wait(timeout=30)
    stop_s = time.monotonic() - started
    deadline = time.monotonic() + 15
    while marked_pids(stack.tag) and time.monotonic() < deadline:
        time.sleep(0.5)  # Ray's processes notice their raylet is gone within a few seconds
    leftovers = []
    for pid in marked_pids(stack.tag):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            leftovers.append({"pid": pid, "name": process_label(proc.cmdline(), proc.name())})
            proc.kill()
    return {"returncode": stack.proc.returncode, "stop_s": stop_s, "leftovers": leftovers}


def scrape_metrics(base: str) -> dict[str, float]:
    """The ingress's own counters (loopback may read ``/metrics``), histogram buckets left out."""
    values: dict[str, float] = {}
    try:
        text = httpx.get(f"{base}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return values
    for line in text.splitlines():
        if line.startswith("#") or "_bucket{" in line or not line.startswith("aml_"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            values[name] = float(value)
    return values


# --- observing decisions while the load runs ---------------------------------------------------


@dataclass
class Observation:
    """Bounds on when each sampled transaction's decision became visible in the store."""

    found_by: dict[str, float] = field(default_factory=dict)  # end of the poll that found it
    missed_at: dict[str, float] = field(default_factory=dict)  # start of the last poll missing it
    polls: list[float] = field(default_factory=list)  # duration of every poll, seconds


async def observe_decisions(
    store: Store,
    due_at: Mapping[str, float],
    done: asyncio.Event,
    interval: float = 0.1,
    per_poll: int = 500,
) -> Observation:
    """Poll the decisions of sampled transactions whose hook is due, until ``done`` is set
    (then once more).

    ``due_at`` maps a transaction id to the wall-clock time its hook is scheduled. At most
    ``per_poll`` of the oldest pending ids are asked for per poll, and polls start ``interval``
    apart at the most, so that the observer stays a light load on the store it measures (with
    2,000 ids every 50 ms it took a third of the embedded store's time at 1,000 hooks/s).
    """
    obs = Observation()
    order = sorted(due_at, key=due_at.__getitem__)
    while True:
        final = done.is_set()
        now = time.time()
        due = [i for i in order if due_at[i] <= now and i not in obs.found_by][:per_poll]
        if due:
            started = time.time()
            cursor = store.decisions.col.find({"_id": {"$in": due}}, {"_id": 1})
            found = {doc["_id"] async for doc in cursor}
            ended = time.time()
            obs.polls.append(ended - started)
            for tx_id in due:
                if tx_id in found:
                    obs.found_by[tx_id] = ended
                else:
                    obs.missed_at[tx_id] = started
        if final:
            return obs
        await asyncio.sleep(max(interval, obs.polls[-1] if due else 0.0))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    rate: float = 2000.0
    seconds: float = 60.0
    accounts: int = 3000
    connections: int = 64
    planted_share: float = 0.01
    ceiling_seconds: float = 10.0
    drain_timeout: float = 300.0
    sample_every: int = 100
    ready_timeout: float = 300.0
    label: str = ""


async def _load_and_verify(
    opts: Options, stack: Stack, sampler: MemorySampler, uri: str
) -> dict[str, Any]:
    total = int(opts.rate * opts.seconds)
    yesterday = (datetime.now(ZoneInfo("Africa/Douala")) - timedelta(days=1)).date()
    mix = HookMix.replaying(
        secret=stack.secret,
        port=stack.ingress_port,
        total=total,
        day=yesterday,
        accounts=opts.accounts,
        planted_share=opts.planted_share,
    )
    start_at = time.time() + 2.0
    sample = {
        mix.hook(n).transaction_id: start_at + (n - 1) / opts.rate
        for n in range(opts.sample_every, total + 1, opts.sample_every)
    }
    store = open_store(uri, DB_NAME, timeout_ms=30_000, appname="bench-e2e")
    try:
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        gen = ctx.Process(
            target=generator_process,
            args=(stack.ingress_port, opts.rate, opts.seconds, opts.connections, mix, queue),
            kwargs={"start_at": start_at},
        )
        gen.start()
        done = asyncio.Event()
        observer = asyncio.create_task(observe_decisions(store, sample, done))
        sampler.in_load = True
        # CPU over the load: every process of the stack and this harness (the generator reports
        # its own).
        watched: dict[int, str | None] = dict.fromkeys(sampler.pids())
        watched[os.getpid()] = HARNESS
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_start, cpu_start_at = cpu_snapshot(watched), time.monotonic()
        load: dict[str, Any] = await asyncio.to_thread(
            load_result, queue, gen, stack, opts.seconds * 10 + 300
        )
        watched.update(dict.fromkeys(sampler.pids() - set(watched)))
        cpu = cpu_during(
            cpu_start,
            cpu_snapshot(watched),
            time.monotonic() - cpu_start_at,
            extra={LOAD_GENERATOR: load["cpu_s"]},
        )
        load_end = time.time()
        sampler.in_load = False
        gen.join(timeout=30)
        log(f"load done: {load['statuses']} in {load['elapsed_s']:.1f} s")

        failed = set(load["failed"])
        acked_hooks = [mix.hook(n) for n in range(1, total + 1) if n not in failed]
        acked_ids = {h.transaction_id for h in acked_hooks}
        planted_ids = {h.transaction_id for h in acked_hooks if h.planted}

        # Every acked event stored and every scorable one decided, or the bound runs out. Only
        # cheap questions while waiting: the embedded store answers count_documents with a
        # full scan in Python, which would slow down the very stack being measured.
        drain_started = last_log = time.monotonic()
        counts: dict[str, int] = {}
        progress: list[tuple[float, int, int]] = []  # (s after the load, stored, decided)
        while True:
            counts = {
                "transactions": await store.transactions.col.estimated_document_count(),
                "decisions": await store.decisions.col.estimated_document_count(),
            }
            elapsed = round(time.monotonic() - drain_started, 1)
            progress.append((elapsed, counts["transactions"], counts["decisions"]))
            if counts["transactions"] >= len(acked_ids) and counts["decisions"] >= len(acked_ids):
                pending = await store.transactions.col.find_one({"status": "pending"}, {"_id": 1})
                if pending is None:
                    break
            if time.monotonic() - drain_started > opts.drain_timeout:
                log(f"drain bound reached: {counts}")
                break
            if time.monotonic() - last_log >= 30:
                last_log = time.monotonic()
                log(f"waiting for decisions: {counts}")
            await asyncio.sleep(2.0)
        drain_s = time.monotonic() - drain_started
        done.set()
        observation = await observer
        log(f"stopped waiting {drain_s:.1f} s after the load: {counts}")

        metrics = scrape_metrics(stack.base)
        received: dict[str, datetime] = {}
        stored: list[tuple[str, str]] = []
        scorable: list[str] = []
        # Large batches: on a busy embedded store every round trip waits for its lock.
        async for doc in store.transactions.col.find(
            {}, {"_id": 1, "dedupe_key": 1, "received_at": 1, "status": 1}, batch_size=20_000
        ):
            stored.append((doc["_id"], doc["dedupe_key"]))
            received[doc["_id"]] = _utc(doc["received_at"])
            if doc["status"] in ("pending", "scored"):
                scorable.append(doc["_id"])
        decided: dict[str, datetime] = {}
        decision_ids: list[str] = []
        alerting: list[str] = []
        rules_not_planted: dict[str, int] = {}
        fields = {"_id": 1, "decided_at": 1, "alert": 1, "rule_hits": 1}
        async for doc in store.decisions.col.find({}, fields, batch_size=20_000):
            decision_ids.append(doc["_id"])
            decided[doc["_id"]] = _utc(doc["decided_at"])
            if doc["alert"]:
                alerting.append(doc["_id"])
                if doc["_id"] not in planted_ids:
                    for hit in doc.get("rule_hits") or ():
                        rule = str(hit.get("rule_id"))
                        rules_not_planted[rule] = rules_not_planted.get(rule, 0) + 1
        alerted: set[str] = set()
        alerts = 0
        async for doc in store.alerts.col.find({}, {"transaction_ids": 1}):
            alerts += 1
            alerted.update(doc["transaction_ids"])
        outcomes: dict[str, int] = {}
        async for doc in store.ingest_log.col.find({}, {"_id": 0, "outcome": 1}, batch_size=20_000):
            outcomes[str(doc["outcome"])] = outcomes.get(str(doc["outcome"]), 0) + 1
    finally:
        await store.close()

    check = verify(
        acked_ids=acked_ids,
        stored=stored,
        scorable_ids=scorable,
        decision_ids=decision_ids,
        alerting_ids=alerting,
        alerted_ids=alerted,
        planted_ids=planted_ids,
    )
    lower_all = [
        (decided[i] - received[i]).total_seconds() * 1000 for i in decided if i in received
    ]
    settled = start_at + WINDOW_S  # received after the start-up transient
    lower_settled = [
        (decided[i] - received[i]).total_seconds() * 1000
        for i in decided
        if i in received and received[i].timestamp() >= settled
    ]
    observed_upper: list[float] = []
    observed_lower: list[float] = []
    for tx_id, found in observation.found_by.items():
        if tx_id not in received:
            continue
        got = received[tx_id].timestamp()
        observed_upper.append((found - got) * 1000)
        observed_lower.append(max(0.0, observation.missed_at.get(tx_id, got) - got) * 1000)
    load_start = start_at
    last_decided = max(decided.values()).timestamp() if decided else load_start
    in_load = sum(1 for d in decided.values() if d.timestamp() <= load_end)
    acked = load["statuses"].get("200", 0)
    planted_kinds: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for h in acked_hooks:
        kinds[h.kind] = kinds.get(h.kind, 0) + 1
        if h.planted:
            planted_kinds[h.planted] = planted_kinds.get(h.planted, 0) + 1
    stack_cores = sum(
        v for k, v in cpu["cores_by_name"].items() if k not in (LOAD_GENERATOR, HARNESS)
    )
    return {
        "load": {
            "sent": load["sent"],
            "acked": acked,
            "elapsed_s": load["elapsed_s"],
            "acked_per_s": acked / load["elapsed_s"] if load["elapsed_s"] else 0.0,
            "statuses": load["statuses"],
            "transport_errors": len(load["errors"]),
            "not_acked": len(failed),
            "kinds": kinds,
            "planted": planted_kinds,
        },
        "ack_latency_ms": summary([v * 1000 for v in load["latencies"]]),
        "ack_latency_after_warm_up_ms": after_warm_up(load["latencies"], load["sent_at"]),
        "ack_latency_by_window_ms": windowed(load["latencies"], load["sent_at"]),
        # Part of the ack latency spent in the generator: with every connection waiting for an
        # answer, a request waits for one (the server's latency times the rate is past the
        # connection count).
        "send_lag_ms": summary([v * 1000 for v in load["send_lags"]]),
        "scoring": {
            "decisions": len(decision_ids),
            "scored_per_s_run": len(decision_ids) / max(last_decided - load_start, 1e-9),
            "scored_per_s_during_load": in_load / max(load_end - load_start, 1e-9),
            "decided_during_load": in_load,
            "last_decision_after_load_s": max(0.0, last_decided - load_end),
            "drain_after_load_s": drain_s,
            "drain_progress_s_stored_decided": progress[:: max(1, len(progress) // 60)],
            "alerting_decisions": len(set(alerting)),
            "alerts": alerts,
            "alerting_not_planted": len(set(alerting) - planted_ids),
            "rules_of_alerting_not_planted": rules_not_planted,
        },
        "decisions_by_window": decisions_by_window(received, decided, start_at, load_end),
        "receive_to_decided_at_ms": summary(lower_all),
        "receive_to_decided_at_after_warm_up_ms": summary(lower_settled),
        "receive_to_decision_observed_ms": {
            "upper": summary(observed_upper),
            "lower": summary(observed_lower),
            "sampled": len(sample),
            "found": len(observation.found_by),
            "polls": len(observation.polls),
            "mean_poll_ms": statistics.fmean(observation.polls) * 1000
            if observation.polls
            else float("nan"),
        },
        "verification": {**asdict(check), "ok": check.ok},
        "cpu_during_load": {
            **cpu,
            "stack_cores": stack_cores,
            "stack_cpu_us_per_hook": stack_cores * 1e6 / max(acked / load["elapsed_s"], 1e-9)
            if load["elapsed_s"]
            else float("nan"),
        },
        "ingest_log_outcomes": outcomes,
        "ingress_metrics": metrics,
    }


def _one_hook(port: int) -> bytes:
    mix = HookMix.replaying(secret="c" * 43, port=port, total=1, day=date(2026, 1, 15))
    return mix(1)


def run(opts: Options) -> dict[str, Any]:
    """One benchmark: ceiling, stack, load, verification, memory, clean stop."""
    from storage import embedded

    load_before = os.getloadavg()
    log(f"bare Sanic ceiling ({opts.ceiling_seconds:.0f} s)")
    ceiling = measure_ceiling(opts.ceiling_seconds, _one_hook)
    log(f"ceiling: {ceiling['per_s']:.0f} req/s ({ceiling['tool']})")
    tag = secrets.token_hex(6)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        stack = start_stack(Path(tmp), tag)
        sampler = MemorySampler(stack.proc.pid, tag)
        sampler.start()
        stopped: dict[str, Any] = {}
        try:
            log("waiting for fineract-aml run to be ready (/readyz)")
            started = time.monotonic()
            try:
                wait_ready(f"{stack.base}/readyz", stack.proc, timeout=opts.ready_timeout)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{stack.log_tail()}") from None
            ready_s = time.monotonic() - started
            server = embedded.status(stack.data_dir)
            if server is None:
                raise RuntimeError("the embedded store of the run is not running")
            log(f"ready after {ready_s:.0f} s; load {opts.rate:.0f}/s for {opts.seconds:.0f} s")
            load_avg_start = os.getloadavg()
            result = asyncio.run(_load_and_verify(opts, stack, sampler, server.uri))
            load_avg_end = os.getloadavg()
        finally:
            sampler.stop()
            log("stopping fineract-aml run (SIGTERM)")
            stopped = stop_stack(stack)
            store_left = embedded.status(stack.data_dir) is not None
        log(f"stopped in {stopped['stop_s']:.1f} s, leftovers: {stopped['leftovers']}")

    peaks, window = sampler.peaks, sampler.load_window
    mib = 1024 * 1024
    by_name = sorted(peaks.peak_rss_by_name.items(), key=lambda kv: -kv[1])
    result.update(
        {
            "benchmark": "e2e",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "label": opts.label,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                # The box is shared: the load average says how much CPU others used.
                "loadavg_before": list(load_before),
                "loadavg_load_start": list(load_avg_start),
                "loadavg_load_end": list(load_avg_end),
                "loadavg_after": list(os.getloadavg()),
            },
            "config": {
                **asdict(opts),
                "tenant": TENANT,
                "business_day_replayed_s": BUSINESS_DAY_S,
            },
            "ceiling": {
                **ceiling,
                "acked_ratio": result["load"]["acked_per_s"] / ceiling["per_s"],
                "scored_ratio": result["scoring"]["scored_per_s_during_load"] / ceiling["per_s"],
            },
            "stack": {
                "ready_s": ready_s,
                "stop": stopped,
                "embedded_store_left_running": store_left,
            },
            "memory": {
                "samples": peaks.samples,
                "peak_processes": peaks.peak_processes,
                "peak_rss_total_mib": peaks.peak_rss_total / mib,
                "peak_pss_total_mib": peaks.peak_pss_total / mib,
                "peak_rss_total_during_load_mib": window.peak_rss_total / mib,
                "peak_rss_by_name_mib": {k: v / mib for k, v in by_name},
                "peak_count_by_name": peaks.peak_count_by_name,
                "timeline_s_rss_pss_mib": [
                    (t, round(r / mib, 1), None if p is None else round(p / mib, 1))
                    for t, r, p in peaks.timeline
                ],
            },
        }
    )
    return result


# --- reporting ---------------------------------------------------------------------------------


def _ms(values: Mapping[str, float]) -> str:
    return f"{values['p50']:.0f} / {values['p99']:.0f}"


def _windows(result: Mapping[str, Any], key: str) -> str:
    # (not measured before the fourteenth series: earlier results re-rendered with "report")
    windows = result.get("decisions_by_window")
    if windows is None:
        return "not measured"
    return ", ".join(f"{w[key]:,.0f}" for w in windows)


def table(result: Mapping[str, Any]) -> str:
    """The headline numbers as a Markdown table."""
    cfg, ceiling, load = result["config"], result["ceiling"], result["load"]
    check, scoring, mem = result["verification"], result["scoring"], result["memory"]
    cpu = result["cpu_during_load"]
    observed = result["receive_to_decision_observed_ms"]
    la, stop = result["machine"], result["stack"]["stop"]
    metrics: Mapping[str, float] = result.get("ingress_metrics", {})
    rows: Iterable[tuple[str, str]] = (
        ("target rate (hooks/s) x duration", f"{cfg['rate']:.0f} x {cfg['seconds']:.0f} s"),
        ("bare Sanic ceiling (req/s)", f"{ceiling['per_s']:.0f} ({ceiling['tool']})"),
        ("sent / acked (200)", f"{load['sent']} / {load['acked']}"),
        (
            "acked/s (ratio to ceiling)",
            f"{load['acked_per_s']:.0f} ({ceiling['acked_ratio']:.2f})",
        ),
        (
            "scored/s during load (ratio to ceiling)",
            f"{scoring['scored_per_s_during_load']:.0f} ({ceiling['scored_ratio']:.2f})",
        ),
        ("scored/s, first hook to last decision", f"{scoring['scored_per_s_run']:.0f}"),
        (
            "last decision after the load ended (s)",
            f"{scoring['last_decision_after_load_s']:.1f}",
        ),
        ("ack latency p50 / p99 (ms)", _ms(result["ack_latency_ms"])),
        (
            f"ack latency p50 / p99 (ms), after the first {WINDOW_S:.0f} s",
            _ms(result["ack_latency_after_warm_up_ms"]),
        ),
        (
            f"ack latency p99 (ms) per {WINDOW_S:.0f} s of load",
            ", ".join(f"{w['p99']:.0f}" for w in result["ack_latency_by_window_ms"]),
        ),
        (
            "of it, waiting in the load generator for a free connection: p50 / p99 (ms)",
            # (not measured before 249697f: results of earlier runs re-rendered with "report")
            _ms(result["send_lag_ms"]) if "send_lag_ms" in result else "not measured",
        ),
        (
            f"decided/s per {WINDOW_S:.0f} s of load",
            _windows(result, "decided_per_s"),
        ),
        (
            f"receive -> decided_at p99 (ms) per {WINDOW_S:.0f} s of load, by receive time",
            _windows(result, "receive_to_decided_p99_ms"),
        ),
        ("receive -> decided_at p50 / p99 (ms), all", _ms(result["receive_to_decided_at_ms"])),
        (
            f"receive -> decided_at p50 / p99 (ms), received after the first {WINDOW_S:.0f} s",
            _ms(result["receive_to_decided_at_after_warm_up_ms"]),
        ),
        ("receive -> decision stored p50 / p99 (ms), upper bound", _ms(observed["upper"])),
        ("receive -> decision stored p50 / p99 (ms), lower bound", _ms(observed["lower"])),
        ("sampled / observed decisions", f"{observed['sampled']} / {observed['found']}"),
        (
            "stored / acked but not stored at the end / duplicated",
            f"{check['stored']} / {check['lost']} / {check['duplicated']}",
        ),
        (
            "acked from the ingress spool / replayed into the store by the end",
            f"{metrics.get('aml_ingest_spooled_events_total', 0):.0f} / "
            f"{metrics.get('aml_ingest_replayed_events_total', 0):.0f}",
        ),
        (
            "scorable / decisions / undecided",
            f"{check['scorable']} / {check['decisions']} / {check['undecided']}",
        ),
        (
            "planted / not alerting / in no alert",
            f"{check['planted']} / {check['planted_not_alerting']} / "
            f"{check['planted_without_alert']}",
        ),
        (
            "alerting decisions (of them not planted) / alerts",
            f"{scoring['alerting_decisions']} ({scoring['alerting_not_planted']}) / "
            f"{scoring['alerts']}",
        ),
        ("verification", "ok" if check["ok"] else "FAILED"),
        (
            "peak RSS / PSS of the whole stack (MiB)",
            f"{mem['peak_rss_total_mib']:.0f} / {mem['peak_pss_total_mib']:.0f} "
            f"({mem['peak_processes']} processes)",
        ),
        (
            "CPU during the load (cores): stack / load generator / harness",
            f"{cpu['stack_cores']:.2f} / {cpu['cores_by_name'].get(LOAD_GENERATOR, 0.0):.2f} / "
            f"{cpu['cores_by_name'].get(HARNESS, 0.0):.2f} "
            f"({cpu['stack_cpu_us_per_hook']:.0f} µs of stack CPU per acknowledged hook)",
        ),
        (
            "load average (1 min): before / load start / load end",
            f"{la['loadavg_before'][0]:.1f} / {la['loadavg_load_start'][0]:.1f} / "
            f"{la['loadavg_load_end'][0]:.1f}",
        ),
        (
            "stop (SIGTERM): exit code, seconds, leftover processes",
            f"{stop['returncode']}, {stop['stop_s']:.0f} s, {len(stop['leftovers'])}",
        ),
    )
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    lines += ["", "CPU during the load per process name (cores):", "", "| process | cores |"]
    lines += ["|---|---|"]
    for name, cores in cpu["cores_by_name"].items():
        if cores >= 0.005:
            lines.append(f"| {name} | {cores:.2f} |")
    lines += ["", "Peak RSS per process name (MiB):", "", "| process | count | peak RSS |"]
    lines += ["|---|---|---|"]
    for name, value in mem["peak_rss_by_name_mib"].items():
        lines.append(f"| {name} | {mem['peak_count_by_name'][name]} | {value:.0f} |")
    return "\n".join(lines)


NOTES = """\
How to read it:

* Ack latency is measured by the load generator from each request's *scheduled* send time
  (open loop), so a stack that falls behind shows it as latency. The part of it a request
  spent in the generator waiting for a free connection (every connection with a request in
  flight: the stack's own latency times the rate is past `--connections`) is reported beside
  it as the send lag.
* `--accounts` sets how many savings accounts the hooks spread over: the fewer, the longer
  each account's history grows during the run, and features and rules cost more per
  transaction with it.
* `receive -> decided_at` covers every transaction: the stored `received_at` to the decision's
  `decided_at`, which the scoring pipeline stamps when the batch starts scoring. It is a lower
  bound of receive -> decision stored (scoring and the write are left out).
* `receive -> decision stored (sample)`: every sampled transaction's decision was polled for in
  the store while the load ran; its write happened after the last poll that missed it (lower
  bound) and before the end of the poll that found it (upper bound).
* scored/s during load counts the decisions whose `decided_at` falls before the load ended:
  a pipeline that keeps pace with a second of latency also leaves the last second's hooks
  after the end. The per-10 s rows tell the two apart: decisions made in each window, and the
  receive -> decided p99 of the hooks received in it; keeping pace means the offered rate in
  every window and a flat latency, falling behind a latency that grows window after window.
* RSS counts shared pages (Ray's object store, shared libraries) once per process; PSS splits
  them, so the PSS total is the better measure of the stack's footprint.
"""


def write(result: Mapping[str, Any], out: Path) -> None:
    """Write the JSON and a short Markdown report beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    cfg = result["config"]
    cmd = (
        f"`.venv/bin/python -m bench e2e --rate {cfg['rate']:.0f} --seconds {cfg['seconds']:.0f}"
        f" --accounts {cfg.get('accounts', '?')} --connections {cfg.get('connections', '?')}`"
    )
    text = (
        f"# End-to-end benchmark {result['date']}\n\n{cmd} on {result['machine']['cpus']} CPUs "
        f"(shared machine; load averages below).\n\n{table(result)}\n\n{NOTES}"
    )
    out.with_suffix(".md").write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bench e2e [--rate N] [--seconds S] [--label L] ...``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bare"]:
        bare_serve(args_list[1:])
        return 0
    if args_list[:1] == ["report"]:  # re-render the Markdown of a result JSON
        path = Path(args_list[1])
        write(json.loads(path.read_text()), path)
        return 0
    p = argparse.ArgumentParser(prog="python -m bench e2e", description=__doc__)
    p.add_argument("--rate", type=float, default=2000.0, help="target hooks per second")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    p.add_argument("--accounts", type=int, default=3000, help="savings accounts in the mix")
    p.add_argument("--label", default="", help="suffix of the result file names")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    p.add_argument("--planted-share", type=float, default=0.01, help="share of risky hooks")
    p.add_argument("--ceiling-seconds", type=float, default=10.0)
    p.add_argument("--drain-timeout", type=float, default=300.0, help="bound on the wait (s)")
    p.add_argument("--sample-every", type=int, default=100, help="observe every n-th hook")
    p.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = p.parse_args(args_list)
    if args.accounts < 2:
        p.error("--accounts must be at least 2")
    opts = Options(
        rate=args.rate,
        seconds=args.seconds,
        accounts=args.accounts,
        connections=args.connections,
        planted_share=args.planted_share,
        ceiling_seconds=args.ceiling_seconds,
        drain_timeout=args.drain_timeout,
        sample_every=args.sample_every,
        label=args.label,
    )
    result = run(opts)
    suffix = f"-{args.label}" if args.label else ""
    out = args.out or RESULTS / f"e2e-{datetime.now(UTC).date().isoformat()}{suffix}.json"
    write(result, out)
    print(table(result))
    print(f"\nwritten to {out}")
    clean = not result["stack"]["stop"]["leftovers"]
    return 0 if result["verification"]["ok"] and clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
