"""Ids of received events (``serve.ingress.new_event_id``)."""

from __future__ import annotations

import itertools
import os
import re

import pytest

import serve.ingress as ingress
from serve.ingress import new_event_id


def test_ids_are_24_hex_digits_and_never_repeat() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_counter_that_runs_out_draws_a_new_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingress, "_id_state", [("0" * 16, itertools.count((1 << 32) - 1))])
    last = new_event_id()
    assert last == "0" * 16 + "ffffffff"
    after = new_event_id()
    assert after[:16] != "0" * 16 and after[16:] == "00000000"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_draws_its_own_prefix() -> None:
    parent = new_event_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 24
    assert child[:16] != parent[:16]
    assert new_event_id()[:16] == parent[:16]
