"""Ingress throughput and ack latency under a steady Fineract hook load.

Three processes: the embedded store, the ingress (a real Sanic server on loopback, one worker,
access log off) and a load generator posting Fineract-shaped savings deposit hooks with unique
transaction ids over keep-alive HTTP/1.1 connections at a fixed target rate (open loop: requests
are scheduled on the clock, not after the previous answer). It reports acked events per second,
ack latency percentiles (measured from the scheduled send time, so a generator or server that
falls behind shows up as latency), errors, and checks that the store holds exactly one
transaction per acknowledged event.

Run: ``.venv/bin/python -m bench ingest --rate 1000 --seconds 20``. Results are written to
``bench/results/ingest-<date>.json`` (and ``.md``) and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from bench._load import generator_process, percentile, wait_ready

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-" + "x" * 40
DB_NAME = "bench_ingest"


# --- the ingress process ----------------------------------------------------------------------


def serve(argv: Sequence[str]) -> None:
    """Entry of the ingress process (``python -m bench.ingest serve ...``)."""
    from pydantic import SecretStr

    from aml.settings import Settings
    from serve.ingress.app import create_app

    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--batch-max", type=int, default=256)
    p.add_argument("--batch-wait-ms", type=float, default=4.0)
    args = p.parse_args(argv)
    settings = Settings(
        env="test",
        data_dir=args.data_dir,
        mongodb_uri=SecretStr(args.uri),
        mongodb_db=DB_NAME,
        fineract_webhook_secrets=SecretStr(SECRET),
        generic_webhook_secret=SecretStr("g" * 40),
        jwt_secret=SecretStr("j" * 48),
        ingest_batch_max=args.batch_max,
        ingest_batch_wait_ms=args.batch_wait_ms,
        log_level="WARNING",
    )
    app = create_app(settings, name="bench-ingress")
    app.run(
        host="127.0.0.1",
        port=args.port,
        single_process=True,
        access_log=False,
        motd=False,
        debug=False,
    )


# --- the load generator process ---------------------------------------------------------------


def _body(n: int) -> bytes:
    return (
        '{"createdByName":"mifos","request":{"locale":"en","dateFormat":"dd MMMM yyyy",'
        f'"transactionDate":"15 January 2026","transactionAmount":{1000 + n % 5000}.5,'
        '"paymentTypeId":1.0},"clientId":7,"createdBy":1,"officeId":1,'
        '"entityName":"SAVINGSACCOUNT","response":{"clientId":7,'
        f'"savingsId":{10 + n % 500},"resourceId":{n},"changes":{{"paymentTypeId":1}}}},'
        '"createdByFullName":"App Administrator","actionName":"DEPOSIT",'
        '"timestamp":"2026-01-15T10:20:31.482913Z"}'
    ).encode()


def _request(port: int, n: int) -> bytes:
    body = _body(n)
    head = (
        f"POST /webhooks/fineract/{SECRET}/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "X-Fineract-Entity: SAVINGSACCOUNT\r\n"
        "X-Fineract-Action: DEPOSIT\r\n"
        "Fineract-Platform-TenantId: default\r\n"
        "Content-Type: application/json; charset=UTF-8\r\n"
        "User-Agent: okhttp/4.12.0\r\n"
        "Connection: Keep-Alive\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- orchestration ----------------------------------------------------------------------------


def _scrape(url: str) -> dict[str, float]:
    """Group-commit figures from the ingress's own metrics (loopback may read them)."""
    wanted = {
        "aml_ingest_batch_size_sum",
        "aml_ingest_batch_size_count",
        "aml_ingest_store_write_seconds_sum",
        "aml_ingest_store_write_seconds_count",
        "aml_ingest_spooled_events_total",
        "aml_ingest_store_overloads_total",
    }
    values: dict[str, float] = {}
    try:
        text = httpx.get(url, timeout=5.0).text
    except httpx.HTTPError:
        return values
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


def run(
    *,
    rate: float,
    seconds: float,
    connections: int,
    batch_max: int,
    batch_wait_ms: float,
) -> dict[str, Any]:
    """Run one benchmark and return its result (without the raw latencies)."""
    from storage import embedded

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        data_dir = Path(tmp)
        server = embedded.start(data_dir / "store")
        port = embedded.free_port()
        cmd = [
            sys.executable, "-m", "bench.ingest", "serve",
            "--uri", server.uri, "--port", str(port), "--data-dir", str(data_dir / "ingress"),
            "--batch-max", str(batch_max), "--batch-wait-ms", str(batch_wait_ms),
        ]  # fmt: skip
        ingress = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", ingress)
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            gen = ctx.Process(
                target=generator_process,
                args=(port, rate, seconds, connections, partial(_request, port), out),
            )
            gen.start()
            load = out.get(timeout=seconds * 10 + 120)
            gen.join()
            acked = load["statuses"].get("200", 0)
            # Events acked from the spool during overload reach the store when the drainer
            # catches up: wait for it (bounded) and report how long it took.
            client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
            drain_started = time.monotonic()
            stored = client[DB_NAME]["transactions"].count_documents({})
            while stored < acked and time.monotonic() - drain_started < 300:
                time.sleep(0.5)
                stored = client[DB_NAME]["transactions"].count_documents({})
            drain_s = time.monotonic() - drain_started
            time.sleep(0.5)
            server_metrics = _scrape(f"http://127.0.0.1:{port}/metrics")
            logged = client[DB_NAME]["ingest_log"].count_documents({})
            client.close()
        finally:
            ingress.terminate()
            ingress.wait(timeout=30)
            embedded.stop(data_dir / "store")

    lat_ms = [v * 1000 for v in load["latencies"]]
    return {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # The box is shared: the load average before the run says how much CPU others used.
            "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg()),
        },
        "config": {
            "target_rate": rate,
            "seconds": seconds,
            "connections": connections,
            "batch_max": batch_max,
            "batch_wait_ms": batch_wait_ms,
            "workers": 1,
            "access_log": False,
        },
        "sent": load["sent"],
        "acked": acked,
        "acked_per_s": acked / load["elapsed_s"] if load["elapsed_s"] else 0.0,
        "statuses": load["statuses"],
        "errors": len(load["errors"]) + (load["sent"] - sum(load["statuses"].values())),
        "latency_ms": {
            "p50": percentile(lat_ms, 0.50),
            "p90": percentile(lat_ms, 0.90),
            "p99": percentile(lat_ms, 0.99),
            "max": max(lat_ms) if lat_ms else float("nan"),
            "mean": statistics.fmean(lat_ms) if lat_ms else float("nan"),
        },
        "group_commit": {
            "batches": server_metrics.get("aml_ingest_batch_size_count", 0.0),
            "mean_batch_size": server_metrics.get("aml_ingest_batch_size_sum", 0.0)
            / max(server_metrics.get("aml_ingest_batch_size_count", 0.0), 1.0),
            "mean_store_write_ms": 1000
            * server_metrics.get("aml_ingest_store_write_seconds_sum", 0.0)
            / max(server_metrics.get("aml_ingest_store_write_seconds_count", 0.0), 1.0),
            "spooled_events": server_metrics.get("aml_ingest_spooled_events_total", 0.0),
            "store_overloads": server_metrics.get("aml_ingest_store_overloads_total", 0.0),
            "drain_after_load_s": drain_s,
        },
        "stored_transactions": stored,
        "ingest_log_records": logged,
        "stored_equals_acked": stored == acked,
    }


def table(result: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    lat = result["latency_ms"]
    cfg = result["config"]
    rows = [
        ("target rate (events/s)", f"{cfg['target_rate']:.0f}"),
        ("duration (s)", f"{cfg['seconds']:.0f}"),
        ("connections", str(cfg["connections"])),
        ("batch max / wait", f"{cfg['batch_max']} / {cfg['batch_wait_ms']} ms"),
        ("sent", str(result["sent"])),
        ("acked (200)", str(result["acked"])),
        ("acked/s", f"{result['acked_per_s']:.1f}"),
        ("errors", str(result["errors"])),
        ("ack latency p50 (ms)", f"{lat['p50']:.1f}"),
        ("ack latency p90 (ms)", f"{lat['p90']:.1f}"),
        ("ack latency p99 (ms)", f"{lat['p99']:.1f}"),
        ("ack latency max (ms)", f"{lat['max']:.1f}"),
        ("mean batch size", f"{result['group_commit']['mean_batch_size']:.1f}"),
        ("mean store write per batch (ms)", f"{result['group_commit']['mean_store_write_ms']:.1f}"),
        ("events acked from the spool", f"{result['group_commit']['spooled_events']:.0f}"),
        ("store catch-up after load (s)", f"{result['group_commit']['drain_after_load_s']:.1f}"),
        (
            "load average before/after",
            f"{result['machine']['loadavg_before'][0]:.1f} / "
            f"{result['machine']['loadavg_after'][0]:.1f}",
        ),
        ("stored transactions", str(result["stored_transactions"])),
        ("stored == acked", str(result["stored_equals_acked"])),
    ]
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bench ingest [--rate N] [--seconds S] ...``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        serve(args_list[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0, help="target events per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    p.add_argument("--batch-max", type=int, default=256)
    p.add_argument("--batch-wait-ms", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = p.parse_args(args_list)
    result = run(
        rate=args.rate,
        seconds=args.seconds,
        connections=args.connections,
        batch_max=args.batch_max,
        batch_wait_ms=args.batch_wait_ms,
    )
    out = args.out or RESULTS / f"ingest-{datetime.now(UTC).date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    out.with_suffix(".md").write_text(f"# Ingest benchmark {result['date']}\n\n{text}\n")
    print(text)
    print(f"\nwritten to {out}")
    return 0 if result["stored_equals_acked"] and result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
