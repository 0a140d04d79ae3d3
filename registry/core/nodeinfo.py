"""The managed local node's info file: where ``registry chain start`` left its anvil, if it runs.

``registry chain start`` (``registry.devnet``) writes ``<data_dir>/anvil.json`` once its node
answers, and removes it on ``registry chain stop``. A client whose ``REGISTRY_RPC_URL`` is unset
reads it to find that node. Both sides go through this module, so the library finds the node
without importing the tooling that starts it (``registry.devnet`` is for the CLI, scripts and
tests only).

The file is one JSON object, written atomically:

=============  =====  ===========================================================================
``pid``        int    the process started: anvil's platform binary or the npm launcher
``pgid``       int    its process group (a stop waits for all of it); ``pid`` when absent
``port``       int    on 127.0.0.1
``url``        str    ``http://127.0.0.1:<port>``
``chain_id``   int
``state_path`` str    anvil's ``--state`` file; also how a reused pid is told from our node
``log_path``   str
``anvil``      str    the executable run (informational)
``started_at`` str    ISO 8601, UTC (informational)
=============  =====  ===========================================================================

A file that does not parse or lacks a required field reads as no file: it was half-written or
edited by hand, and the next start rewrites it. A file whose pid no longer runs our node is stale.
Liveness comes from ``/proc`` where there is one (POSIX ``kill(pid, 0)`` elsewhere).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from registry.core.files import atomic_write

__all__ = [
    "INFO_FILE",
    "clear_node_info",
    "node_is_running",
    "pid_alive",
    "proc_stat",
    "read_node_info",
    "running_node_info",
    "write_node_info",
]

INFO_FILE = "anvil.json"

# What a reader may rely on; anything else in the file is informational.
_REQUIRED: dict[str, type] = {
    "pid": int,
    "port": int,
    "chain_id": int,
    "url": str,
    "state_path": str,
    "log_path": str,
}


def read_node_info(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The info file's object, or None when there is none or it is not what the writer writes."""
    try:
        info = json.loads((Path(data_dir) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None  # missing, half-written or hand-edited: treated as stale
    if not isinstance(info, dict) or any(
        not isinstance(info.get(name), kind) for name, kind in _REQUIRED.items()
    ):
        return None
    return info


def write_node_info(data_dir: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write the info file; a reader sees the old file or the whole new one, never a mix."""
    atomic_write(Path(data_dir) / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode())


def clear_node_info(data_dir: str | os.PathLike[str]) -> None:
    (Path(data_dir) / INFO_FILE).unlink(missing_ok=True)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) from /proc, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; everything after the last ')' is
    # well formed: state, ppid, pgrp, ...
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: nothing may reap it inside a container)."""
    if Path("/proc").is_dir():
        stat = proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def node_is_running(info: dict[str, Any]) -> bool:
    """The recorded pid still runs *our* anvil (pids get reused after a reboot or a crash)."""
    pid = info["pid"]
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return not Path("/proc").is_dir()  # no /proc to ask: trust the pid
    return str(info.get("state_path", "")) in cmdline


def running_node_info(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The info file's object if its node still runs, else None (a stale file is left alone)."""
    info = read_node_info(data_dir)
    if info is None or not node_is_running(info):
        return None
    return info
