"""Load-generation pieces shared by the HTTP benchmarks (``ingest``, ``e2e``).

An open-loop generator: requests are scheduled on the clock (``start + n / rate``), handed to a
pool of keep-alive HTTP/1.1 connections, and their latency is measured from the *scheduled*
time, so a server (or a generator) that falls behind shows up as latency instead of silently
lowering the offered load. It runs in its own process (``generator_process``) so that its CPU is
not the measured server's.

What is sent is up to a picklable request factory: ``factory(n) -> bytes`` returns the full
HTTP request (head and body) of the ``n``-th event, ``n`` counting from 1.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import httpx

RequestFactory = Callable[[int], bytes]

_TICK_S = 0.001


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in [0, 1]); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and ``Content-Length`` (0 when absent) of an HTTP/1.1 response head.

    Raises:
        ValueError, IndexError: not a response head.
    """
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a ``Content-Length`` body; return its status code."""
    status, length = parse_head(await reader.readuntil(b"\r\n\r\n"))
    if length:
        await reader.readexactly(length)
    return status


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the generator, one request in flight at a time.

    Responses are parsed from the bytes as they arrive (status line and ``Content-Length``), with
    no stream reader, future or task per request: on a two-core machine every microsecond the
    generator spends is taken from the server it measures.
    """

    def __init__(self, load: _OpenLoop) -> None:
        self._load = load
        self._buf = b""
        self.transport: asyncio.Transport | None = None
        self.current: tuple[int, float] | None = None  # (n, scheduled) in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; both have write() and close().
        self.transport = cast(asyncio.Transport, transport)
        self._load.opened(self)

    def send(self, n: int, scheduled: float, request: bytes) -> None:
        self.current = (n, scheduled)
        self._load.send_lags.append(time.perf_counter() - scheduled)
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while self.current is not None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                status, length = parse_head(self._buf[:end])
            except (IndexError, ValueError):
                assert self.transport is not None
                self.transport.close()  # connection_lost fails the request in flight
                return
            if len(self._buf) < end + 4 + length:
                return
            self._buf = self._buf[end + 4 + length :]
            (n, scheduled), self.current = self.current, None
            self._load.answered(self, n, scheduled, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        current, self.current = self.current, None
        self._load.lost(self, current, exc)


class _OpenLoop:
    """State of one :func:`generate` run: idle connections, requests waiting for one, results."""

    def __init__(self, port: int, total: int, factory: RequestFactory) -> None:
        self.port = port
        self.total = total
        self.factory = factory
        self.start = 0.0
        self.idle: list[_Connection] = []
        self.backlog: deque[tuple[int, float]] = deque()
        self.finished = 0  # requests answered or failed
        self.closing = False
        self.open = 0  # connections open now
        self.refused: str | None = None  # why the last reconnection failed, until one works
        self.latencies: list[float] = []
        self.send_lags: list[float] = []  # send time - scheduled time, every request sent
        self.sent_at: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self.failed: list[int] = []
        self.all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def connect(self) -> None:
        await asyncio.get_running_loop().create_connection(
            lambda: _Connection(self), "127.0.0.1", self.port
        )

    def submit(self, n: int, scheduled: float) -> None:
        if self.idle:
            self.idle.pop().send(n, scheduled, self.factory(n))
        elif self.refused is not None and not self.open:
            # No connection left and the server refuses new ones: nothing would send it.
            self.errors.append(self.refused)
            self.failed.append(n)
            self._finish_one()
        else:
            self.backlog.append((n, scheduled))

    def opened(self, conn: _Connection) -> None:
        self.open += 1
        self.refused = None
        self.ready(conn)

    def ready(self, conn: _Connection) -> None:
        """``conn`` can take a request: the oldest waiting one, or it waits for the next."""
        if self.closing:
            assert conn.transport is not None
            conn.transport.close()
        elif self.backlog:
            n, scheduled = self.backlog.popleft()
            conn.send(n, scheduled, self.factory(n))
        else:
            self.idle.append(conn)

    def _finish_one(self) -> None:
        self.finished += 1
        if self.finished == self.total and not self.all_done.done():
            self.all_done.set_result(None)

    def answered(self, conn: _Connection, n: int, scheduled: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - scheduled)
        self.sent_at.append(scheduled - self.start)
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status != 200:
            self.failed.append(n)
        self._finish_one()
        self.ready(conn)

    def lost(
        self, conn: _Connection, current: tuple[int, float] | None, exc: Exception | None
    ) -> None:
        """A connection closed: its request in flight failed, and a new connection replaces
        it (as a client whose socket broke opens another)."""
        self.open -= 1
        if conn in self.idle:  # closed by the server while it waited for a request
            self.idle.remove(conn)
        if current is not None:
            self.errors.append(type(exc).__name__ if exc else "ConnectionClosed")
            self.failed.append(current[0])
            self._finish_one()
        if not self.closing:
            task = asyncio.ensure_future(self.connect())
            task.add_done_callback(self._reconnected)

    def _reconnected(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # The server is gone: every request waiting for a connection fails, and so will the
        # next ones while no connection is open.
        self.refused = type(task.exception()).__name__
        self.errors.append(self.refused)
        if self.open:
            return
        while self.backlog:
            self.failed.append(self.backlog.popleft()[0])
            self._finish_one()


async def generate(
    port: int,
    rate: float,
    seconds: float,
    connections: int,
    factory: RequestFactory,
    *,
    start_at: float | None = None,
) -> dict[str, Any]:
    """Send ``rate * seconds`` requests open-loop to ``127.0.0.1:port``.

    Args:
        port: the server's loopback port.
        rate: target requests per second.
        seconds: how long to offer load.
        connections: keep-alive connections (requests queue in the generator when all are busy).
        factory: builds request ``n`` (1-based).
        start_at: wall-clock (``time.time()``) instant of request 1, so another process can
            know the schedule; None starts as soon as the connections are open.

    Returns:
        ``sent``, ``elapsed_s``, ``latencies`` (seconds from the scheduled time, answered
        requests only), ``sent_at`` (each answered request's scheduled time, seconds from the
        start, in the order of ``latencies``), ``statuses`` (count per HTTP status), ``errors``
        (transport errors), ``failed`` (the ``n`` of every request not answered 200) and
        ``send_lags`` (seconds from each request's scheduled time to its write, in send order:
        the tick, and the wait for a free connection once every connection has a request in
        flight, which the latencies include).
    """
    total = int(rate * seconds)
    load = _OpenLoop(port, total, factory)
    await asyncio.gather(*(load.connect() for _ in range(connections)))
    await asyncio.sleep(0.2)  # connections established before the clock starts
    start = time.perf_counter()
    if start_at is not None:
        start += max(0.0, start_at - time.time())
    load.start = start
    cpu_start = time.process_time()
    n = 0
    while n < total:
        now = time.perf_counter()
        # Every request whose time has come goes now; then sleep until the next one's.
        due = min(total, int((now - start) * rate) + 1)
        while n < due:
            load.submit(n + 1, start + n / rate)
            n += 1
        if n < total:
            # At least a millisecond (the event loop's timer resolution: a shorter sleep
            # returns at once and the loop would spin); what falls due meanwhile goes together.
            await asyncio.sleep(max(_TICK_S, start + n / rate - time.perf_counter()))
    if total:
        await load.all_done
    load.closing = True
    for conn in load.idle:
        if conn.transport is not None:
            conn.transport.close()
    elapsed = time.perf_counter() - start
    return {
        "sent": total,
        "elapsed_s": elapsed,
        # This process's own CPU while it sent (read here: it exits before anyone else could).
        "cpu_s": time.process_time() - cpu_start,
        "latencies": load.latencies,
        "sent_at": load.sent_at,
        "send_lags": load.send_lags,
        "statuses": load.statuses,
        "errors": load.errors,
        "failed": sorted(load.failed),
    }


async def closed_loop(
    port: int, connections: int, seconds: float, factory: RequestFactory
) -> dict[str, Any]:
    """Each of ``connections`` sends its next request as soon as the previous is answered,
    for ``seconds``; returns ``requests`` answered and ``per_s``."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(factory(done + 1))
                await read_response(reader)
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests": done, "per_s": done / elapsed if elapsed else 0.0}


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def generator_process(
    port: int,
    rate: float,
    seconds: float,
    connections: int,
    factory: RequestFactory,
    out: Any,
    start_at: float | None = None,
) -> None:
    """Process entry: run :func:`generate` and put its result on the ``out`` queue."""
    _install_uvloop()
    out.put(asyncio.run(generate(port, rate, seconds, connections, factory, start_at=start_at)))


def closed_loop_process(
    port: int, connections: int, seconds: float, factory: RequestFactory, out: Any
) -> None:
    """Process entry: run :func:`closed_loop` and put its result on the ``out`` queue."""
    _install_uvloop()
    out.put(asyncio.run(closed_loop(port, connections, seconds, factory)))


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, interval: float = 0.2
) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        RuntimeError: ``proc`` exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{url} did not become ready within {timeout:.0f} s")


def marked_pids(marker: str, tag: str) -> list[int]:
    """Processes whose environment carries ``marker=tag``: the ones a benchmark started (they
    inherit the variable), found without trusting process names, and never this process."""
    needle = f"{marker}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle + b"\0" in environ or environ.endswith(needle):
            pids.append(int(entry.name))
    return pids
