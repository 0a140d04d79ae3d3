"""Append-only, hash-chained audit log (one JSON object per line).

A compliance officer must be able to ask "which model answered this request, on what evidence, and
was it valid then?" long after the fact, and trust that nobody rewrote the answer. Each line
therefore carries the SHA-256 of the line before it (``prev``) and the SHA-256 of its own canonical
content (``hash``): editing, deleting, inserting or reordering any line breaks the chain at a line
``verify`` can name. Removing lines from the *end* leaves a shorter chain that is still valid; only
an outside witness of a later entry (``verify(path, anchor=(seq, hash))``, e.g. a head hash that was
anchored on chain) can detect that, which is why ``AuditLog.head()`` exists.

Format of line ``n`` (1-based; ``seq == n``), written as canonical JSON (sorted keys, no spaces,
ASCII only) followed by ``\\n``::

    {"event": "...", "hash": H, "prev": P, "seq": n, "time": "2025-01-01T00:00:00.000000Z", ...}

    P = sha256(bytes of line n-1 without its newline), or 64 zeros for line 1
    H = sha256(canonical JSON of the entry without "hash")

Only identifiers go in: digests, addresses, block numbers, verdicts, reason codes, client ids.
``append`` refuses bytes, containers, floats and long strings, so image content or free text can
never end up here (no patient data in logs).

Several worker processes append to the same file: each write takes a lock within the process
and ``flock`` across processes, re-reads the current last line under that lock and writes one line
with one ``write``. ``append`` returns only once an fsync has covered its line (one fsync serves
every append queued behind it, so concurrent requests share the cost). ``append_async`` writes the
line on the event loop and leaves the fsync to a thread: before it returns, or within
``sync_interval_s`` (a choice per log; see its docstring). A line torn by a crash makes the next
append refuse (fail closed) rather than continue a chain from a line nobody can check.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from registry.core.digest import HEX64
from registry.core.times import now_iso_utc
from registry.errors import AuditLogCorrupt, AuditLogUnavailable

GENESIS_PREV = "0" * 64
MAX_VALUE_CHARS = 512  # a digest is 64, an address 42: 512 leaves room for ids, not for content
MAX_FIELDS = 32
_MAX_INT = 2**256  # uint256 block numbers, amounts, ids; also keeps int->str conversion cheap
# Upper bound of one canonical line; anything longer in the file was not written by append().
MAX_LINE_BYTES = 256 * 1024
# The longest a service may leave an entry in the page cache before it is fsynced.
MAX_SYNC_INTERVAL_S = 1.0
_RESERVED = frozenset({"seq", "time", "event", "prev", "hash"})
_EVENT_RE = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')

# One lock per log file within this process: flock excludes other processes (and other open file
# descriptions), the thread lock keeps threads sharing this module from interleaving.
_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _reset_locks_after_fork() -> None:
    # A child forked while another thread held a lock would otherwise inherit it locked forever.
    global _locks_guard, _locks
    _locks_guard = threading.Lock()
    _locks = {}


os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _lock_for(key: str) -> threading.Lock:
    """The lock of the log file whose real path is ``key``."""
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def canonical_json(obj: dict[str, Any]) -> bytes:
    """The one serialisation that is hashed and written: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_field(name: str, value: object) -> None:
    if name in _RESERVED:
        raise ValueError(f"audit field {name!r} is reserved for the log itself; rename it")
    if _FIELD_RE.fullmatch(name) is None:
        raise ValueError(f"audit field name {name!r} must be an identifier of at most 64 chars")
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(
            f"audit field {name!r} is {type(value).__name__}; the log takes only identifiers "
            "(digests, addresses, reason codes), never raw content: pass a hex digest instead"
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_MAX_INT < value < _MAX_INT:
            raise ValueError(f"audit field {name!r} is an integer outside ±2**256")
        return
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(
                f"audit field {name!r} is {len(value)} characters long, over the limit of "
                f"{MAX_VALUE_CHARS}; log a digest or an id, never content"
            )
        return
    raise ValueError(
        f"audit field {name!r} is a {type(value).__name__}; the log takes only str, int, bool "
        "or None (floats are not canonical: give accuracies in basis points)"
    )


def _settle(waiting: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in waiting:
        if done.cancelled():  # the request went away; its entry is written all the same
            continue
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(None)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_line(raw: bytes) -> dict[str, Any]:
    """Parse one line as a flat JSON object; raise ``ValueError(problem)`` otherwise."""
    # Entries are flat. Checking that before json.loads matters: the C decoder recurses per
    # nesting level up to the recursion limit, which web3's dependencies raise to 100 000, so a
    # forged line of 200 000 '[' would overflow the C stack and kill the verifier.
    structure = _JSON_STRING.sub(b"", raw)
    if not raw.startswith(b"{") or structure.count(b"{") != 1 or b"[" in structure:
        raise ValueError(
            "not a flat JSON object (an entry holds only strings, integers, booleans and null)"
        )
    try:
        entry = json.loads(raw.decode("ascii"), object_pairs_hook=_reject_duplicate_keys)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"not a JSON line ({exc})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"not a JSON object but {type(entry).__name__}")
    return entry


def _check_entry(raw: bytes, lineno: int, prev_hash: str) -> dict[str, Any]:
    """Return the parsed entry on line ``lineno``; raise ``ValueError(problem)`` if it is bad."""
    entry = _parse_line(raw)
    missing = sorted(_RESERVED - entry.keys())
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    seq, claimed, prev = entry["seq"], entry["hash"], entry["prev"]
    if not isinstance(claimed, str) or HEX64.fullmatch(claimed) is None:
        raise ValueError(f"hash {claimed!r} is not 64 lowercase hex characters")
    if not isinstance(prev, str) or HEX64.fullmatch(prev) is None:
        raise ValueError(f"prev {prev!r} is not 64 lowercase hex characters")
    try:
        canonical = canonical_json(entry)
    except ValueError as exc:
        raise ValueError(f"not canonical JSON ({exc})") from None
    if raw != canonical:
        raise ValueError("line is not in canonical form (it was re-serialised or edited by hand)")
    body = {k: v for k, v in entry.items() if k != "hash"}
    actual = _sha256_hex(canonical_json(body))
    if actual != claimed:
        raise ValueError(
            f"content does not match its hash (recorded {claimed[:12]}…, computed {actual[:12]}…)"
        )
    if type(seq) is not int or seq != lineno:
        raise ValueError(f"seq is {seq!r}, expected {lineno} (a line was removed, added or moved)")
    if prev != prev_hash:
        raise ValueError(
            f"prev {prev[:12]}… does not match the line before it ({prev_hash[:12]}…): "
            "a line was removed, inserted or moved here"
        )
    return entry


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _read_last_line(fd: int) -> tuple[bytes, str | None] | None:
    """The last line (no newline) and what is wrong with its framing, if anything; None if empty."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    window = min(size, MAX_LINE_BYTES + 2)
    tail = os.pread(fd, window, size - window)
    if not tail.endswith(b"\n"):
        # The last write was torn (crash mid-line) or the file was edited: nothing to chain to.
        return tail[tail.rfind(b"\n") + 1 :], "it is incomplete (no newline): a write was cut off"
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    if start == 0 and window < size:
        return tail[:-1], f"it is longer than {MAX_LINE_BYTES} bytes"
    return tail[start:-1], None


def verify(path: str | os.PathLike[str], *, anchor: tuple[int, str] | None = None) -> int:
    """Check the whole chain in ``path``; return the number of entries.

    ``anchor=(seq, hash)`` is an entry known from outside the file (e.g. a head hash anchored on
    chain); the log must still contain it, which detects lines cut from the end.
    Raises ``AuditLogCorrupt(path, line, problem)`` at the first line where the chain does not hold
    (line 0: the file as a whole).
    """
    p = Path(path)
    prev_hash = GENESIS_PREV
    lineno = 0
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise AuditLogCorrupt(str(p), 0, "the file does not exist") from None
    with f:
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if not raw.endswith(b"\n"):
                problem = (
                    f"line is longer than {MAX_LINE_BYTES} bytes"
                    if len(raw) > MAX_LINE_BYTES
                    else "last line is incomplete (no newline): a write was cut off or the file "
                    "was truncated"
                )
                raise AuditLogCorrupt(str(p), lineno, problem)
            line = raw[:-1]
            try:
                entry = _check_entry(line, lineno, prev_hash)
            except ValueError as exc:
                raise AuditLogCorrupt(str(p), lineno, str(exc)) from None
            if anchor is not None and lineno == anchor[0] and entry["hash"] != anchor[1]:
                raise AuditLogCorrupt(
                    str(p),
                    lineno,
                    f"entry {lineno} has hash {entry['hash'][:12]}…, but the anchor says "
                    f"{anchor[1][:12]}…",
                )
            prev_hash = _sha256_hex(line)
    if anchor is not None and lineno < anchor[0]:
        raise AuditLogCorrupt(
            str(p),
            lineno + 1,
            f"the log ends after {lineno} entries, but entry {anchor[0]} was anchored: "
            "lines were removed from the end",
        )
    return lineno


class AuditLog:
    """Appends hash-chained entries to one JSON-lines file; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str], *, sync_interval_s: float = 0.0) -> None:
        if not 0 <= sync_interval_s <= MAX_SYNC_INTERVAL_S:
            raise ValueError(
                f"sync_interval_s={sync_interval_s!r}: give 0 (fsync before an append returns) "
                f"or at most {MAX_SYNC_INTERVAL_S} seconds"
            )
        self.path = Path(path)
        self.sync_interval_s = sync_interval_s
        self._key = os.path.realpath(self.path)  # one lock per file, however it is named
        self._sync_lock = threading.Lock()
        self._sync_failure: str | None = None  # an fsync that failed: every later append refuses
        # The sync thread's work: appends waiting for an fsync (ticket, future), or a flush due
        # within sync_interval_s.
        self._sync_wanted = threading.Condition()
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._flush_due = False
        self._syncer: threading.Thread | None = None
        self._written = 0  # appends written by this object (under the path's lock)
        self._synced = 0  # of those, how many are known to be on disk
        self._end = -1  # file size right after our last append: the file's end if nobody else wrote
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file now, and check that its last line can be chained to, so that a broken
        # log is reported at start-up rather than on the first request.
        with _lock_for(self._key):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                self._seq, self._prev = self._tail_state(fd)
            finally:
                os.close(fd)  # closing releases the flock

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    @property
    def sync_failure(self) -> str | None:
        """Why this log refuses every append (an fsync that failed), or None while it accepts
        them: a health check or a test reads it instead of provoking an append."""
        return self._sync_failure

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, (0, 64 zeros) for an empty log: what to anchor outside."""
        with _lock_for(self._key):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                seq, _ = self._tail_state(fd)
                found = _read_last_line(fd)
            finally:
                os.close(fd)
        if found is None:
            return 0, GENESIS_PREV
        return seq, str(_parse_line(found[0])["hash"])

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one entry and return it (with ``seq``, ``time``, ``prev`` and ``hash``) once it
        is on disk."""
        entry, ticket = self._write(event, fields)
        self._sync(ticket)
        return entry

    async def append_async(self, event: str, **fields: Any) -> dict[str, Any]:
        """``append`` for an event loop, which it never blocks on fsync.

        The line is written right here (a page-cache write of a few hundred bytes, microseconds),
        so a crash of this process never loses it. The fsync is the sync thread's job:

        - ``sync_interval_s == 0``: this returns once an fsync covered the line; the thread
          flushes everything written by then with one call and wakes every append waiting for it.
        - otherwise this returns at once, and the thread flushes within ``sync_interval_s``: a
          crash of the machine (not of the process) can lose the entries of that last interval.

        A failed fsync (or write) fails this append and every later one: nothing is recorded,
        and so nothing is served, until the log is looked at and the service restarted.
        """
        entry, ticket = self._write(event, fields)
        if self.sync_interval_s:
            self._want_sync(None)
        elif self._synced < ticket:
            done = asyncio.get_running_loop().create_future()
            self._want_sync((ticket, done))
            await done
        return entry

    def flush(self) -> None:
        """fsync everything this object wrote (e.g. at shutdown)."""
        self._sync(self._written)

    def _want_sync(self, waiter: tuple[int, asyncio.Future[None]] | None) -> None:
        with self._sync_wanted:
            if waiter is not None:
                self._waiting.append(waiter)
            elif self._flush_due:
                return  # already due: that flush will cover this entry too
            else:
                self._flush_due = True
            if self._syncer is None or not self._syncer.is_alive():
                self._syncer = threading.Thread(
                    target=self._sync_forever, name=f"audit-sync {self.path.name}", daemon=True
                )
                self._syncer.start()
            self._sync_wanted.notify()

    def _sync_forever(self) -> None:
        """The sync thread: one fsync for everything written so far, then wake its waiters."""
        while True:
            with self._sync_wanted:
                while not self._waiting and not self._flush_due:
                    self._sync_wanted.wait()
                gather = not self._waiting
            if gather:  # nobody waits: let the interval's entries share one fsync
                time.sleep(self.sync_interval_s)
            with self._sync_wanted:
                waiting, self._waiting, self._flush_due = self._waiting, [], False
            error: BaseException | None = None
            try:
                self.flush()
            except BaseException as exc:  # every waiting append fails closed with the cause
                error = exc
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, done in waiting:
                by_loop.setdefault(done.get_loop(), []).append(done)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, futures, error)

    def _write(self, event: str, fields: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Chain one entry after the file's last line with one ``write``; return it and the
        ticket ``_sync`` takes to make it durable."""
        if not isinstance(event, str) or _EVENT_RE.fullmatch(event) is None:
            raise ValueError(
                f"audit event {event!r} must be a lowercase code like 'verify' or 'gate.refused'"
            )
        if len(fields) > MAX_FIELDS:
            raise ValueError(f"an audit entry takes at most {MAX_FIELDS} fields, got {len(fields)}")
        for name, value in fields.items():
            _check_field(name, value)
        self._refuse_after_failure()

        with _lock_for(self._key):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Another process may have appended since we last looked: chain to the file,
                # not to what this object remembers. If the file still ends where our own last
                # line ended, that line is the last one and re-reading it would tell nothing new.
                size = os.fstat(fd).st_size
                if size == self._end:
                    seq, prev = self._seq, self._prev
                else:
                    seq, prev = self._tail_state(fd)
                entry: dict[str, Any] = {
                    **fields,
                    "seq": seq + 1,
                    "time": now_iso_utc(),
                    "event": event,
                    "prev": prev,
                }
                entry["hash"] = _sha256_hex(canonical_json(entry))
                line = canonical_json(entry) + b"\n"
                # Unreachable with today's caps (32 x 512 chars, 12 bytes per escaped char at
                # most); kept so that raising a cap can never produce a line verify() refuses.
                if len(line) > MAX_LINE_BYTES:
                    raise ValueError(f"audit entry would be {len(line)} bytes, over the limit")
                view = memoryview(line)
                try:
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                except OSError as exc:  # e.g. a full disk; a torn line also stops the next one
                    raise AuditLogUnavailable(str(self.path), f"writing failed ({exc})") from exc
                self._seq, self._prev = entry["seq"], _sha256_hex(line[:-1])
                self._end = size + len(line)
                self._written += 1
                return entry, self._written
            finally:
                os.close(fd)

    def _sync(self, ticket: int) -> None:
        """Return once the ``ticket``-th write of this object is on disk (group commit).

        fsync flushes the whole file, so one call makes every write before it durable: threads
        that queue here while it runs find their write already covered and skip their own. No
        caller returns before its entry is durable, and the exclusive lock is not held meanwhile.
        After a failed fsync the kernel may have dropped the dirty pages and a retry can succeed
        without them, so a failure is remembered and refuses every later append.
        """
        with self._sync_lock:
            self._refuse_after_failure()
            if self._synced >= ticket:
                return
            target = self._written
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._sync_failure = (
                    f"an fsync failed ({exc}), so entries written since the last good one may "
                    "not be on disk"
                )
                raise AuditLogUnavailable(str(self.path), self._sync_failure) from exc
            self._synced = target

    def _refuse_after_failure(self) -> None:
        if self._sync_failure is not None:
            raise AuditLogUnavailable(str(self.path), self._sync_failure)

    def _tail_state(self, fd: int) -> tuple[int, str]:
        """(seq of the last entry, sha256 of the last line), read from the file itself."""
        found = _read_last_line(fd)
        if found is None:
            return 0, GENESIS_PREV
        last, framing = found
        try:
            if framing is not None:
                raise ValueError(framing)
            entry = _parse_line(last)
            seq = entry.get("seq")
            if type(seq) is not int or seq < 1:
                raise ValueError(f"seq is {seq!r}")
            # Its own hash and canonical form; the link to the line before is verify()'s job.
            _check_entry(last, seq, str(entry.get("prev")))
        except (UnicodeDecodeError, ValueError) as exc:
            # A complete last line is line number == count of newlines; a torn one is one more.
            lines = _count_lines(self.path) + (0 if framing is None else 1)
            raise AuditLogCorrupt(
                str(self.path),
                lines,
                f"the last line cannot be chained to ({exc}); nothing more is appended until "
                "the log is restored",
            ) from None
        return seq, _sha256_hex(last)
