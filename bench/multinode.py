"""Scale-out proof on one machine: two Ray nodes, a scorer scaled under load, a node lost.

What it does, in order:

1. starts the embedded store, a Ray head node (``--num-cpus=1 --resources={"head": 1}``) and a
   second Ray node (``--num-cpus=1 --resources={"node2": 1}``), each with its own temp dir,
   ports and a fresh cluster token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), so nothing is
   shared with other Ray instances on the machine;
2. applies ``deploy/serve_config.yaml`` with ``fineract-aml deploy-serve``, every deployment
   pinned to the head except ``XGBoostScorer``, pinned to node2 through
   ``ray_actor_options.resources``;
3. starts ``fineract-aml serve-ingress`` joined through Ray Client (``ray://``, the address a
   process without a local raylet must use) and posts Fineract savings-deposit hooks to it at a
   fixed rate;
4. under that load, scales ``XGBoostScorer`` from 1 to 2 replicas by re-applying the config,
   then kills node2 (every process started for it, SIGKILL) and keeps posting;
5. stops the load and checks that every acknowledged event is a stored transaction and that every
   stored transaction gets a decision (the ingress's pending sweeper retries what failed).

Everything it started is stopped at the end, found by an environment marker that only its own
processes carry: it never runs ``ray stop``, which would stop every Ray instance on the machine.

Run: ``.venv/bin/python -m bench multinode`` (about five minutes). Results go to
``bench/results/multinode-<date>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._load import marked_pids as _marked_pids

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = "bench-multinode-" + "x" * 32
DB_NAME = "bench_multinode"
MARKER = "AML_BENCH_MULTINODE"


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


def free_port() -> int:
    from storage.embedded import free_port as pick

    return pick()


# --- processes ----------------------------------------------------------------------------------


def marked_pids(tag: str) -> list[int]:
    """Processes whose environment carries ``MARKER=tag`` (this run's, and only those)."""
    return _marked_pids(MARKER, tag)


def kill_marked(tag: str, sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to every process carrying ``tag``; returns how many were signalled."""
    n = 0
    for pid in marked_pids(tag):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            n += 1
    return n


@dataclass
class RayNode:
    """One ``ray start --block`` of this benchmark."""

    tag: str
    temp_dir: Path
    metrics_port: int
    proc: subprocess.Popen[bytes]

    def kill(self) -> int:
        """SIGKILL every process of this node (raylet, GCS, workers, replicas)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        n = kill_marked(self.tag)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return n

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL what is left after ``grace_s``."""
        kill_marked(self.tag, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        deadline = time.monotonic() + grace_s
        while marked_pids(self.tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.kill()


def start_ray_node(
    *,
    tag: str,
    root: Path,
    env: dict[str, str],
    resources: dict[str, float],
    head_port: int | None = None,
    gcs_port: int | None = None,
    client_port: int | None = None,
) -> RayNode:
    """``ray start`` (head when ``gcs_port`` is given, else joining ``head_port``)."""
    temp_dir = root / tag
    temp_dir.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    cmd = [
        str(BIN / "ray"),
        "start",
        "--block",
        "--num-cpus=1",
        f"--resources={json.dumps(resources)}",
        f"--temp-dir={temp_dir}",
        "--node-ip-address=127.0.0.1",
        f"--metrics-export-port={metrics_port}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--object-store-memory=150000000",
        "--disable-usage-stats",
    ]
    if gcs_port is not None:
        cmd += [
            "--head",
            f"--port={gcs_port}",
            f"--ray-client-server-port={client_port}",
            "--include-dashboard=false",
        ]
    else:
        cmd.append(f"--address=127.0.0.1:{head_port}")
    node_env = {**env, MARKER: tag}
    out = (temp_dir / "ray-start.log").open("wb")
    proc = subprocess.Popen(cmd, env=node_env, stdout=out, stderr=subprocess.STDOUT)
    return RayNode(tag=tag, temp_dir=temp_dir, metrics_port=metrics_port, proc=proc)


def wait_port(
    port: int, timeout_s: float = 60.0, *, alive: subprocess.Popen[bytes] | None = None
) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"process exited with {alive.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


# --- the Serve config ---------------------------------------------------------------------------


def bench_config(replicas: int, state_group: str) -> dict[str, Any]:
    """The shipped config, pinned: XGBoostScorer to node2, everything else to the head."""
    cfg: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "serve_config.yaml").read_text())
    app = cfg["applications"][0]
    app["args"]["state_group"] = state_group
    for dep in app["deployments"]:
        opts = dep.setdefault("ray_actor_options", {})
        opts["num_cpus"] = 0.1
        if dep["name"] == "XGBoostScorer":
            opts["resources"] = {"node2": 0.4}
            dep["num_replicas"] = replicas
        else:
            opts["resources"] = {"head": 0.01}
        if dep["name"] == "ScoringPipeline":
            # Give up on a lost scorer quickly: the decision then records it as unavailable.
            # While a scorer has no replica at all, every pipeline call waits this long (Serve
            # queues requests for a deployment without replicas), and the ingress runs four
            # calls at a time: the timeout bounds the scoring rate of the degraded cluster.
            dep["user_config"]["scorer_timeout_s"] = 2
            dep["user_config"]["scorer_retries"] = 0
    return cfg


def deploy(config: dict[str, Any], path: Path, env: dict[str, str], address: str) -> float:
    """``fineract-aml deploy-serve`` with ``config``; returns the seconds it took."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    subprocess.run(
        [str(BIN / "fineract-aml"), "deploy-serve", "--config", str(path), "--address", address],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    return time.monotonic() - started


def replica_nodes(deployment: str, app: str = "scoring") -> list[str]:
    """Node resource tag (``head``/``node2``) of each running replica of ``deployment``."""
    import ray

    by_id = {
        n["NodeID"]: ("node2" if "node2" in n["Resources"] else "head")
        for n in ray.nodes()  # type: ignore[no-untyped-call]
        if n["Alive"]
    }
    out: list[str] = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if name.startswith("SERVE_REPLICA") and f"{app}#{deployment}#" in name:
            handle = ray.get_actor(name, namespace=actor["namespace"])
            try:
                ref: Any = handle.__ray_call__.remote(
                    lambda _self: ray.get_runtime_context().get_node_id()
                )
                node_id = str(ray.get(ref, timeout=10))
            except Exception:
                continue
            out.append(by_id.get(node_id, "dead"))
    return sorted(out)


# --- the load ------------------------------------------------------------------------------------


def hook_body(n: int) -> bytes:
    # One in fifty is large enough to raise an alert.
    amount = 9_000_000 if n % 50 == 0 else 1000 + n % 5000
    return (
        '{"createdByName":"mifos","request":{"locale":"en","dateFormat":"dd MMMM yyyy",'
        f'"transactionDate":"15 January 2026","transactionAmount":{amount}.5,'
        '"paymentTypeId":1.0},"clientId":7,"createdBy":1,"officeId":1,'
        '"entityName":"SAVINGSACCOUNT","response":{"clientId":7,'
        f'"savingsId":{10 + n % 200},"resourceId":{n},"changes":{{"paymentTypeId":1}}}},'
        '"createdByFullName":"App Administrator","actionName":"DEPOSIT",'
        '"timestamp":"2026-01-15T10:20:31.482913Z"}'
    ).encode()


HEADERS = {
    "X-Fineract-Entity": "SAVINGSACCOUNT",
    "X-Fineract-Action": "DEPOSIT",
    "Fineract-Platform-TenantId": "default",
    "Content-Type": "application/json; charset=UTF-8",
}


@dataclass
class Load:
    """Open-loop load: one request every ``1/rate`` s, answers recorded per phase."""

    base: str
    rate: float
    phase: str = "steady"
    acked: dict[str, str] = field(default_factory=dict)  # transaction id -> phase
    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    spooled: int = 0
    sent: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=self.base, timeout=10, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            while not stop.is_set():
                due = start + self.sent / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(self._one(http, self.sent, due, self.phase))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
            await asyncio.gather(*tasks)

    async def _one(self, http: httpx.AsyncClient, n: int, due: float, phase: str) -> None:
        try:
            resp = await http.post(
                f"/webhooks/fineract/{SECRET}/", content=hook_body(100_000 + n), headers=HEADERS
            )
            ok = resp.status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            self.errors[phase] = self.errors.get(phase, 0) + 1
            return
        body = resp.json()
        self.latency.setdefault(phase, []).append(time.monotonic() - due)
        self.spooled += bool(body.get("spooled"))
        if body.get("transaction_id"):
            self.acked[body["transaction_id"]] = phase


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def add(self, key: str, value: object) -> None:
        self.rows.append((key, str(value)))
        log(f"{key}: {value}")

    def note(self, text: str) -> None:
        self.events.append(f"{datetime.now(UTC):%H:%M:%S} {text}")
        log(text)


async def readyz(base: str) -> str:
    """``/readyz`` in one line: status code, each component, and the Serve deployments."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        resp = await http.get("/readyz")
    parts = resp.json()["components"]
    oks = ", ".join(f"{k} {'ok' if v.get('ok') else 'NOT ok'}" for k, v in parts.items())
    serve = parts.get("serve", {})
    deployments = ", ".join(f"{k} {v}" for k, v in serve.get("deployments", {}).items())
    return f"{resp.status_code}: {oks}; app {serve.get('status')} ({deployments})"


async def watch_readiness(base: str, load: Load, stop: asyncio.Event) -> dict[str, dict[str, int]]:
    """Probe both readiness forms twice a second; count the answers per load phase."""
    seen: dict[str, dict[str, int]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            for label, params in (("full", {}), ("ingest", {"scope": "ingest"})):
                try:
                    code = str((await http.get("/readyz", params=params)).status_code)
                except httpx.HTTPError:
                    code = "error"
                counts = seen.setdefault(load.phase, {})
                counts[f"{label} {code}"] = counts.get(f"{label} {code}", 0) + 1
            await asyncio.sleep(0.5)
    return seen


async def wait_decided(uri: str, ids: list[str], timeout_s: float) -> tuple[int, int, int, float]:
    """Poll the store until every id has a decision; (stored, decided, pending, seconds)."""
    from storage.store import open_store

    store = open_store(uri, DB_NAME)
    started = time.monotonic()
    try:
        while True:
            stored = len(await store.transactions.get_many(ids))
            decided = len(await store.decisions.list_for_transactions(ids))
            pending = await store.transactions.count({"status": "pending"})
            elapsed = time.monotonic() - started
            if (decided == len(ids) and pending == 0) or elapsed > timeout_s:
                return stored, decided, pending, elapsed
            await asyncio.sleep(5)
    finally:
        await store.close()


async def xgb_availability(uri: str, ids: list[str]) -> dict[str, int]:
    from storage.store import open_store

    store = open_store(uri, DB_NAME)
    try:
        out: dict[str, int] = {}
        for d in await store.decisions.list_for_transactions(ids):
            xgb = next((s for s in d.scorers if s.scorer == "xgboost"), None)
            key = "missing" if xgb is None else (xgb.reason or "scored")
            out[key] = out.get(key, 0) + 1
        return out
    finally:
        await store.close()


def scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


async def scenario(args: argparse.Namespace, root: Path, report: Report) -> None:
    import ray

    from storage import embedded

    run_id = secrets.token_hex(4)
    # main() put this run's token in our environment before Ray was imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AML_"))} | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"],
        "RAY_DEDUP_LOGS": "0",
    }
    nodes: list[RayNode] = []
    ingress: subprocess.Popen[bytes] | None = None
    store_dir = root / "store"
    server = embedded.start(store_dir)
    try:
        gcs_port, client_port = free_port(), free_port()
        head = start_ray_node(
            tag=f"{run_id}-head",
            root=root,
            env=env,
            resources={"head": 1},
            gcs_port=gcs_port,
            client_port=client_port,
        )
        nodes.append(head)
        wait_port(gcs_port)
        wait_port(client_port)
        node2 = start_ray_node(
            tag=f"{run_id}-node2",
            root=root,
            env=env,
            resources={"node2": 1},
            head_port=gcs_port,
        )
        nodes.append(node2)
        address = f"127.0.0.1:{gcs_port}"
        ray.init(address=address, log_to_driver=False)
        deadline = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) < 2:  # type: ignore[no-untyped-call]
            if time.monotonic() > deadline:
                raise TimeoutError("node2 did not join")
            time.sleep(1)
        report.note(f"cluster up: head {address} (client port {client_port}), node2 joined")

        aml_env = env | {
            "AML_ENV": "test",
            "AML_LOG_LEVEL": "WARNING",
            "AML_MONGODB_URI": server.uri,
            "AML_MONGODB_DB": DB_NAME,
            "AML_FINERACT_WEBHOOK_SECRETS": SECRET,
            "AML_GENERIC_WEBHOOK_SECRET": "g" * 40,
            "AML_JWT_SECRET": "j" * 48,
        }
        cfg_path = root / "serve_config.yaml"
        group = f"bench-{run_id}"
        took = deploy(bench_config(1, group), cfg_path, aml_env, address)
        report.add("Initial deploy-serve (XGBoostScorer x1)", f"{took:.1f} s")
        report.add("XGBoostScorer replicas after deploy", replica_nodes("XGBoostScorer"))

        port = free_port()
        ingress_env = aml_env | {
            "AML_DATA_DIR": str(root / "ingress"),
            "AML_INGRESS_PORT": str(port),
            "AML_RAY_ADDRESS": f"ray://127.0.0.1:{client_port}",
            MARKER: f"{run_id}-ingress",
        }
        base = f"http://127.0.0.1:{port}"
        # Restarted when it exits before listening, as a supervisor (systemd, Kubernetes)
        # would: the Ray Client server sometimes fails to start the per-client server it
        # hands a new connection to, and the ingress then exits with that error.
        for attempt in range(1, 4):
            out = (root / f"ingress-{attempt}.log").open("wb")
            ingress = subprocess.Popen(
                [str(BIN / "fineract-aml"), "serve-ingress"],
                env=ingress_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_port(port, 120, alive=ingress)
                break
            except RuntimeError:
                report.note(f"ingress start {attempt} exited before listening; restarting")
                if attempt == 3:
                    raise
        report.add("Ingress starts needed", attempt)
        report.add("Ingress /readyz through ray:// (before load)", await readyz(base))

        load = Load(base, args.rate)
        stop = asyncio.Event()
        runner = asyncio.create_task(load.run(stop))
        watcher = asyncio.create_task(watch_readiness(base, load, stop))
        await asyncio.sleep(args.phase_s)

        load.phase = "scaling"
        report.note("re-applying the config with XGBoostScorer num_replicas 2 under load")
        took = await asyncio.to_thread(deploy, bench_config(2, group), cfg_path, aml_env, address)
        report.add("Scale-up deploy-serve (XGBoostScorer 1 -> 2)", f"{took:.1f} s")
        report.add("XGBoostScorer replicas after scale-up", replica_nodes("XGBoostScorer"))
        load.phase = "scaled"
        await asyncio.sleep(args.phase_s)

        load.phase = "node2 lost"
        killed = node2.kill()
        report.note(f"killed node2: {killed} processes (raylet, workers, XGBoostScorer replicas)")
        await asyncio.sleep(args.phase_s / 2)
        report.add("Ingress /readyz after node2 loss", await readyz(base))
        await asyncio.sleep(args.phase_s / 2)
        stop.set()
        await runner
        readiness = await watcher
        report.note(f"load stopped: {load.sent} sent, {len(load.acked)} acknowledged")

        phases = ["steady", "scaling", "scaled", "node2 lost"]
        for phase in phases:
            lat = load.latency.get(phase, [])
            report.add(
                f"Phase {phase!r}: acked / errors / ack p50 / p99",
                f"{len(lat)} / {load.errors.get(phase, 0)} / {pct(lat, 0.5) * 1000:.1f} ms / "
                f"{pct(lat, 0.99) * 1000:.1f} ms",
            )
        report.add("Acked from the spool", load.spooled)
        for phase in phases:
            codes = readiness.get(phase, {})
            report.add(
                f"Phase {phase!r}: /readyz and /readyz?scope=ingest answers",
                ", ".join(f"{k}: {n}x" for k, n in sorted(codes.items())) or "(none)",
            )

        ids = list(load.acked)
        stored, decided, pending, waited = await wait_decided(server.uri, ids, args.drain_s)
        report.add("Acknowledged events", len(ids))
        report.add("... stored as transactions", stored)
        report.add("... with a decision", f"{decided} (after waiting {waited:.0f} s)")
        report.add("Transactions still pending", pending)
        report.add("Acknowledged events lost", len(ids) - stored)
        report.add("XGBoost part of the decisions", await xgb_availability(server.uri, ids))
        metrics = scrape(head.metrics_port)
        names = sorted(
            {
                line.split("{")[0]
                for line in metrics.splitlines()
                if line.startswith("ray_aml_") and not line.startswith("#")
            }
        )
        report.add("AML series on the head's metrics endpoint", ", ".join(names) or "(none)")
        if stored != len(ids) or decided != len(ids):
            raise SystemExit("acknowledged events were lost or left without a decision")
    finally:
        if ingress is not None:
            ingress.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                ingress.wait(timeout=20)
            ingress.kill()
        with contextlib.suppress(Exception):
            ray.shutdown()
        for node in reversed(nodes):
            node.stop()
        for tag in (f"{run_id}-ingress", f"{run_id}-head", f"{run_id}-node2"):
            kill_marked(tag)
        embedded.stop(store_dir)
        leftovers = [p for t in ("ingress", "head", "node2") for p in marked_pids(f"{run_id}-{t}")]
        report.add("Processes left running at the end", len(leftovers))


def write_report(report: Report, args: argparse.Namespace, seconds: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"multinode-{datetime.now(UTC):%Y-%m-%d}.md"
    lines = [
        f"# Multi-node proof on one machine ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python -m bench multinode --rate {args.rate:g} --phase-s {args.phase_s:g}` "
        f"on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{seconds:.0f} s in all.",
        "",
        "Two Ray nodes on loopback (head: 1 CPU + `head`; node2: 1 CPU + `node2`), every "
        "deployment pinned to the head except `XGBoostScorer` (pinned to node2 through "
        "`ray_actor_options.resources`); `fineract-aml serve-ingress` joined through "
        "`ray://`; Fineract savings-deposit hooks posted at a fixed rate. Phases: steady, "
        "scaling (re-apply with `XGBoostScorer` 1 -> 2 replicas), scaled, node2 lost "
        "(every node2 process SIGKILLed).",
        "",
        "| Measure | Value |",
        "|---|---|",
        *[f"| {k} | {v.replace('|', '/')} |" for k, v in report.rows],
        "",
        "Timeline:",
        "",
        *[f"- {e}" for e in report.events],
        "",
        "How to read it:",
        "",
        "- Acks never wait for scoring (the ingress stores, answers, then hands off), so the "
        "ack latency of the phases shows the ingress and the store, not the cluster.",
        "- `scorer unavailable` decisions were made while `XGBoostScorer` had no replica "
        "(node2 gone, and its replicas may only run there): rules and the anomaly model still "
        "decided. `/readyz` says 503 then; `/readyz?scope=ingest` (the load balancer's) stays "
        "200.",
        "- While a scorer has no replica, each pipeline call waits `scorer_timeout_s` (2 s "
        "here) for it and the ingress runs four calls at a time, so decisions trail the acks "
        "until the backlog and the pending sweep (every 30 s, for transactions older than two "
        "minutes) have caught up: that is the wait in the table.",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario and write the report."""
    p = argparse.ArgumentParser(prog="python -m bench multinode")
    p.add_argument("--rate", type=float, default=25.0, help="hooks per second")
    p.add_argument("--phase-s", type=float, default=20.0, help="seconds per load phase")
    p.add_argument("--drain-s", type=float, default=600.0, help="longest wait for decisions")
    args = p.parse_args(argv)
    if "ray" in sys.modules:
        raise SystemExit("run as its own process: Ray reads the token settings when imported")
    # A token of this run only: other Ray instances on the machine keep theirs.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    root = Path(tempfile.mkdtemp(prefix="amlmn-", dir="/tmp"))
    report = Report()
    started = time.monotonic()
    try:
        asyncio.run(scenario(args, root, report))
    except BaseException:
        log(f"failed; logs kept under {root}")
        raise
    else:
        shutil.rmtree(root, ignore_errors=True)
    finally:
        path = write_report(report, args, time.monotonic() - started)
        log(f"report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
