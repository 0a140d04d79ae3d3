"""Refused requests counted per window, bounded per window (``registry.core.audit_refusals``)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from registry.core.audit import AuditLog
from registry.core.audit_chain import verify
from registry.core.audit_key import AuditKey
from registry.core.audit_refusals import RefusalCounter
from registry.errors import AuditLogUnavailable

KEY = AuditKey(bytes(range(32)))


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.log", KEY)


def refused(log: AuditLog) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.path.read_bytes().splitlines()]
    return [e for e in entries if e["event"] == "refused"]


def test_refusals_of_one_kind_become_one_entry_with_their_count(log: AuditLog) -> None:
    counter = RefusalCounter(log)
    for _ in range(5):
        counter.record("unauthenticated", 401, "ip:10.0.0.1", "POST /models")
    counter.record("forbidden", 403, "key:1a2b3c4d", "POST /models")
    assert refused(log) == []  # nothing is written before the window closes

    assert counter.flush() == 2

    first, second = refused(log)
    assert first["outcome"] == "unauthenticated" and first["count"] == 5
    assert (first["status"], first["who"], first["route"]) == (401, "ip:10.0.0.1", "POST /models")
    assert first["first"] <= first["last"] and first["pid"] == os.getpid()
    assert first["window_s"] == 60
    assert (second["outcome"], second["who"], second["count"]) == ("forbidden", "key:1a2b3c4d", 1)
    assert counter.flush() == 0  # a new window: nothing counted yet
    assert verify(log.path, KEY).entries == 3


def test_a_flood_of_ever_new_callers_writes_at_most_max_kinds_plus_one_lines(
    log: AuditLog,
) -> None:
    counter = RefusalCounter(log, max_kinds=8)
    for i in range(1000):
        counter.record("unauthenticated", 401, f"ip:10.0.{i // 250}.{i % 250}", "POST /models")

    assert counter.flush() == 9

    entries = refused(log)
    assert len(entries) == 9
    lumped = entries[-1]
    assert (lumped["who"], lumped["outcome"], lumped["route"], lumped["status"]) == (
        "*",
        "*",
        "*",
        None,
    )
    assert lumped["count"] == 1000 - 8
    assert sum(e["count"] for e in entries) == 1000


def test_refusals_the_log_could_not_take_are_kept_for_the_next_window(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = RefusalCounter(log)
    counter.record("payload_too_large", 413, "ip:10.0.0.1", "POST /verify")
    counter.record("payload_too_large", 413, "ip:10.0.0.2", "POST /verify")

    def full_disk(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("registry.core.audit.os.write", full_disk)
        with pytest.raises(AuditLogUnavailable):
            counter.flush()
    assert counter.pending == 2
    counter.record("payload_too_large", 413, "ip:10.0.0.1", "POST /verify")

    assert counter.flush() == 2
    assert sorted(e["count"] for e in refused(log)) == [1, 2]


def test_a_window_is_written_when_it_closes_and_the_last_one_when_flushing_ends(
    log: AuditLog,
) -> None:
    counter = RefusalCounter(log, window_s=1)

    async def main() -> None:
        async with counter.flushing():
            counter.record("cross_site_request", 403, "ip:10.0.0.1", "POST /verify")
            deadline = time.monotonic() + 10  # a bound on a hang, not a timing assertion
            while not refused(log) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert [e["count"] for e in refused(log)] == [1]
            counter.record("cross_site_request", 403, "ip:10.0.0.1", "POST /verify")
        # the block ended: the open window was written without waiting for it to close

    asyncio.run(main())
    assert [e["count"] for e in refused(log)] == [1, 1]


def test_a_window_or_bound_below_one_is_refused(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="window_s"):
        RefusalCounter(log, window_s=0)
    with pytest.raises(ValueError, match="max_kinds"):
        RefusalCounter(log, max_kinds=0)
