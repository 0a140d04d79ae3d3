from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from registry.core.audit import GENESIS_PREV, AuditLog, canonical_json
from registry.core.audit import verify as verify_chain
from registry.core.audit_key import AuditKey
from registry.errors import AuditLogCorrupt, AuditLogUnavailable

N = 6
KEY = AuditKey(bytes(range(32)))


def verify(path: Path, *, anchor: tuple[int, str] | None = None) -> int:
    """Check ``path`` with the key it was written with; the number of lines, header included."""
    return verify_chain(path, KEY, anchor=anchor).entries


def open_log(path: Path, **options: Any) -> AuditLog:
    return AuditLog(path, KEY, **options)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a test keeps its log; nothing is there until the test writes it."""
    return tmp_path / "audit.jsonl"


def write_log(path: Path, n: int = N) -> list[dict[str, Any]]:
    """A log of its header and ``n`` entries; the entries."""
    log = open_log(path)
    return [
        log.append("verify", digest=f"{i:064x}", verdict="verified", block=100 + i, client="c1")
        for i in range(n)
    ]


def written(path: Path, n: int = N) -> list[bytes]:
    """Write a log of ``n`` entries at ``path``; its lines, to tamper with."""
    write_log(path, n)
    return lines(path)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def mac(body: dict[str, Any], key: AuditKey) -> str:
    return hmac.new(key.secret, canonical_json(body), hashlib.sha256).hexdigest()


def reseal(entry: dict[str, Any], key: AuditKey | None = None) -> bytes:
    """What a forger who knows the format does: recompute the entry's own hash, with plain
    SHA-256 (``key=None``: an outsider) or with the key (an insider who holds it)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    digest = mac(body, key) if key else hashlib.sha256(canonical_json(body)).hexdigest()
    return canonical_json({**body, "hash": digest})


def resealed(line: bytes, key: AuditKey | None = None, **changes: Any) -> bytes:
    """The entry on ``line`` with ``changes`` made and its own hash recomputed, as a log line."""
    return reseal({**json.loads(line), **changes}, key) + b"\n"


def corrupt_at(path: Path) -> AuditLogCorrupt:
    with pytest.raises(AuditLogCorrupt) as info:
        verify_chain(path, KEY)
    assert info.value.path == str(path)
    return info.value


def corrupt_after(path: Path, edited: list[bytes]) -> AuditLogCorrupt:
    """Write ``edited`` (the log's lines, changed) over ``path``; the corruption verify reports."""
    rewrite(path, edited)
    return corrupt_at(path)


# --- writing ---------------------------------------------------------------------------------


def test_appended_entries_form_a_keyed_chain_after_the_header_that_verifies(path: Path) -> None:
    entries = write_log(path)
    assert verify(path) == N + 1
    raw = lines(path)
    header = json.loads(raw[0])
    assert header["seq"] == 1 and header["prev"] == GENESIS_PREV
    assert (header["event"], header["mac"], header["key_id"]) == (
        "log.started",
        "hmac-sha256",
        KEY.id,
    )
    assert KEY.id == hashlib.sha256(KEY.secret).hexdigest()[:8]
    assert [e["seq"] for e in entries] == list(range(2, N + 2))
    for i, entry in enumerate(entries, start=1):
        assert raw[i] == canonical_json(entry) + b"\n"
        body = {k: v for k, v in entry.items() if k != "hash"}
        assert entry["hash"] == mac(body, KEY)
        assert entry["prev"] == hashlib.sha256(raw[i - 1].rstrip(b"\n")).hexdigest()
        assert entry["time"].endswith("Z")
        assert entry["event"] == "verify" and entry["block"] == 100 + i - 1
    assert KEY.secret.hex().encode() not in path.read_bytes()


def test_a_new_log_object_resumes_seq_and_prev_from_the_file(path: Path) -> None:
    write_log(path, 3)
    entry = open_log(path).append("revoke", digest="ab" * 32, reason="recalled")
    assert entry["seq"] == 5
    assert entry["prev"] == hashlib.sha256(lines(path)[3].rstrip(b"\n")).hexdigest()
    assert verify(path) == 5


def test_two_log_objects_on_one_file_interleave_without_breaking_the_chain(path: Path) -> None:
    a, b = open_log(path), open_log(path)
    for i in range(5):
        (a if i % 2 else b).append("verify", n=i)
    assert verify(path) == 6
    assert sum(json.loads(line)["event"] == "log.started" for line in lines(path)) == 1


def test_head_names_the_last_entry(path: Path) -> None:
    log = open_log(path)
    assert log.head() == (1, json.loads(lines(path)[0])["hash"])
    entries = write_log(path, 2)
    assert log.head() == (3, entries[-1]["hash"])


def test_a_new_log_holds_its_header_alone_and_verifies(path: Path) -> None:
    log = open_log(path)
    assert len(lines(path)) == 1
    assert verify(path) == 1
    assert log.key_id == KEY.id


def test_missing_log_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    with pytest.raises(AuditLogCorrupt) as info:
        verify(tmp_path / "gone.jsonl")
    assert info.value.line == 0


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"image": b"\x89PNG"}, "never raw content"),
        ({"image": bytearray(b"x")}, "never raw content"),
        ({"image": memoryview(b"x")}, "never raw content"),
        ({"note": "x" * 513}, "513 characters"),
        ({"accuracy": 0.93}, "float"),
        ({"classes": ["a", "b"]}, "list"),
        ({"card": {"k": "v"}}, "dict"),
        ({"seq": 7}, "reserved"),
        ({"hash": "0" * 64}, "reserved"),
        ({"block": 2**256}, "2\\*\\*256"),
    ],
)
def test_append_refuses_values_that_are_not_short_identifiers(
    path: Path, fields: dict[str, Any], match: str
) -> None:
    log = open_log(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=match):
        log.append("predict", **fields)
    assert path.read_bytes() == before


def test_append_accepts_a_512_character_value_and_none_and_bools(path: Path) -> None:
    open_log(path).append("predict", client="x" * 512, replacement=None, verified=False, block=0)
    assert verify(path) == 2


@pytest.mark.parametrize("event", ["", "Verify", "verify\n", "x" * 65, "a b", "log.started"])
def test_append_refuses_malformed_event_names(path: Path, event: str) -> None:
    with pytest.raises(ValueError, match="audit event"):
        open_log(path).append(event)


def test_append_refuses_too_many_fields(path: Path) -> None:
    with pytest.raises(ValueError, match="at most 32 fields"):
        open_log(path).append("x", **{f"f{i}": i for i in range(33)})


# --- tampering -------------------------------------------------------------------------------


def test_editing_a_field_is_detected_on_that_line(path: Path) -> None:
    raw = written(path)
    raw[2] = raw[2].replace(b'"verdict":"verified"', b'"verdict":"revoked!"')
    exc = corrupt_after(path, raw)
    assert exc.line == 3
    assert "hash" in exc.problem


def test_editing_a_field_and_resealing_it_without_the_key_is_detected_on_that_line(
    path: Path,
) -> None:
    raw = written(path)
    raw[2] = resealed(raw[2], verdict="revoked")
    exc = corrupt_after(path, raw)
    assert exc.line == 3
    assert "keyed hash" in exc.problem


def test_editing_a_field_and_resealing_it_with_the_key_is_detected_on_the_next_line(
    path: Path,
) -> None:
    raw = written(path)
    raw[2] = resealed(raw[2], KEY, verdict="revoked")
    exc = corrupt_after(path, raw)
    assert exc.line == 4
    assert "prev" in exc.problem


def test_editing_the_last_line_with_the_key_is_detected_against_an_anchor(path: Path) -> None:
    entries = write_log(path)
    raw = lines(path)
    raw[-1] = resealed(raw[-1], KEY, verdict="revoked")
    rewrite(path, raw)
    assert verify(path) == N + 1  # whoever holds the key can: that is what anchoring is for
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, anchor=(N + 1, entries[-1]["hash"]))
    assert info.value.line == N + 1


@pytest.mark.parametrize("i", range(N))
def test_deleting_a_line_is_detected_where_it_was(path: Path, i: int) -> None:
    raw = written(path)
    del raw[i]
    assert corrupt_after(path, raw).line == i + 1


@pytest.mark.parametrize("i", range(N))
def test_swapping_two_lines_is_detected_at_the_first_of_them(path: Path, i: int) -> None:
    raw = written(path)
    raw[i], raw[i + 1] = raw[i + 1], raw[i]
    assert corrupt_after(path, raw).line == i + 1


def test_truncating_mid_line_is_detected_on_the_broken_last_line(path: Path) -> None:
    write_log(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    exc = corrupt_at(path)
    assert exc.line == N + 1
    assert "incomplete" in exc.problem


def test_removing_the_final_newline_is_detected(path: Path) -> None:
    write_log(path)
    path.write_bytes(path.read_bytes()[:-1])
    assert corrupt_at(path).line == N + 1


def test_cutting_whole_lines_from_the_end_is_detected_against_an_anchor(path: Path) -> None:
    entries = write_log(path)
    rewrite(path, lines(path)[:4])
    assert verify(path) == 4
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, anchor=(N + 1, entries[-1]["hash"]))
    assert info.value.line == 5
    assert "removed from the end" in info.value.problem


@pytest.mark.parametrize(("key", "line"), [(None, 3), (KEY, 4)], ids=["outsider", "insider"])
def test_inserting_a_forged_line_is_detected_on_it_or_without_the_key_on_the_line_after_it(
    path: Path, key: AuditKey | None, line: int
) -> None:
    raw = written(path)
    # The best a forger can do locally: right seq, prev chained to line 2, an own hash.
    forged = {
        "seq": 3,
        "time": json.loads(raw[2])["time"],
        "event": "verify",
        "digest": "ee" * 32,
        "verdict": "verified",
        "prev": hashlib.sha256(raw[1].rstrip(b"\n")).hexdigest(),
    }
    raw.insert(2, reseal(forged, key) + b"\n")
    exc = corrupt_after(path, raw)
    assert exc.line == line


def test_a_forged_line_with_a_duplicate_seq_is_detected_on_that_line(path: Path) -> None:
    raw = written(path)
    raw.insert(2, resealed(raw[1], KEY, digest="ee" * 32))
    exc = corrupt_after(path, raw)
    assert exc.line == 3
    assert "seq" in exc.problem


def test_rewriting_the_whole_chain_with_the_key_after_an_insertion_is_detected_against_an_anchor(
    path: Path,
) -> None:
    entries = write_log(path)
    originals = [json.loads(r) for r in lines(path)]
    forged_entries = [*originals[:3], {**originals[3], "digest": "ee" * 32}, *originals[3:]]
    prev, out = GENESIS_PREV, []
    for seq, entry in enumerate(forged_entries, start=1):
        line = reseal({**entry, "seq": seq, "prev": prev}, KEY)
        out.append(line + b"\n")
        prev = hashlib.sha256(line).hexdigest()
    rewrite(path, out)
    assert verify(path) == N + 2
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, anchor=(4, entries[2]["hash"]))
    assert info.value.line == 4


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda line: line.replace(b",", b", ", 1), "canonical"),
        (lambda line: b"[" + line + b"]", "not a flat JSON object"),
        (lambda line: line[:-1] + b',"x":[1]}', "not a flat JSON object"),
        (lambda line: line[:-1] + b',"x":{"y":1}}', "not a flat JSON object"),
        (lambda line: line[:-1] + b',"seq":3}', "duplicate key"),
        (lambda line: b"not json", "not a flat JSON object"),
        (lambda line: b"", "not a flat JSON object"),
        (lambda line: line[:-1], "not a JSON line"),
        (lambda line: line.replace(b'"verify"', b'"v\xc3\xa9rify"'), "not a JSON line"),
        (lambda line: line.replace(b'"event":"verify",', b""), "missing event"),
    ],
)
def test_malformed_lines_are_reported_with_the_problem(
    path: Path, mutate: Any, problem: str
) -> None:
    raw = written(path, 3)
    raw[1] = mutate(raw[1].rstrip(b"\n")) + b"\n"
    exc = corrupt_after(path, raw)
    assert exc.line == 2
    assert problem in exc.problem


@pytest.mark.parametrize("nested", [b"[" * 200_000, b'{"a":' * 50_000, b"[" * 10 + b"]" * 10])
def test_a_deeply_nested_line_is_refused_without_recursing(path: Path, nested: bytes) -> None:
    # Like any process that imported web3: py_ecc and py-evm raise the limit to 100 000, and
    # json.loads on these lines would then overflow the C stack and kill the test process.
    write_log(path, 2)
    with path.open("ab") as f:
        f.write(nested + b"\n")
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 100_000))
    try:
        exc = corrupt_at(path)
        with pytest.raises(AuditLogCorrupt):
            open_log(path)
    finally:
        sys.setrecursionlimit(before)
    assert exc.line == 4
    assert "flat JSON object" in exc.problem


def test_an_overlong_line_is_refused_without_reading_it_whole(path: Path) -> None:
    write_log(path, 1)
    with path.open("ab") as f:
        f.write(b"x" * (1 << 20) + b"\n")
    exc = corrupt_at(path)
    assert exc.line == 3
    assert "longer than" in exc.problem


def test_append_refuses_to_chain_to_a_torn_last_line(path: Path) -> None:
    log = open_log(path)
    log.append("verify", n=1)
    log.append("verify", n=2)
    path.write_bytes(path.read_bytes()[:-5])
    size = path.stat().st_size
    with pytest.raises(AuditLogCorrupt) as info:
        log.append("verify", n=3)
    assert info.value.line == 3
    with pytest.raises(AuditLogCorrupt):
        open_log(path)
    assert path.stat().st_size == size


def test_append_refuses_to_chain_to_an_edited_last_line(path: Path) -> None:
    write_log(path, 2)
    path.write_bytes(path.read_bytes().replace(b'"block":101', b'"block":999'))
    with pytest.raises(AuditLogCorrupt) as info:
        open_log(path)
    assert info.value.line == 3


# --- concurrency -----------------------------------------------------------------------------


def append_many(path: str, secret: bytes, worker: int, count: int) -> None:
    log = AuditLog(path, AuditKey(secret))
    for i in range(count):
        log.append("predict", client=f"w{worker}", n=i)


def test_concurrent_appends_from_two_processes_keep_the_chain_valid(path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    count = 200
    procs = [
        ctx.Process(target=append_many, args=(str(path), KEY.secret, w, count)) for w in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert verify(path) == 2 * count + 1
    seen = {(e["client"], e["n"]) for e in map(json.loads, lines(path)[1:])}
    assert seen == {(f"w{w}", i) for w in range(2) for i in range(count)}


def test_concurrent_appends_from_threads_keep_the_chain_valid(path: Path) -> None:
    log = open_log(path)
    threads = [
        threading.Thread(target=lambda w=w: [log.append("predict", w=w, n=i) for i in range(50)])
        for w in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify(path) == 401


# --- appending from an event loop -------------------------------------------------------------


def test_async_appends_interleaved_with_sync_ones_keep_the_chain_valid(path: Path) -> None:
    log = open_log(path)

    async def burst(worker: int) -> list[dict[str, Any]]:
        return [await log.append_async("verify", w=worker, n=i) for i in range(25)]

    async def main() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(burst(w) for w in range(8)))

    writer = threading.Thread(target=lambda: [log.append("predict", n=i) for i in range(50)])
    writer.start()
    bursts = asyncio.run(main())
    writer.join()

    assert verify(path) == 8 * 25 + 50 + 1
    written = {(e["event"], e.get("w"), e["n"]) for e in map(json.loads, lines(path)[1:])}
    assert {("verify", w, i) for w in range(8) for i in range(25)} <= written
    for entries in bursts:  # what each call returned is what the file holds
        assert all(canonical_json(e) + b"\n" in lines(path) for e in entries)


def test_an_async_append_returns_only_once_an_fsync_covered_its_line(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(path)
    durable = [0]  # file size the last fsync covered
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.01)  # long enough for other appends to queue behind it
        real_fsync(fd)
        durable[0] = max(durable[0], size)

    monkeypatch.setattr("registry.core.audit.os.fsync", slow_fsync)

    async def one(i: int) -> None:
        entry = await log.append_async("verify", n=i)
        line = canonical_json(entry) + b"\n"
        covered = path.read_bytes()[: durable[0]]
        assert line in covered, f"entry {entry['seq']} was returned before an fsync covered it"

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(20)))

    asyncio.run(main())
    assert verify(path) == 21


def test_an_async_append_fails_closed_when_the_fsync_fails(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("registry.core.audit.os.fsync", failing_fsync)
    with pytest.raises(AuditLogUnavailable, match="Input/output error"):
        asyncio.run(log.append_async("verify", n=1))


def test_an_async_append_refuses_bad_fields_before_writing_anything(path: Path) -> None:
    log = open_log(path)
    with pytest.raises(ValueError, match="never raw content"):
        asyncio.run(log.append_async("predict", image=b"\x89PNG"))
    assert len(lines(path)) == 1  # the header alone


class FsyncSpy:
    """os.fsync as the audit module sees it: counts calls, records what they covered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.calls = 0
        self.covered = 0  # file size at the last successful fsync
        self.fail = fail
        self._real = os.fsync
        monkeypatch.setattr("registry.core.audit.os.fsync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        size = os.fstat(fd).st_size
        self._real(fd)
        self.covered = max(self.covered, size)

    def wait_for(self, size: int) -> None:
        deadline = time.monotonic() + 10  # a bound on a hang, not a timing assertion
        while self.covered < size and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.covered >= size, "the written entries were never fsynced"


def test_with_a_sync_interval_async_appends_return_at_once_and_share_a_later_fsync(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(path, sync_interval_s=0.2)
    fsync = FsyncSpy(monkeypatch)

    async def main() -> None:
        for i in range(50):
            await log.append_async("verify", n=i)

    asyncio.run(main())
    assert verify(path) == 51  # every line is written (in the kernel) before its append returns
    fsync.wait_for(path.stat().st_size)
    assert fsync.calls <= 5  # 50 entries in far less than the interval: about one flush


def test_a_sync_append_is_fsynced_before_it_returns_whatever_the_interval(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(path, sync_interval_s=1.0)
    fsync = FsyncSpy(monkeypatch)
    log.append("register", n=1)
    assert fsync.covered == path.stat().st_size


@pytest.mark.parametrize("interval", [0.0, 0.05])
def test_after_a_failed_fsync_every_append_refuses_even_once_fsync_works_again(
    path: Path, monkeypatch: pytest.MonkeyPatch, interval: float
) -> None:
    log = open_log(path, sync_interval_s=interval)
    fsync = FsyncSpy(monkeypatch, fail=True)

    if interval:  # the append itself returns; the flush after it fails
        asyncio.run(log.append_async("verify", n=1))
        deadline = time.monotonic() + 10
        while log.sync_failure is None and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        with pytest.raises(AuditLogUnavailable, match="fsync failed"):
            asyncio.run(log.append_async("verify", n=1))
    fsync.fail = False  # the kernel may have dropped the pages: a retry proves nothing

    with pytest.raises(AuditLogUnavailable, match="fsync failed"):
        log.append("register", n=2)
    with pytest.raises(AuditLogUnavailable, match="fsync failed"):
        asyncio.run(log.append_async("verify", n=3))
    assert len(lines(path)) == 2
    assert open_log(path).append("verify", n=4)["seq"] == 3  # a restart goes on from the file


def test_a_write_that_fails_is_refused_with_the_cause(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(path)

    def full_disk(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("registry.core.audit.os.write", full_disk)
    with pytest.raises(AuditLogUnavailable, match="No space left"):
        log.append("verify", n=1)


@pytest.mark.parametrize("interval", [-0.1, 1.5, float("nan")])
def test_a_sync_interval_outside_zero_to_one_second_is_refused(path: Path, interval: float) -> None:
    with pytest.raises(ValueError, match="sync_interval_s"):
        open_log(path, sync_interval_s=interval)
