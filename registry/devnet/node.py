"""``AnvilNode``: a local anvil that its owner starts and stops (tests, scripts, the demo).

With a data directory the chain persists in ``data_dir/anvil-state.json`` (anvil's ``--state``), so
stop + start keeps every record. Measured with anvil 1.7.1: SIGTERM and SIGINT both make anvil dump
its state on exit (exit status 0); SIGKILL dumps nothing. anvil also rewrites the file every
``state_interval`` seconds, which bounds what a SIGKILL or a crash can lose. anvil writes the file
in place (open with O_TRUNC, no rename), so a kill in the middle of a write can leave it truncated;
each start therefore checks the file parses and keeps the last good one as ``anvil-state.json.bak``.
Only mined transactions are in the state, and even with automine anvil answers
``eth_sendTransaction`` before it has mined the block (measured: about one call in five on a busy
machine), so wait for a receipt before stopping a node, or before reading what a transaction did.

The node that outlives its starter (``registry chain start``) is in ``background.py``; it runs the
same command line, prepared by the same checks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from registry.core.files import atomic_write
from registry.core.nodeinfo import running_node_info
from registry.core.times import now_iso_utc
from registry.devnet.accounts import DEV_MNEMONIC
from registry.devnet.binary import find_anvil
from registry.devnet.processes import (
    HOST,
    StopOnExit,
    free_port,
    kill_group,
    log_tail,
    port_in_use,
    stop_process,
)
from registry.devnet.rpc import json_rpc, wait_ready
from registry.errors import ConfigurationError

__all__ = ["DEFAULT_CHAIN_ID", "LOG_FILE", "STATE_FILE", "AnvilNode", "check_state_file"]

log = logging.getLogger(__name__)

DEFAULT_CHAIN_ID = 31337  # anvil's own default; what MetaMask & co. expect of a dev chain
STATE_FILE = "anvil-state.json"
LOG_FILE = "anvil.log"
_BACKUP_SUFFIX = ".bak"
_PORT_RETRIES = 3  # a free_port() can be taken by someone else before anvil binds it


def check_state_file(state_path: Path) -> None:
    """Refuse a state file that does not parse; keep a copy of one that does."""
    if not state_path.exists():
        return
    backup = state_path.with_name(state_path.name + _BACKUP_SUFFIX)
    try:
        json.loads(state_path.read_bytes())
    except ValueError as exc:
        hint = (
            f"restore the copy from the last good start ({backup}) or delete the file"
            if backup.exists()
            else "delete it"
        )
        raise ConfigurationError(
            f"the chain state file {state_path} is not valid JSON ({exc}); anvil was probably "
            f"killed while writing it. To recover, {hint}, then start again",
            state_path=str(state_path),
            backup_path=str(backup) if backup.exists() else None,
        ) from exc
    atomic_write(backup, state_path.read_bytes())


class AnvilNode(StopOnExit):
    """A local anvil on 127.0.0.1, started and stopped by its owner.

    ``data_dir`` holds ``anvil-state.json`` (the chain, kept across stop + start) and ``anvil.log``.
    Without one the node is ephemeral: no state file, and its log lives in a temporary directory
    removed on ``stop()``.

    ``block_time=None`` mines a block per transaction (automine); a number mines on that interval
    instead. ``mnemonic`` is passed on the command line, which other local users can read: it is
    meant for the public ``DEV_MNEMONIC``, never for a secret.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        block_time: float | None = None,
        mnemonic: str = DEV_MNEMONIC,
        accounts: int = 10,
        balance_eth: int = 10_000,
        state_interval: int | None = 1,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if block_time is not None and block_time <= 0:
            raise ValueError(f"block_time must be positive or None for automine, got {block_time}")
        if state_interval is not None and state_interval < 1:
            raise ValueError(f"state_interval must be at least 1 s or None, got {state_interval}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.chain_id = chain_id
        self.block_time = block_time
        self.mnemonic = mnemonic
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.state_interval = state_interval
        self.binary = Path(binary) if binary is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._requested_port = port
        self._port: int | None = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None

    # -- properties --

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the node has no port until start() picks one")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The pid of the process started (None when stopped)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def state_path(self) -> Path | None:
        return self.data_dir / STATE_FILE if self.data_dir is not None else None

    @property
    def log_path(self) -> Path:
        directory = self.data_dir or self._scratch
        if directory is None:
            raise RuntimeError("an ephemeral node has no log until start()")
        return directory / LOG_FILE

    # -- lifecycle --

    def command(self, binary: Path, port: int) -> list[str]:
        """The anvil command line this node runs (also used by ``start_background``)."""
        cmd = [
            str(binary),
            "--host", HOST,
            "--port", str(port),
            "--chain-id", str(self.chain_id),
            "--mnemonic", self.mnemonic,
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_eth),
            "--color", "never",
        ]  # fmt: skip
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        if self.state_path is not None:
            cmd += ["--state", str(self.state_path)]
            if self.state_interval is not None:
                cmd += ["--state-interval", str(self.state_interval)]
        return cmd

    def prepare(self) -> Path:
        """Check everything that can be checked before spawning; return the binary.

        Also run by ``start_background``, so a node of either kind refuses the same things.
        """
        binary = self.binary or find_anvil()
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            running = running_node_info(self.data_dir)
            if running is not None:
                raise ConfigurationError(
                    f"a background anvil (pid {running['pid']}) already serves {self.data_dir}; "
                    "two nodes must not write one state file. Stop it first "
                    "(`registry chain stop`) or use another data directory",
                    data_dir=str(self.data_dir),
                    pid=running["pid"],
                )
            assert self.state_path is not None
            check_state_file(self.state_path)
        return binary

    def start(self) -> AnvilNode:
        """Start anvil and return once ``eth_chainId`` answers with this node's chain id."""
        if self.running:
            return self
        binary = self.prepare()
        if self.data_dir is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="anvil-"))
        for attempt in range(_PORT_RETRIES):
            if self._port is None or (self._requested_port is None and port_in_use(self._port)):
                # First start, or a restart whose picked port has been taken meanwhile: a new port
                # (and URL) beats racing another listener for the old one.
                self._port = free_port()
            elif port_in_use(self._port):
                raise ConfigurationError(
                    f"port {self._port} on {HOST} is already in use; stop whatever listens there "
                    "or choose another port",
                    port=self._port,
                )
            try:
                self._launch(binary)
                return self
            except ConfigurationError:
                address_taken = "Address already in use" in log_tail(self.log_path, 5)
                if self._requested_port is None and address_taken and attempt + 1 < _PORT_RETRIES:
                    self._port = None  # lost the race for a free port: pick another
                    continue
                self._cleanup_scratch()
                raise
            except BaseException:
                self._cleanup_scratch()
                raise
        raise AssertionError("unreachable")  # the loop returns or raises

    def _launch(self, binary: Path) -> None:
        port = self.port
        with self.log_path.open("ab") as log_fh:
            log_fh.write(f"--- {now_iso_utc()} starting on {port}\n".encode())
            log_fh.flush()
            # Own process group: stop() can wait for every process (the npm launcher and the
            # binary it spawns), and a Ctrl-C meant for the caller reaches it through stop().
            proc = subprocess.Popen(
                self.command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        self._proc = proc
        try:
            wait_ready(self.url, self.chain_id, self.start_timeout, self.log_path, proc.poll)
        except BaseException:
            self._proc = None
            kill_group(proc)
            raise

    def stop(self) -> None:
        """SIGTERM (anvil writes its state), wait up to ``stop_timeout``, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if not stop_process(proc, self.stop_timeout):
                log.warning(
                    "anvil (pid %s) did not exit within %g s of SIGTERM and was killed. Up to "
                    "the last state interval of chain state may be lost",
                    proc.pid,
                    self.stop_timeout,
                )
        finally:
            self._cleanup_scratch()

    def _cleanup_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def rpc(self, method: str, params: Sequence[Any] = (), *, timeout: float = 10.0) -> Any:
        """Call a JSON-RPC method on this node (``evm_snapshot``, ``anvil_reorg``, ...)."""
        return json_rpc(self.url, method, params, timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "no port yet"
        state = "running" if self.running else "stopped"
        return f"AnvilNode({where}, chain_id={self.chain_id}, {state}, data_dir={self.data_dir})"
