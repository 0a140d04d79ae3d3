"""Append-only audit log (one JSON object per line): the writer.

Every register, revoke, verify, predict and download is recorded here, and so is every refused
request (``audit_refusals``). The line format and its keyed hash chain are ``audit_chain``'s
job, the key's file ``audit_key``'s; this module appends lines so that the chain stays valid
whatever happens around it.

Only identifiers go in: digests, addresses, block numbers, verdicts, reason codes, client ids.
``append`` refuses bytes, containers, floats and long strings, so image content or free text can
never end up here (no patient data in logs).

A new log starts with its header line (how the chain is keyed, and the key id). A log keyed with
another key, or an unkeyed one of the release before keys, is refused when the log is opened:
nothing is appended that its verifier could not check with one key.

Several worker processes append to the same file: each write takes a lock within the process
and ``flock`` across processes, re-reads the current last line under that lock and writes one line
with one ``write``. If the file was replaced meanwhile (``registry audit rotate``), the writer
follows the name to the new file. ``append`` returns only once an fsync has covered its line (one
fsync serves every append queued behind it, so concurrent requests share the cost).
``append_async`` writes the line on the event loop and leaves the fsync to a thread: before it
returns, or within ``sync_interval_s`` (a choice per log; see its docstring). A line torn by a
crash makes the next append refuse (fail closed) rather than continue a chain from a line nobody
can check.

Each append also tells the caller, through ``last_appended()``, which entry it wrote: its global
index across rotated files (``audit_tree``) and its exact line, the leaf of the log's Merkle tree.
That is what a prediction's receipt names. It is a context variable, not a return value, so the
callers that only record (most of them) are not changed; an ``await`` of ``append_async`` or a
call of ``append`` in the same context sees its own entry, never another request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import fcntl
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from registry.core.audit_chain import (
    GENESIS_PREV,
    HEADER_EVENT,
    MAX_LINE_BYTES,
    RESERVED,
    canonical_json,
    check_entry,
    header_fields,
    header_problem,
    make_line,
    parse_line,
    sha256_hex,
    verify,
)
from registry.core.audit_key import AuditKey
from registry.core.audit_tree import first_index
from registry.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigurationError

__all__ = ["GENESIS_PREV", "Appended", "AuditLog", "canonical_json", "last_appended", "verify"]

MAX_VALUE_CHARS = 512  # a digest is 64, an address 42: 512 leaves room for ids, not for content
MAX_FIELDS = 32
_MAX_INT = 2**256  # uint256 block numbers, amounts, ids; also keeps int->str conversion cheap
# The longest a service may leave an entry in the page cache before it is fsynced.
MAX_SYNC_INTERVAL_S = 1.0
_EVENT_RE = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

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


@dataclasses.dataclass(frozen=True)
class Appended:
    """The entry an append wrote: its global index (None when a sealed file before this one is
    missing, so entries cannot be counted) and its line without the newline (the Merkle leaf)."""

    index: int | None
    line: bytes


_appended: contextvars.ContextVar[Appended | None] = contextvars.ContextVar(
    "audit_appended", default=None
)


def last_appended() -> Appended | None:
    """The entry the last append in this context wrote (None if none did)."""
    return _appended.get()


def _lock_for(key: str) -> threading.Lock:
    """The lock of the log file whose real path is ``key``."""
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _check_field(name: str, value: object) -> None:
    if name in RESERVED:
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


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read_first_line(fd: int) -> bytes | None:
    """The first line of the file (no newline), or None if it has no complete first line."""
    head = os.pread(fd, MAX_LINE_BYTES + 1, 0)
    end = head.find(b"\n")
    return head[:end] if end >= 0 else None


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


_UNKEYED_ADVICE = (
    "Nothing is appended to it. To keep it as evidence and go on with a keyed log, stop the "
    "service and run `registry audit rotate` (it checks the old chain, keeps the file beside "
    "the new log and seals its last entry into the new log's first line); a log keyed with "
    "another key needs that key (REGISTRY_AUDIT_KEY_FILE)"
)


class AuditLog:
    """Appends hash-chained entries to one JSON-lines file; safe across threads and processes."""

    def __init__(
        self, path: str | os.PathLike[str], key: AuditKey, *, sync_interval_s: float = 0.0
    ) -> None:
        if not 0 <= sync_interval_s <= MAX_SYNC_INTERVAL_S:
            raise ValueError(
                f"sync_interval_s={sync_interval_s!r}: give 0 (fsync before an append returns) "
                f"or at most {MAX_SYNC_INTERVAL_S} seconds"
            )
        self.path = Path(path)
        self.sync_interval_s = sync_interval_s
        self._mac_key = key
        self._lock_key = os.path.realpath(self.path)  # one lock per file, however it is named
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
        self._file: tuple[int, int] | None = None  # (device, inode) whose header was checked
        self._end = -1  # file size right after our last append: the file's end if nobody else wrote
        self._last_line_bytes = 0
        self._last_line = b""
        self._first_index: int | None = 0  # global index of the file's first line (audit_tree)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file (with its header) now, and check its header and that its last line
        # can be chained to, so that a log this key cannot continue is reported at start-up
        # rather than on the first request.
        with _lock_for(self._lock_key):
            fd = self._open_locked(create=True)
            try:
                self._adopt(fd, at_start=True)
                self._seq, self._prev = self._tail_state(fd)
            finally:
                os.close(fd)  # closing releases the flock
        if self._seq == 1 and self._written:
            self._sync(self._written)  # a new log's header is on disk before anything relies on it

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    @property
    def key_id(self) -> str:
        """The id of the key this log's chain is keyed with (never the key)."""
        return self._mac_key.id

    @property
    def sync_failure(self) -> str | None:
        """Why this log refuses every append (an fsync that failed), or None while it accepts
        them: a health check or a test reads it instead of provoking an append."""
        return self._sync_failure

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry: what to anchor outside (``registry audit head`` prints
        it after checking the whole chain)."""
        with _lock_for(self._lock_key):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                seq, _ = self._tail_state(fd)
                found = _read_last_line(fd)
            finally:
                os.close(fd)
        if found is None:
            return 0, GENESIS_PREV
        return seq, str(parse_line(found[0])["hash"])

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
        if event == HEADER_EVENT:
            raise ValueError(f"audit event {event!r} is reserved for the log's first line")
        if len(fields) > MAX_FIELDS:
            raise ValueError(f"an audit entry takes at most {MAX_FIELDS} fields, got {len(fields)}")
        for name, value in fields.items():
            _check_field(name, value)
        self._refuse_after_failure()

        with _lock_for(self._lock_key):
            fd = self._open_locked(create=False)
            try:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) != self._file:
                    self._adopt(fd, at_start=False)  # rotated: check the new file's header
                # Another process may have appended since we last looked: chain to the file,
                # not to what this object remembers. If the file still ends where our own last
                # line ended, that line is the last one and re-reading it would tell nothing new.
                size = os.fstat(fd).st_size
                if size == self._end:
                    seq, prev = self._seq, self._prev
                else:
                    seq, prev = self._tail_state(fd)
                    if size < self._end:  # whole lines cut from the end of the file we wrote
                        raise AuditLogCorrupt(
                            str(self.path),
                            seq + 1,
                            f"the file shrank from {self._end} to {size} bytes while this "
                            "service wrote to it: lines were removed from its end",
                        )
                entry = self._write_line(fd, event, fields, seq + 1, prev)
                self._end = size + self._last_line_bytes
                base = self._first_index
                _appended.set(Appended(None if base is None else base + seq, self._last_line))
                return entry, self._written
            finally:
                os.close(fd)

    def _write_line(
        self, fd: int, event: str, fields: dict[str, Any], seq: int, prev: str
    ) -> dict[str, Any]:
        """Write entry ``seq`` after a line hashing to ``prev`` with one ``write`` (lock held)."""
        entry, line = make_line(event, fields, seq, prev, self._mac_key)
        view = memoryview(line)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:  # e.g. a full disk; a torn line also stops the next one
            raise AuditLogUnavailable(str(self.path), f"writing failed ({exc})") from exc
        self._seq, self._prev = seq, sha256_hex(line[:-1])
        self._last_line_bytes = len(line)
        self._last_line = line[:-1]
        self._written += 1
        return entry

    def _open_locked(self, *, create: bool) -> int:
        """The log file, open for appending and exclusively locked. A file replaced while this
        waited for the lock (``registry audit rotate`` links the old one aside and renames the
        new one in) is let go: what the name points at is the log."""
        for _ in range(8):
            flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
            try:
                fd = os.open(self.path, flags, 0o640)
            except FileNotFoundError:
                raise AuditLogUnavailable(
                    str(self.path),
                    "the file is gone (moved or deleted while the service ran); nothing is "
                    "recorded until it is back or the service is restarted",
                ) from None
            except OSError as exc:
                raise AuditLogUnavailable(str(self.path), f"opening failed ({exc})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                info = os.fstat(fd)
                try:
                    named = os.stat(self.path)
                except FileNotFoundError:
                    named = None
            except BaseException:
                os.close(fd)
                raise
            if named is not None and (named.st_dev, named.st_ino) == (info.st_dev, info.st_ino):
                return fd
            os.close(fd)
        raise AuditLogUnavailable(str(self.path), "the file kept being replaced during a write")

    def _adopt(self, fd: int, *, at_start: bool) -> None:
        """Take the open file as this log's (lock held): write the header into an empty one,
        else check that its header is keyed with this log's key."""
        info = os.fstat(fd)
        if info.st_size == 0:
            self._write_line(fd, HEADER_EVENT, header_fields(self._mac_key), 1, GENESIS_PREV)
        else:
            first = read_first_line(fd)
            problem = None
            if first is not None:  # a torn first line is the tail check's to report
                try:
                    problem = header_problem(parse_line(first), self._mac_key)
                except ValueError as exc:
                    raise AuditLogCorrupt(str(self.path), 1, str(exc)) from None
            if problem is not None and at_start:
                raise ConfigurationError(
                    f"audit log {self.path} cannot be continued with this key: {problem}. "
                    + _UNKEYED_ADVICE,
                    path=str(self.path),
                    key_id=self._mac_key.id,
                )
            if problem is not None:
                raise AuditLogUnavailable(str(self.path), f"the file was replaced: {problem}")
        self._file = (info.st_dev, info.st_ino)
        # Where this file's lines start in the whole log: its seal chain, read once per file.
        self._first_index = first_index(self.path.parent, read_first_line(fd))
        self._end = -1  # a file this object has not written to yet

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
            entry = parse_line(last)
            seq = entry.get("seq")
            if type(seq) is not int or seq < 1:
                raise ValueError(f"seq is {seq!r}")
            # Its own hash and canonical form; the link to the line before is verify()'s job.
            check_entry(last, seq, str(entry.get("prev")), self._mac_key)
        except (UnicodeDecodeError, ValueError) as exc:
            # A complete last line is line number == count of newlines; a torn one is one more.
            lines = _count_lines(self.path) + (0 if framing is None else 1)
            raise AuditLogCorrupt(
                str(self.path),
                lines,
                f"the last line cannot be chained to ({exc}); nothing more is appended until "
                "the log is restored",
            ) from None
        return seq, sha256_hex(last)
