"""The end-to-end benchmark's pure parts: percentiles, count verification, the hook mix."""

from __future__ import annotations

import asyncio
import queue
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aml.settings import Settings
from bench._load import percentile
from bench.e2e import (
    HookMix,
    MemoryPeaks,
    Stack,
    Verification,
    load_result,
    parse_wrk,
    process_label,
    pss_due,
    summary,
    verify,
)
from serve.ingest.events import ParseOptions
from serve.ingest.fineract import parse_fineract
from storage.embedded import LATE_BIND_PORTS, free_port_for_later


def _mix(total: int = 20_000, share: float = 0.01) -> HookMix:
    return HookMix.replaying(
        secret="s" * 40, port=8000, total=total, day=date(2026, 11, 27), planted_share=share
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    values.reverse()
    assert percentile(values, 0.5) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0


def test_summary_of_nothing_is_nan_not_zero() -> None:
    empty = summary([])
    assert empty["n"] == 0 and empty["p99"] != empty["p99"]  # NaN: no data is not 0 ms
    assert summary([3.0, 1.0, 2.0])["max"] == 3.0


def _clean(**changes: object) -> Verification:
    ids = [f"t{i}" for i in range(10)]
    args: dict[str, object] = {
        "acked_ids": ids,
        "stored": [(i, f"key-{i}") for i in ids],
        "scorable_ids": ids,
        "decision_ids": ids,
        "alerting_ids": ["t0", "t1", "t5"],
        "alerted_ids": ["t0", "t1", "t5"],
        "planted_ids": ["t0", "t1"],
    }
    args.update(changes)
    return verify(**args)  # type: ignore[arg-type]


def test_verify_accepts_a_run_where_everything_arrived_once() -> None:
    check = _clean()
    assert check.ok
    assert (check.acked, check.stored, check.decisions, check.planted) == (10, 10, 10, 2)
    assert check.alerting_decisions == 3


def test_verify_counts_a_lost_event() -> None:
    ids = [f"t{i}" for i in range(10)]
    check = _clean(stored=[(i, f"key-{i}") for i in ids[:9]], scorable_ids=ids[:9])
    assert not check.ok and check.lost == 1 and check.orphan_decisions == 1


def test_verify_counts_a_duplicated_event() -> None:
    ids = [f"t{i}" for i in range(10)]
    stored = [(i, f"key-{i}") for i in ids] + [("t10", "key-t3")]  # same hook stored twice
    check = _clean(stored=stored, acked_ids=[*ids, "t10"], scorable_ids=ids)
    assert not check.ok and check.duplicated == 1 and check.lost == 0


def test_verify_counts_undecided_and_double_decisions() -> None:
    ids = [f"t{i}" for i in range(10)]
    undecided = _clean(decision_ids=ids[:8])
    assert not undecided.ok and undecided.undecided == 2
    doubled = _clean(decision_ids=[*ids, "t4"])
    assert not doubled.ok and doubled.duplicate_decisions == 1


def test_verify_requires_every_planted_hook_to_alert_and_be_in_an_alert() -> None:
    quiet = _clean(alerting_ids=["t1"], alerted_ids=["t1"])
    assert not quiet.ok
    assert quiet.planted_not_alerting == 1 and quiet.planted_without_alert == 1
    ungrouped = _clean(alerted_ids=["t1"])
    assert not ungrouped.ok
    assert ungrouped.planted_not_alerting == 0 and ungrouped.planted_without_alert == 1


def test_hook_mix_plants_the_configured_share_and_covers_every_kind() -> None:
    mix = _mix(share=0.02)
    hooks = [mix.hook(n) for n in range(1, 20_001)]
    planted = [h for h in hooks if h.planted]
    assert 0.015 < len(planted) / len(hooks) < 0.025
    assert {h.planted for h in planted} == {"large", "structuring"}
    assert all(h.amount >= 500_000 for h in planted if h.planted == "large")
    assert all(450_000 <= h.amount < 500_000 for h in planted if h.planted == "structuring")
    # Ordinary hooks stay below the structuring band, so they cannot pass for planted ones.
    assert all(h.amount < 450_000 for h in hooks if not h.planted)
    kinds = Counter(h.kind for h in hooks if not h.planted)
    assert set(kinds) == {
        "deposit",
        "withdrawal",
        "transfer",
        "loan_repayment",
        "loan_disbursement",
    }
    assert kinds["deposit"] > kinds["transfer"] > kinds["loan_disbursement"]
    assert len({h.dedupe_key for h in hooks}) == len(hooks)
    assert all(h.counterparty != h.account for h in hooks if h.kind == "transfer")
    assert mix.hook(1234) == _mix(share=0.02).hook(1234)  # same in every process


def test_hook_mix_requests_parse_to_the_transactions_the_harness_expects() -> None:
    mix = _mix()
    options = ParseOptions.from_settings(Settings())
    seen = set()
    for n in range(1, 400):
        hook = mix.hook(n)
        head, body = mix(n).split(b"\r\n\r\n", 1)
        request_line, *header_lines = head.decode().split("\r\n")
        assert request_line == f"POST /webhooks/fineract/{mix.secret}/ HTTP/1.1"
        headers = dict(line.split(": ", 1) for line in header_lines)
        assert int(headers["Content-Length"]) == len(body)
        event = parse_fineract(
            headers,
            body,
            content_type=headers["Content-Type"],
            received_at=datetime(2026, 11, 28, 9, tzinfo=UTC),
            options=options,
        )
        tx = event.transaction
        assert tx is not None and event.dedupe_key == hook.dedupe_key
        assert tx.id == hook.transaction_id and tx.amount_minor == hook.amount
        # The replayed business day: 08:00 local (07:00 UTC) onwards, one hook after the other.
        assert tx.occurred_at == mix.day_start + timedelta(seconds=(n - 1) * mix.spacing_s)
        seen.add(hook.kind)
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("cmdline", "name", "label"),
    [
        (["/v/bin/python", "/v/bin/fineract-aml", "run"], "python", "fineract-aml run"),
        (
            ["/v/bin/python", "-m", "fineract_aml.cli", "serve-ingress"],
            "python",
            "fineract-aml serve-ingress",
        ),
        (["/v/bin/python", "-m", "nx_27017.nx_27017", "--port", "1"], "python", "nx-27017"),
        (
            ["ray::ServeReplica:scoring:RuleScorer"],
            "ray::ServeRepl",
            "ray::ServeReplica:scoring:RuleScorer",
        ),
        (
            [
                "ray::SERVE_REPLICA::scoring#RuleScorer#jt0w:ServeReplica:scoring:RuleScorer.__init__"
            ],
            "ray::SERVE_REP",
            "ray::ServeReplica:scoring:RuleScorer",
        ),
        (
            ["ray::aml-state-default-1-of-2:StateShard.__init__"],
            "ray::aml-state",
            "ray::StateShard",
        ),
        (["ray::StateShard.observe"], "ray::StateShard", "ray::StateShard"),
        (
            ["/v/bin/python", "-u", "/v/ray/_private/log_monitor.py", "--x"],
            "python",
            "log_monitor.py",
        ),
        (["/v/lib/ray/core/src/ray/raylet/raylet", "--node-ip"], "raylet", "raylet"),
        ([], "gcs_server", "gcs_server"),
    ],
)
def test_processes_are_reported_under_readable_names(
    cmdline: list[str], name: str, label: str
) -> None:
    assert process_label(cmdline, name) == label


def test_wrk_report_is_read_or_refused() -> None:
    report = "Running 10s test\n  32 connections\nRequests/sec:   3912.45\nTransfer/sec: 1MB\n"
    assert parse_wrk(report) == pytest.approx(3912.45)
    with pytest.raises(ValueError):
        parse_wrk("connection refused")


def test_ack_latencies_are_summarised_per_window_and_after_warm_up() -> None:
    from bench.e2e import WINDOW_S, after_warm_up, windowed

    sent_at = [0.0, 1.0, WINDOW_S + 0.5, WINDOW_S + 1.0, 2 * WINDOW_S + 3.0]
    latencies = [0.5, 0.3, 0.010, 0.020, 0.030]
    windows = windowed(latencies, sent_at)
    assert [w["from_s"] for w in windows] == [0.0, WINDOW_S, 2 * WINDOW_S]
    assert [w["n"] for w in windows] == [2, 2, 1]
    assert windows[0]["max"] == 500.0 and windows[2]["max"] == 30.0
    steady = after_warm_up(latencies, sent_at)
    assert steady["n"] == 3 and steady["max"] == 30.0


def test_decisions_are_counted_per_window_with_their_latency_by_receive_time() -> None:
    import math

    from bench.e2e import WINDOW_S, decisions_by_window

    t0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
    start = t0.timestamp()
    received, decided = {}, {}
    # Window 0: 20 hooks decided 0.1 s after arriving; window 1: 10 hooks received, decided
    # 2 s later (the last one after the load ends at 2 windows); window 2 was never reached.
    for i in range(20):
        received[f"a{i}"] = t0 + timedelta(seconds=i * 0.4)
        decided[f"a{i}"] = received[f"a{i}"] + timedelta(seconds=0.1)
    for i in range(10):
        received[f"b{i}"] = t0 + timedelta(seconds=WINDOW_S + i * 0.9)
        decided[f"b{i}"] = received[f"b{i}"] + timedelta(seconds=2)
    decided["unknown"] = t0 + timedelta(seconds=1)  # decided, its receipt not read: counted
    windows = decisions_by_window(received, decided, start, start + 2 * WINDOW_S)
    assert [w["from_s"] for w in windows] == [0.0, WINDOW_S]
    assert windows[0]["decided_per_s"] == 21 / WINDOW_S
    # b0..b8 are decided within window 1 (b9 after the end); none of the a's is.
    assert windows[1]["decided_per_s"] == 9 / WINDOW_S
    assert round(windows[0]["receive_to_decided_p99_ms"]) == 100
    assert round(windows[1]["receive_to_decided_p99_ms"]) == 2000
    # A load that ended mid-window: its last window's rate is over the part that ran.
    short = decisions_by_window(received, decided, start, start + 1.6 * WINDOW_S)
    assert short[1]["decided_per_s"] == pytest.approx(5 / (0.6 * WINDOW_S))  # b0..b4 by then
    # One that ran a little past its last window: that window takes the rest.
    late = decisions_by_window(received, decided, start, start + 2.03 * WINDOW_S)
    assert len(late) == 2 and late[1]["decided_per_s"] == pytest.approx(10 / (1.03 * WINDOW_S))
    assert math.isnan(
        decisions_by_window({}, {}, start, start + WINDOW_S)[0]["receive_to_decided_p99_ms"]
    )


class _Generator:
    """What ``load_result`` asks of the generator's process."""

    def __init__(self, *, alive: bool, exitcode: int | None = None) -> None:
        self._alive = alive
        self.exitcode = exitcode

    def is_alive(self) -> bool:
        return self._alive


def _stack(tmp_path: Path, *, running: bool) -> Stack:
    code = "import time; time.sleep(60)" if running else "print('api exited with code 1')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    if not running:
        proc.wait()
    log = tmp_path / "run.log"
    log.write_text("OSError: [Errno 98] Address already in use\n")
    return Stack(proc, "t", tmp_path, log, 1, "s")


def test_the_load_result_is_returned_once_the_generator_has_put_it(tmp_path: Path) -> None:
    results: queue.Queue[dict[str, int]] = queue.Queue()
    results.put({"acked": 3})
    stack = _stack(tmp_path, running=True)
    try:
        assert load_result(results, _Generator(alive=False, exitcode=0), stack, 30) == {"acked": 3}
    finally:
        stack.proc.kill()
        stack.proc.wait()


def test_a_dead_generator_or_stack_ends_the_wait_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    stack = _stack(tmp_path, running=True)
    try:
        with pytest.raises(RuntimeError, match=r"generator exited \(code 1\)"):
            load_result(queue.Queue(), _Generator(alive=False, exitcode=1), stack, 600)
    finally:
        stack.proc.kill()
        stack.proc.wait()
    with pytest.raises(RuntimeError, match=r"(?s)run exited \(code 0\).*Address already in use"):
        load_result(queue.Queue(), _Generator(alive=True), _stack(tmp_path, running=False), 600)
    assert time.monotonic() - started < 60  # not the 600 s it was given


def test_ports_for_later_come_from_a_range_nothing_picks_by_itself() -> None:
    port = free_port_for_later()
    assert port in LATE_BIND_PORTS
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free indeed


def test_pss_is_read_at_its_interval_or_when_rss_has_grown() -> None:
    mib = 1 << 20
    assert pss_due(float("inf"), 0, 10.0, 64 * mib)  # the first sample
    assert not pss_due(9.9, 63 * mib, 10.0, 64 * mib)
    assert pss_due(10.0, 0, 10.0, 64 * mib)
    assert pss_due(0.5, 64 * mib, 10.0, 64 * mib)
    assert not pss_due(0.5, -500 * mib, 10.0, 64 * mib)  # shrinking never asks


def test_memory_peaks_take_pss_only_from_samples_that_read_it() -> None:
    peaks = MemoryPeaks()
    peaks.add(0.0, {"a": (1, 100, 60), "b": (2, 50, 40)})
    peaks.add(1.0, {"a": (1, 300, None), "b": (2, 50, None)})  # RSS only
    peaks.add(2.0, {"a": (1, 120, 70), "b": (2, 50, None)})  # one process unread: no total
    assert peaks.peak_rss_total == 350 and peaks.peak_pss_total == 100
    assert peaks.timeline == [(0.0, 150, 100), (1.0, 350, None), (2.0, 170, None)]
    assert peaks.peak_rss_by_name == {"a": 300, "b": 50} and peaks.samples == 3


def test_cpu_during_the_load_is_per_process_name_in_cores() -> None:
    from bench.e2e import cpu_during

    start = {
        1: ("raylet", 10.0),
        2: ("ray::RuleScorer", 5.0),
        3: ("gone", 1.0),
        6: ("ray::IDLE", 30.0),
    }
    end = {
        1: ("raylet", 11.0),
        2: ("ray::RuleScorer", 9.0),
        4: ("ray::RuleScorer", 1.0),  # a replica started during the load counts from zero
        6: ("ray::RuleScorer", 31.0),  # a worker renamed: its CPU during the load, not since
    }
    cpu = cpu_during(start, end, seconds=10.0, extra={"load generator": 4.0})
    assert cpu["cores_by_name"] == {
        "ray::RuleScorer": pytest.approx(0.6),
        "load generator": pytest.approx(0.4),
        "raylet": pytest.approx(0.1),
    }
    assert list(cpu["cores_by_name"]) == ["ray::RuleScorer", "load generator", "raylet"]
    assert cpu["cores"] == pytest.approx(1.1)


def test_a_cpu_snapshot_names_and_reads_live_processes() -> None:
    import os

    from bench.e2e import cpu_snapshot

    snap = cpu_snapshot({os.getpid(): "me", 2**22 + 12345: None})  # the second does not exist
    assert list(snap) == [os.getpid()]
    name, seconds = snap[os.getpid()]
    assert name == "me" and seconds > 0


Reply = Callable[[bytes, asyncio.StreamWriter, Callable[[], None]], Awaitable[bool]]
_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _load_against(
    reply: Reply,
    rate: float,
    seconds: float,
    connections: int,
    request: Callable[[int], bytes] = lambda n: _GET,
) -> dict[str, Any]:
    """The load generator's result against a loopback server that answers each request head
    with ``reply(head, writer, gone)``: False closes that connection, ``gone()`` stops the
    server and drops every connection."""
    from bench._load import generate

    async def run() -> dict[str, Any]:
        writers: list[asyncio.StreamWriter] = []
        server: asyncio.Server | None = None

        def gone() -> None:
            assert server is not None
            server.close()
            for w in writers:
                w.close()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if not await reply(head, writer, gone):
                        writer.close()
                        return
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.wait_for(generate(port, rate, seconds, connections, request), 30)
        finally:
            server.close()

    return asyncio.run(run())


def test_the_load_generator_reports_its_answers_and_its_own_cpu() -> None:
    """Open-loop requests to a loopback server; the result counts the answers and carries the
    generator's own CPU over the run (the harness cannot read it once the process has exited)."""

    async def ok(head: bytes, writer: asyncio.StreamWriter, gone: Callable[[], None]) -> bool:
        writer.write(_OK)
        return True

    result = _load_against(ok, 200.0, 0.5, 4)
    assert result["sent"] == 100 and result["statuses"] == {"200": 100}
    lags = result["send_lags"]
    assert isinstance(lags, list) and len(lags) == 100 and min(lags) >= 0.0
    cpu, elapsed = result["cpu_s"], result["elapsed_s"]
    assert isinstance(cpu, float) and isinstance(elapsed, float)
    assert 0.0 < cpu <= elapsed + 0.05


def test_the_load_generator_fails_lost_and_refused_requests_and_goes_on() -> None:
    """A connection closed with a request in flight fails that request (transport error), an
    answer other than 200 fails its request, a garbled answer closes its connection; the other
    requests are answered over new connections, and every request is accounted for once."""
    seen = 0

    async def mixed(head: bytes, writer: asyncio.StreamWriter, gone: Callable[[], None]) -> bool:
        nonlocal seen
        seen += 1
        n = int(head.split(b"/", 2)[1].split(b" ")[0])
        if n % 10 == 3:
            return False  # the server drops the connection, no answer
        if n % 10 == 5:
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        elif n % 10 == 7:
            writer.write(b"garbage\r\n\r\n")
        else:
            writer.write(_OK)
        return True

    result = _load_against(
        mixed, 400.0, 0.25, 3, lambda n: f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert result["sent"] == 100 and seen == 100
    assert result["statuses"] == {"200": 70, "503": 10}
    assert result["failed"] == sorted(n for n in range(1, 101) if n % 10 in (3, 5, 7))
    assert len(result["errors"]) == 20  # 10 dropped, 10 garbled
    latencies, sent_at = result["latencies"], result["sent_at"]
    assert isinstance(latencies, list) and isinstance(sent_at, list)
    assert len(latencies) == len(sent_at) == 80


def test_requests_waiting_for_a_busy_connection_are_late_and_their_latency_says_so() -> None:
    """One connection and a server taking 20 ms per answer carry 50 requests/s: offered 200/s,
    the later requests leave the generator late (send lag) and their latency, measured from the
    schedule, includes that wait (no coordinated omission)."""

    async def slow(head: bytes, writer: asyncio.StreamWriter, gone: Callable[[], None]) -> bool:
        await asyncio.sleep(0.02)
        writer.write(_OK)
        return True

    result = _load_against(slow, 200.0, 0.1, 1)
    lags, latencies = result["send_lags"], result["latencies"]
    assert isinstance(lags, list) and isinstance(latencies, list)
    assert result["statuses"] == {"200": 20} and len(lags) == 20
    assert lags[0] < 0.05 and max(lags) > 0.15  # the 20th waits for 19 answers of 20 ms
    # Answers come back in send order over one connection: each latency covers its lag.
    assert all(lat >= lag + 0.015 for lat, lag in zip(latencies, lags, strict=True))


def test_the_load_generator_ends_when_the_server_goes_away() -> None:
    """A server that stops listening and drops its connections midway: every request after
    that fails (no connection can be opened), none waits forever, each is counted once."""
    answered = 0

    async def leaving(head: bytes, writer: asyncio.StreamWriter, gone: Callable[[], None]) -> bool:
        nonlocal answered
        answered += 1
        if answered == 20:  # gone: no more connections, the open ones dropped
            gone()
            return False
        writer.write(_OK)
        return True

    result = _load_against(leaving, 200.0, 0.5, 3)
    statuses, failed = result["statuses"], result["failed"]
    assert isinstance(statuses, dict) and isinstance(failed, list)
    assert statuses == {"200": 19}
    assert len(failed) == 100 - 19 and len(set(failed)) == len(failed)
    assert result["errors"]


def test_a_report_names_the_account_mix_and_renders_runs_before_the_send_lag(
    tmp_path: Path,
) -> None:
    """The Markdown names the accounts and connections of the run (they change what it
    measures), and a result recorded before the send lag existed still renders."""
    import json

    from bench.e2e import write

    old = Path(__file__).parents[2] / "bench/results/e2e-2026-11-29-s12-review-rate1000.json"
    result = json.loads(old.read_text())
    assert "send_lag_ms" not in result
    write(result, tmp_path / "old.json")
    text = (tmp_path / "old.md").read_text()
    assert "--accounts 3000 --connections 256" in text
    assert "free connection: p50 / p99 (ms) | not measured |" in text
