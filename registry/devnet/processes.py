"""The processes the dev tooling starts: free loopback ports, process groups, stops, log tails.

Every process started here (anvil, the registry service) leads a process group of its own, and a
stop sends SIGTERM to the process started and then waits for its *whole group* to exit: the npm
launcher (``node_modules/.bin/anvil``) forwards SIGTERM to the real binary and exits at once,
before anvil has finished writing its state, and uvicorn's master exits only after its workers,
which may outlive a master that is killed. Waiting on the started pid alone would report a stop
that has not happened yet. A group that outlives the timeout is SIGKILLed.

POSIX only (signals, process groups), like the rest of the local tooling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from registry.core.nodeinfo import pid_alive, proc_stat

__all__ = [
    "HOST",
    "StopOnExit",
    "free_port",
    "group_alive",
    "kill_group",
    "log_tail",
    "pid_alive",
    "port_in_use",
    "stop_group",
    "stop_process",
    "wait_group_exit",
]

HOST = "127.0.0.1"  # loopback only: the dev accounts are unlocked on these nodes
POLL_S = 0.05
_KILL_WAIT_S = 5.0  # a SIGKILLed group is gone within milliseconds; this only bounds a hang


class StopOnExit(ABC):
    """A started process that ``with`` stops on the way out, whatever happened in the block."""

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """Whether something holds ``port`` on 127.0.0.1 (a listener, or a socket bound to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # anvil (tokio) binds with SO_REUSEADDR; so must the probe, or connections lingering in
        # TIME_WAIT after a stop would make a free port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in process group ``pgid`` (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def wait_group_exit(pgid: int, timeout: float) -> bool:
    """Wait until process group ``pgid`` is empty; False if it still is not after ``timeout``."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop_group(pid: int, pgid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, wait for its group, SIGKILL the group if it is still there after
    ``timeout``. For a process that is not our child (a detached node). True: it stopped on
    SIGTERM; False: it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_group_exit(pgid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    wait_group_exit(pgid, _KILL_WAIT_S)
    return False


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """The same for our own child ``proc``, which leads its group (``process_group=0``); it is
    reaped too. True: it stopped on SIGTERM; False: it had to be killed."""
    deadline = time.monotonic() + timeout
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    left = max(0.0, deadline - time.monotonic())
    if proc.poll() is None or not wait_group_exit(proc.pid, left):
        kill_group(proc)
        return False
    return True


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the group ``proc`` leads and reap ``proc``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(_KILL_WAIT_S)
    wait_group_exit(proc.pid, _KILL_WAIT_S)


def log_tail(path: Path, lines: int = 20, *, start: int = 0) -> str:
    """The last ``lines`` lines of a log file (from byte ``start`` on); "" if it cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(start, fh.tell() - 16_384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
