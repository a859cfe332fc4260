"""Append-only local spool: where acknowledged events wait while the store is unreachable.

Layout: ``<data_dir>/spool/seg-<n>.jsonl``, one record per line prefixed by its CRC-32
(``"<crc32 hex> <body>\\n"``). The body is ``B`` and the record as base64 BSON, the store's own
encoding, which keeps dates, integers and nested documents as they are and costs a fraction of a
JSON rendering of the same record; lines written as JSON text (``{...}``, the format of earlier
releases) are still read. Every append is flushed and ``fsync``-ed before it returns, so an
event acknowledged from the spool survives a crash of this process or of the machine.

Only the newest segment is ever written. Draining first *rotates* (closes the current segment so
new events go to a fresh one), replays closed segments oldest first, and deletes a segment only
after all of its records are in the store. A crash mid-drain leaves the segment in place; it is
replayed again on the next start and the store's unique keys make the replay idempotent.

A record that fails its checksum (a write torn by a crash) is skipped with a log line. Segments
left from a previous process are never appended to, so a torn tail cannot swallow new records.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import bson
from bson.codec_options import CodecOptions
from bson.errors import BSONError

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^seg-(\d{12})\.jsonl$")
# Dates come back as aware UTC datetimes, as the store's client returns them.
_BSON_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_BSON_MARK = b"B"


@dataclass(frozen=True, slots=True)
class SegmentContents:
    """Records read back from one segment, and how many lines were unreadable."""

    records: list[dict[str, Any]]
    corrupt: int


def encode_record(payload: Mapping[str, Any]) -> bytes:
    """One spool line: CRC-32 of the body, a space, the body (``B`` + base64 BSON), a newline.

    Raises:
        bson.errors.InvalidDocument: a value BSON cannot hold (the store could not take it
            either).
    """
    body = _BSON_MARK + base64.b64encode(bson.encode(payload))
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The payload of one spool line (BSON or, from earlier releases, JSON text), or None when
    it is torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        if body.startswith(_BSON_MARK):
            value: Any = bson.decode(base64.b64decode(body[1:], validate=True), _BSON_OPTIONS)
        else:
            value = json.loads(body)
    except (ValueError, binascii.Error, BSONError):
        return None
    return value if isinstance(value, dict) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable FIFO of records (documents) on local disk. Blocking I/O: call from a worker thread.

    Args:
        directory: where segments live (created if missing).
        on_corrupt: called with the number of unreadable records found while reading a segment.
    """

    def __init__(self, directory: Path, *, on_corrupt: Callable[[int], None] | None = None) -> None:
        self.directory = directory
        # Spooled bodies are raw client requests (personal data): owner-only access.
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._on_corrupt = on_corrupt
        self._current: IO[bytes] | None = None
        self._current_path: Path | None = None
        existing = self._segment_numbers()
        self._next = (max(existing) + 1) if existing else 1

    def _segment_numbers(self) -> list[int]:
        numbers = []
        for entry in self.directory.iterdir():
            match = _SEGMENT.match(entry.name)
            if match:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _path(self, number: int) -> Path:
        return self.directory / f"seg-{number:012d}.jsonl"

    def append(self, payload: Mapping[str, Any]) -> None:
        """Append one record and make it durable before returning.

        Raises:
            OSError: the disk refused the write; the caller must not acknowledge.
        """
        if self._current is None:
            self._current_path = self._path(self._next)
            self._next += 1
            fd = os.open(self._current_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._current = os.fdopen(fd, "ab")  # kept open across appends
            _fsync_dir(self.directory)  # the new file's directory entry must survive a crash too
        self._current.write(encode_record(payload))
        self._current.flush()
        os.fsync(self._current.fileno())

    def rotate(self) -> None:
        """Close the segment being written so that it can be drained; the next append opens a
        new one."""
        if self._current is not None:
            self._current.close()
            self._current = None
            self._current_path = None

    def closed_segments(self) -> list[Path]:
        """Segments that are no longer written to, oldest first."""
        current = self._current_path
        return [p for n in self._segment_numbers() if (p := self._path(n)) != current]

    def read_segment(self, path: Path) -> SegmentContents:
        """Every intact record of ``path`` in order; torn or corrupt lines are skipped and
        logged."""
        records: list[dict[str, Any]] = []
        corrupt = 0
        with open(path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                payload = decode_line(line)
                if payload is None:
                    corrupt += 1
                    log.warning(
                        "spool %s line %d failed its checksum (torn write?); skipped",
                        path.name,
                        lineno,
                    )
                    continue
                records.append(payload)
        if corrupt and self._on_corrupt is not None:
            self._on_corrupt(corrupt)
        return SegmentContents(records, corrupt)

    def remove(self, path: Path) -> None:
        """Delete a fully replayed segment."""
        path.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def quarantine(self, path: Path) -> Path:
        """Move a segment the store keeps refusing aside (kept for inspection, never lost)."""
        target_dir = self.directory / "quarantine"
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        path.rename(target)
        _fsync_dir(self.directory)
        return target

    def is_empty(self) -> bool:
        """True when no segment holds a record."""
        return self.pending_bytes() == 0

    def pending_bytes(self) -> int:
        """Bytes in all segments (closed and current)."""
        return sum(self._path(n).stat().st_size for n in self._segment_numbers())

    def writable(self) -> bool:
        """Whether a record could be spooled right now (directory exists and is writable)."""
        return self.directory.is_dir() and os.access(self.directory, os.W_OK | os.X_OK)

    def close(self) -> None:
        """Close the current segment (records already written stay durable)."""
        self.rotate()
