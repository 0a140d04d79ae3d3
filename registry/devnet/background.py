"""The detached anvil of ``registry chain start|stop|status``: a node that outlives its starter.

It runs the same command line as ``AnvilNode`` (same checks, same state file, so stop + start
keeps every record), in a session of its own. Where it runs is recorded in ``data_dir/anvil.json``
(``registry.core.nodeinfo`` reads and writes it; the library finds the node there when
``REGISTRY_RPC_URL`` is unset). ``data_dir/anvil.lock`` serialises starts and stops on one data
directory (two terminals running ``registry chain start``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry.core.nodeinfo import (
    INFO_FILE,
    clear_node_info,
    node_is_running,
    pid_alive,
    read_node_info,
    running_node_info,
    write_node_info,
)
from registry.core.times import now_iso_utc
from registry.devnet.node import DEFAULT_CHAIN_ID, AnvilNode
from registry.devnet.processes import HOST, port_in_use, stop_group, wait_group_exit
from registry.devnet.rpc import json_rpc, wait_ready
from registry.errors import ChainError, ConfigurationError

__all__ = ["DEFAULT_PORT", "background_status", "start_background", "stop_background"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8545  # anvil's own default, for the long-lived background node
_LOCK_FILE = "anvil.lock"


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one data directory (two terminals running `chain start`)."""
    with (data_dir / _LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start_background(
    data_dir: str | os.PathLike[str],
    port: int = DEFAULT_PORT,
    chain_id: int = DEFAULT_CHAIN_ID,
    *,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Start a detached anvil serving ``data_dir`` (or find the one already running).

    Returns the contents of ``data_dir/anvil.json`` - ``pid``, ``pgid``, ``port``, ``url``,
    ``chain_id``, ``state_path``, ``log_path``, ``started_at`` - plus ``already_running``.
    The node lives in its own session, so it survives the caller and its terminal.
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        info = read_node_info(directory)
        if info is not None and node_is_running(info):
            if info.get("port") != port or info.get("chain_id") != chain_id:
                raise ConfigurationError(
                    f"an anvil for {directory} already runs on port {info.get('port')} with chain "
                    f"id {info.get('chain_id')} (pid {info['pid']}), not port {port} / chain id "
                    f"{chain_id}; stop it first (`registry chain stop`)",
                    **info,
                )
            running_pid = info["pid"]
            wait_ready(
                info["url"],
                chain_id,
                timeout,
                Path(info["log_path"]),
                lambda: None if pid_alive(running_pid) else "unknown: not our child",
            )
            return {**info, "already_running": True}
        if info is not None:
            log.info("removing stale %s (pid %s is gone)", directory / INFO_FILE, info["pid"])
            clear_node_info(directory)

        node = AnvilNode(directory, port=port, chain_id=chain_id)
        binary = node.prepare()
        if port_in_use(port):
            raise ConfigurationError(
                f"port {port} on {HOST} is already in use; stop whatever listens there "
                "or start the chain on another port",
                port=port,
            )
        pid, pgid = _spawn_detached(node.command(binary, port), node.log_path)
        try:
            wait_ready(
                node.url,
                chain_id,
                timeout,
                node.log_path,
                lambda: None if pid_alive(pid) else "unknown: detached",
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_group_exit(pgid, 5.0)
            raise
        info = {
            "pid": pid,
            "pgid": pgid,
            "port": port,
            "url": node.url,
            "chain_id": chain_id,
            "state_path": str(node.state_path),
            "log_path": str(node.log_path),
            "anvil": str(binary),
            "started_at": now_iso_utc(),
        }
        write_node_info(directory, info)
        return {**info, "already_running": False}


def _spawn_detached(cmd: list[str], log_path: Path) -> tuple[int, int]:
    """Run ``cmd`` in a new session whose parent is not us; return (pid, process group).

    A shell in a new session backgrounds anvil, prints its pid and exits; anvil is re-parented to
    init, so the caller leaves no zombie behind and may exit at once.
    """
    with log_path.open("ab") as log_fh:
        log_fh.write(f"--- {now_iso_utc()} starting detached\n".encode())
    launcher = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    shell = subprocess.run(
        ["/bin/sh", "-c", launcher, "sh", str(log_path), *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        check=True,
        timeout=10,
    )
    pid = int(shell.stdout.strip())
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid  # died already; wait_ready reports it with the log tail
    return pid, pgid


def stop_background(data_dir: str | os.PathLike[str], *, timeout: float = 10.0) -> bool:
    """Stop the background anvil serving ``data_dir`` gracefully, so its state is saved.

    Returns True if a node was stopped, False if none was running (a stale pid file is removed).
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        return False
    with _locked(directory):
        info = read_node_info(directory)
        if info is None or not node_is_running(info):
            clear_node_info(directory)
            return False
        pid = info["pid"]
        if not stop_group(pid, int(info.get("pgid", pid)), timeout):
            log.warning(
                "background anvil (pid %s) did not exit within %g s of SIGTERM and was killed. "
                "Up to the last state interval of chain state may be lost",
                pid,
                timeout,
            )
        clear_node_info(directory)
        return True


def background_status(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``data_dir/anvil.json`` says, if that node still runs; None if none does.

    Adds ``answering`` (bool) and ``block_number`` (int, or None when it does not answer).
    Read-only: a stale pid file is left for the next start or stop to clean up.
    """
    info = running_node_info(data_dir)
    if info is None:
        return None
    try:
        block_number: int | None = int(json_rpc(info["url"], "eth_blockNumber", timeout=2.0), 16)
    except ChainError:
        block_number = None
    return {**info, "answering": block_number is not None, "block_number": block_number}
