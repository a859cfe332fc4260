"""Embedded MongoDB-wire server (``nx-27017``, SQLite-backed) managed as a child process.

Used when ``AML_MONGODB_URI`` is unset: the product starts the server on a free loopback port
with its data under ``<AML_DATA_DIR>/db``, waits until it answers ``ping`` and stops it on exit.
``fineract-aml db start|stop|status`` manages a long-lived one by hand; ``run`` reuses it when
it is already up.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from aml.errors import ServiceUnavailable


@dataclass(frozen=True)
class EmbeddedServer:
    host: str
    port: int
    pid: int
    data_dir: Path

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"


def _state_file(data_dir: Path) -> Path:
    return data_dir / "db" / "embedded.json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# For a server that binds its port only after Ray has started (``fineract-aml run`` started by
# a benchmark or a test with chosen ports): a port free now in the kernel's ephemeral range can
# be taken in between by one of Ray's servers or by any outgoing connection, and Ray's workers
# listen on 10002-19999 by default. Nothing picks from this range on its own.
LATE_BIND_PORTS = range(20_000, 30_000)


def free_port_for_later(host: str = "127.0.0.1") -> int:
    """A port free now that nothing else will pick by itself before it is bound."""
    for port in random.sample(LATE_BIND_PORTS, 256):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {LATE_BIND_PORTS.start}-{LATE_BIND_PORTS.stop - 1}")


def ping(uri: str, timeout_ms: int = 1000) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def status(data_dir: Path) -> EmbeddedServer | None:
    """The running embedded server for ``data_dir``, or None."""
    path = _state_file(data_dir)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        server = EmbeddedServer(
            host=str(state["host"]),
            port=int(state["port"]),
            pid=int(state["pid"]),
            data_dir=data_dir,
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(server.pid) or not ping(server.uri):
        return None
    return server


def start(
    data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0
) -> EmbeddedServer:
    """Start (or reuse) the embedded server for ``data_dir`` and wait for ``ping``.

    Raises:
        ServiceUnavailable: the server did not answer within ``timeout_s``.
    """
    existing = status(data_dir)
    if existing is not None:
        return existing
    db_dir = data_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log_path = db_dir / "nx-27017.log"
    cmd = [
        sys.executable,
        "-m",
        "storage.nx_server",  # nx-27017, one SQLite transaction per write command
        "--data-dir",
        str(db_dir.resolve()),
        "--host",
        host,
        "--port",
        str(port),
        "--log-file",
        str(log_path.resolve()),
        "--pid-file",
        str((db_dir / "nx-27017.pid").resolve()),
    ]
    with open(db_dir / "nx-27017.stdout", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = EmbeddedServer(host=host, port=port, pid=proc.pid, data_dir=data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(
                f"embedded MongoDB-wire server exited with code {proc.returncode}; see {log_path}"
            )
        if ping(server.uri, timeout_ms=300):
            _state_file(data_dir).write_text(
                json.dumps({"host": host, "port": port, "pid": proc.pid})
            )
            return server
        time.sleep(0.1)
    proc.kill()
    raise ServiceUnavailable(f"embedded MongoDB-wire server did not answer ping on {server.uri}")


def stop(data_dir: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop the embedded server for ``data_dir``. Returns False when none was running."""
    path = _state_file(data_dir)
    if not path.exists():
        return False
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return False
    stopped = False
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    path.unlink(missing_ok=True)
    return stopped
