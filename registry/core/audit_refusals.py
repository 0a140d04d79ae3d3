"""Refused requests in the audit log, counted per time window so that a flood cannot grow it.

A request the service refuses before any route records it (no key, a key without the role, a
body over the limit or too slow, another site's browser, a malformed request) must leave a trace
for the compliance officer who asks "who tried to register, and how often?". One line per refused
request would let anyone fill the disk with 401s, so refusals are counted instead: per process,
per kind (outcome code, status, caller, route), and written when the window closes (every
``window_s`` seconds, and when the service stops) as one ``refused`` entry per kind with its
``count`` and the time of its first and last request.

A window holds at most ``max_kinds`` kinds; refusals of further kinds (a flood from ever new
addresses) are lumped into one entry whose fields are ``*``. So a window writes at most
``max_kinds + 1`` lines, whatever arrives, and the memory it holds is bounded the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from registry.core.audit import AuditLog
from registry.core.times import now_iso_utc
from registry.errors import RegistryError

log = logging.getLogger("registry.audit")

WINDOW_S = 60
MAX_KINDS = 64
EVENT = "refused"
# (outcome code, HTTP status, caller id, route): what one `refused` entry counts.
Kind = tuple[str, int | None, str, str]
LUMPED: Kind = ("*", None, "*", "*")


@dataclass
class _Tally:
    count: int
    first: str
    last: str


class RefusalCounter:
    """Counts refusals per kind for the current window; ``flush`` writes and restarts it."""

    def __init__(
        self, audit: AuditLog, *, window_s: int = WINDOW_S, max_kinds: int = MAX_KINDS
    ) -> None:
        if window_s < 1 or max_kinds < 1:
            raise ValueError(f"window_s={window_s} and max_kinds={max_kinds} must be 1 or more")
        self.audit = audit
        self.window_s = window_s
        self.max_kinds = max_kinds
        self._lock = threading.Lock()
        self._tallies: dict[Kind, _Tally] = {}

    def record(self, outcome: str, status: int | None, who: str, route: str) -> None:
        """Count one refused request (no I/O: cheap enough for the event loop, and for a flood)."""
        self._add((outcome, status, who, route), 1, now_iso_utc(), None)

    @property
    def pending(self) -> int:
        """Refusals counted and not yet written."""
        with self._lock:
            return sum(t.count for t in self._tallies.values())

    def flush(self) -> int:
        """Write one entry per kind counted since the last flush; return how many were written.

        If the log refuses (a full disk), what was not written is counted again in the next
        window, and the error is raised: nothing is dropped quietly."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        items = list(tallies.items())
        for done, (kind, tally) in enumerate(items):
            try:
                self.audit.append(EVENT, **_fields(kind, tally, self.window_s))
            except BaseException:
                for again, left in items[done:]:
                    self._add(again, left.count, left.first, left.last)
                raise
        return len(items)

    @contextlib.asynccontextmanager
    async def flushing(self) -> AsyncIterator[None]:
        """Flush at the end of every window while the block runs, and once more when it ends
        (a service's lifespan: the last window is written at shutdown)."""
        task = asyncio.create_task(self._flush_every_window(), name="audit refusal windows")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await asyncio.to_thread(self.flush)
            except RegistryError as exc:
                log.error("refused requests could not be recorded at shutdown: %s", exc)

    async def _flush_every_window(self) -> None:
        while True:
            await asyncio.sleep(self.window_s)
            try:
                # A thread: each entry is fsynced before the next, which the loop must not wait on.
                await asyncio.to_thread(self.flush)
            except RegistryError as exc:  # counted again, tried again at the next window
                log.error(
                    "refused requests could not be recorded (%d pending): %s", self.pending, exc
                )

    def _add(self, kind: Kind, count: int, first: str, last: str | None) -> None:
        with self._lock:
            tally = self._tallies.get(kind)
            if tally is None and len(self._tallies) >= self.max_kinds:
                kind = LUMPED
                tally = self._tallies.get(kind)
            if tally is None:
                # The lumped kind may take the slot past max_kinds: max_kinds + 1 entries at most.
                self._tallies[kind] = _Tally(count, first, last or first)
            else:
                tally.count += count
                tally.first = min(tally.first, first)
                tally.last = max(tally.last, last or first)


def _fields(kind: Kind, tally: _Tally, window_s: int) -> dict[str, Any]:
    outcome, status, who, route = kind
    return {
        "outcome": outcome,
        "status": status,
        "who": who,
        "route": route,
        "count": tally.count,
        "first": tally.first,
        "last": tally.last,
        "window_s": window_s,
        "pid": os.getpid(),  # which worker counted them: each process has its own windows
    }
