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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

RequestFactory = Callable[[int], bytes]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in [0, 1]); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a ``Content-Length`` body; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


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
        (transport errors) and ``failed`` (the ``n`` of every request not answered 200).
    """
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    sent_at: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    failed: list[int] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                n, scheduled = item
                try:
                    writer.write(factory(n))
                    status = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(type(exc).__name__)
                    failed.append(n)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - scheduled)
                sent_at.append(scheduled - start)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status != 200:
                    failed.append(n)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections established before the clock starts
    start = time.perf_counter()
    if start_at is not None:
        start += max(0.0, start_at - time.time())
    cpu_start = time.process_time()
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((n + 1, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {
        "sent": total,
        "elapsed_s": elapsed,
        # This process's own CPU while it sent (read here: it exits before anyone else could).
        "cpu_s": time.process_time() - cpu_start,
        "latencies": latencies,
        "sent_at": sent_at,
        "statuses": statuses,
        "errors": errors,
        "failed": sorted(failed),
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
