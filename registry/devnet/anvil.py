"""A managed local anvil node: the chain the demo, the CLI and the real-node tests run against.

Two ways to run one:

* ``AnvilNode`` - a child process owned by the caller (tests, scripts): ``with AnvilNode(d) as n:``.
* ``start_background`` / ``stop_background`` / ``background_status`` - a detached node that outlives
  the caller, for ``registry chain start|stop|status``. Its pid, port and URL live in
  ``data_dir/anvil.json``.

With a data directory the chain persists in ``data_dir/anvil-state.json`` (anvil's ``--state``), so
stop + start keeps every record. Measured with anvil 1.7.1: SIGTERM and SIGINT both make anvil dump
its state on exit (exit status 0); SIGKILL dumps nothing. anvil also rewrites the file every
``state_interval`` seconds, which bounds what a SIGKILL or a crash can lose. anvil writes the file
in place (open with O_TRUNC, no rename), so a kill in the middle of a write can leave it truncated;
each start therefore checks the file parses and keeps the last good one as ``anvil-state.json.bak``.
Only mined transactions are in the state, and even with automine anvil answers
``eth_sendTransaction`` before it has mined the block (measured: about one call in five on a busy
machine), so wait for a receipt before stopping a node, or before reading what a transaction did.

Stopping sends SIGTERM to the process we started and then waits for its whole process group to
exit: the npm launcher (``node_modules/.bin/anvil``) forwards SIGTERM to the real binary and exits
at once, before anvil has finished writing its state, so waiting on the launcher's pid alone would
report a stop that has not happened yet.

POSIX only (signals, process groups, ``fcntl``), like the rest of the local tooling.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from registry.errors import ChainError, ChainUnavailable, ConfigurationError

__all__ = [
    "DEFAULT_CHAIN_ID",
    "DEFAULT_PORT",
    "DEV_ADDRESSES",
    "DEV_MNEMONIC",
    "DEV_PRIVATE_KEYS",
    "ENV_ANVIL_BIN",
    "INFO_FILE",
    "LOG_FILE",
    "STATE_FILE",
    "AnvilNode",
    "background_status",
    "find_anvil",
    "free_port",
    "json_rpc",
    "start_background",
    "stop_background",
]

log = logging.getLogger(__name__)

# --- public test accounts --------------------------------------------------------------------
#
# PUBLIC TEST KEYS. Everything below is derived from the well-known Hardhat/anvil test mnemonic and
# is published in thousands of repositories; bots sweep any real-network funds sent to these
# addresses within seconds. Use them only against a local dev chain (tests, the demo). Never fund
# them, never deploy anything that matters with them, never point them at a real network.

DEV_MNEMONIC = "test test test test test test test test test test test junk"

# m/44'/60'/0'/0/i for i = 0..4, as anvil derives them from DEV_MNEMONIC (checked by the tests).
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)
DEV_ADDRESSES: tuple[str, ...] = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
)

# --- defaults and file names -----------------------------------------------------------------

DEFAULT_CHAIN_ID = 31337  # anvil's own default; what MetaMask & co. expect of a dev chain
DEFAULT_PORT = 8545  # anvil's own default, for the long-lived background node
HOST = "127.0.0.1"  # loopback only: the dev accounts above are unlocked on this node
ENV_ANVIL_BIN = "REGISTRY_ANVIL_BIN"

STATE_FILE = "anvil-state.json"
LOG_FILE = "anvil.log"
INFO_FILE = "anvil.json"
_LOCK_FILE = "anvil.lock"
_BACKUP_SUFFIX = ".bak"

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LAUNCHER = Path("node_modules/.bin/anvil")
_POLL_S = 0.05
_LOG_TAIL_LINES = 20
_PORT_RETRIES = 3  # a free_port() can be taken by someone else before anvil binds it

# The npm package ships one binary package per platform: @foundry-rs/anvil-<os>-<arch>.
_NPM_OS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
_NPM_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


# --- finding the binary ----------------------------------------------------------------------


def _platform_binary(root: Path) -> Path:
    system = _NPM_OS.get(platform.system(), platform.system().lower())
    arch = _NPM_ARCH.get(platform.machine(), platform.machine().lower())
    name = "anvil.exe" if system == "win32" else "anvil"
    return root / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / name


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_anvil() -> Path:
    """Return the anvil executable to run.

    Order: ``$REGISTRY_ANVIL_BIN`` (an explicit override: used as given, never second-guessed), the
    platform binary from ``node_modules/@foundry-rs/anvil-<os>-<arch>``, the npm launcher
    ``node_modules/.bin/anvil`` (both under the project root), then ``anvil`` on ``PATH``.
    """
    override = os.environ.get(ENV_ANVIL_BIN)
    if override:
        path = Path(override).expanduser()
        if _is_executable(path):
            return path
        problem = "is not executable" if path.exists() else "does not exist"
        raise ConfigurationError(
            f"{ENV_ANVIL_BIN}={override} {problem}; point it at an anvil executable, "
            f"or unset it to use the one from `npm ci` in {_PROJECT_ROOT}",
            path=str(path),
            searched=[str(path)],
        )
    candidates = [_platform_binary(_PROJECT_ROOT), _PROJECT_ROOT / _LAUNCHER]
    for candidate in candidates:
        if _is_executable(candidate):
            return candidate
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    searched = [*map(str, candidates), "anvil on PATH"]
    raise ConfigurationError(
        f"anvil not found (looked at {', '.join(searched)}); run `npm ci` in {_PROJECT_ROOT} "
        f"to install the pinned version, or set {ENV_ANVIL_BIN} to an anvil executable",
        searched=searched,
    )


# --- ports and JSON-RPC ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # anvil (tokio) binds with SO_REUSEADDR; so must the probe, or connections lingering in
        # TIME_WAIT after a stop would make a free port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


# An explicit empty ProxyHandler: an http_proxy in the environment must never see loopback calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def json_rpc(url: str, method: str, params: Sequence[Any] = (), *, timeout: float = 5.0) -> Any:
    """Call one JSON-RPC method over plain HTTP and return its ``result``.

    Raises ``ChainUnavailable`` when nothing answers, ``ChainError`` (details: ``method``,
    ``rpc_error``) when the node answers with an error object.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ChainUnavailable(url, f"{method}: {exc}") from exc
    if "error" in reply:
        error = reply["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ChainError(
            f"{method} failed on {url}: {message}", method=method, rpc_error=error, endpoint=url
        )
    return reply.get("result")


# --- processes -------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) from /proc, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; everything after the last ')' is
    # well formed: state, ppid, pgrp, ...
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: nothing may reap it inside a container)."""
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any live process is left in process group ``pgid``."""
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
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def _wait_group_exit(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _terminate(pid: int, pgid: int, timeout: float, what: str) -> None:
    """SIGTERM ``pid`` (anvil saves its state), wait for the group, SIGKILL the group if stuck."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_group_exit(pgid, timeout):
        return
    log.warning(
        "%s did not exit within %g s of SIGTERM; killing it. Up to the last state interval "
        "of chain state may be lost",
        what,
        timeout,
    )
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_group_exit(pgid, 5.0)


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16_384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _check_state_file(state_path: Path) -> None:
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
    partial = backup.with_name(backup.name + ".tmp")
    shutil.copyfile(state_path, partial)
    os.replace(partial, backup)


def _wait_ready(
    url: str,
    chain_id: int,
    timeout: float,
    log_path: Path,
    exited: Callable[[], int | str | None],
) -> None:
    """Poll ``eth_chainId`` until it answers; ``exited()`` returns the exit status once it died.

    The process is checked after each answer too: an answer from a process that has died came
    from someone else holding the port.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answered = json_rpc(url, "eth_chainId", timeout=0.5)
        except ChainError as exc:
            _raise_if_exited(exited(), url, log_path)
            if time.monotonic() >= deadline:
                raise ChainUnavailable(
                    url,
                    f"anvil was still starting after {timeout:g} s; "
                    f"last lines of {log_path}:\n{_log_tail(log_path)}",
                ) from exc
            time.sleep(_POLL_S)
            continue
        _raise_if_exited(exited(), url, log_path)
        actual = int(answered, 16)
        if actual != chain_id:
            raise ConfigurationError(
                f"the node answering on {url} serves chain id {actual}, not {chain_id}; "
                "another node may hold the port, or the state file was made for another chain",
                url=url,
                expected=chain_id,
                actual=actual,
            )
        return


def _raise_if_exited(code: int | str | None, url: str, log_path: Path) -> None:
    if code is None:
        return
    tail = _log_tail(log_path)
    raise ConfigurationError(
        f"anvil exited (status {code}) before answering on {url}. Last lines of {log_path}:\n{tail}",
        url=url,
        returncode=code,
        log_path=str(log_path),
        log_tail=tail,
    )


# --- a node owned by the caller --------------------------------------------------------------


class AnvilNode:
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

    def _prepare(self) -> Path:
        """Check everything that can be checked before spawning; return the binary."""
        binary = self.binary or find_anvil()
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            running = background_status(self.data_dir)
            if running is not None:
                raise ConfigurationError(
                    f"a background anvil (pid {running['pid']}) already serves {self.data_dir}; "
                    "two nodes must not write one state file. Stop it first "
                    "(`registry chain stop`) or use another data directory",
                    data_dir=str(self.data_dir),
                    pid=running["pid"],
                )
            assert self.state_path is not None
            _check_state_file(self.state_path)
        return binary

    def start(self) -> AnvilNode:
        """Start anvil and return once ``eth_chainId`` answers with this node's chain id."""
        if self.running:
            return self
        binary = self._prepare()
        if self.data_dir is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="anvil-"))
        for attempt in range(_PORT_RETRIES):
            if self._port is None or (self._requested_port is None and _port_in_use(self._port)):
                # First start, or a restart whose picked port has been taken meanwhile: a new port
                # (and URL) beats racing another listener for the old one.
                self._port = free_port()
            elif _port_in_use(self._port):
                raise ConfigurationError(
                    f"port {self._port} on {HOST} is already in use; stop whatever listens there "
                    "or choose another port",
                    port=self._port,
                )
            try:
                self._launch(binary)
                return self
            except ConfigurationError:
                address_taken = "Address already in use" in _log_tail(self.log_path, 5)
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
            log_fh.write(f"--- {datetime.now(UTC).isoformat()} starting on {port}\n".encode())
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
            _wait_ready(self.url, self.chain_id, self.start_timeout, self.log_path, proc.poll)
        except BaseException:
            self._kill_now()
            raise

    def stop(self) -> None:
        """SIGTERM (anvil writes its state), wait up to ``stop_timeout``, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + self.stop_timeout
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(self.stop_timeout)
            # The npm launcher exits before the binary it started; wait for the whole group.
            left = max(0.0, deadline - time.monotonic())
            if proc.poll() is None or not _wait_group_exit(proc.pid, left):
                log.warning(
                    "anvil (pid %s) did not exit within %g s of SIGTERM; killing it. Up to the "
                    "last state interval of chain state may be lost",
                    proc.pid,
                    self.stop_timeout,
                )
                self._proc = proc
                self._kill_now()
        finally:
            self._proc = None
            self._cleanup_scratch()

    def _kill_now(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5.0)
        _wait_group_exit(proc.pid, 5.0)

    def _cleanup_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def rpc(self, method: str, params: Sequence[Any] = (), *, timeout: float = 10.0) -> Any:
        """Call a JSON-RPC method on this node (``evm_snapshot``, ``anvil_reorg``, ...)."""
        return json_rpc(self.url, method, params, timeout=timeout)

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "no port yet"
        state = "running" if self.running else "stopped"
        return f"AnvilNode({where}, chain_id={self.chain_id}, {state}, data_dir={self.data_dir})"


# --- the background node for `registry chain start|stop|status` ------------------------------


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one data directory (two terminals running `chain start`)."""
    with (data_dir / _LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_info(data_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((data_dir / INFO_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # half-written or hand-edited: treated as stale, rewritten on next start
    fields = {
        "pid": int,
        "port": int,
        "chain_id": int,
        "url": str,
        "state_path": str,
        "log_path": str,
    }
    if not isinstance(info, dict) or any(
        not isinstance(info.get(name), kind) for name, kind in fields.items()
    ):
        return None  # not what _write_info writes: treated as stale
    return info


def _write_info(data_dir: Path, info: dict[str, Any]) -> None:
    partial = data_dir / (INFO_FILE + ".tmp")
    partial.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(partial, data_dir / INFO_FILE)


def _is_our_node(info: dict[str, Any]) -> bool:
    """The recorded pid still runs *our* anvil (pids get reused after a reboot or a crash)."""
    pid = info["pid"]
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return not Path("/proc").is_dir()  # no /proc to ask: trust the pid
    return str(info.get("state_path", "")) in cmdline


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
        info = _read_info(directory)
        if info is not None and _is_our_node(info):
            if info.get("port") != port or info.get("chain_id") != chain_id:
                raise ConfigurationError(
                    f"an anvil for {directory} already runs on port {info.get('port')} with chain "
                    f"id {info.get('chain_id')} (pid {info['pid']}), not port {port} / chain id "
                    f"{chain_id}; stop it first (`registry chain stop`)",
                    **info,
                )
            running_pid = info["pid"]
            _wait_ready(
                info["url"],
                chain_id,
                timeout,
                Path(info["log_path"]),
                lambda: None if _pid_alive(running_pid) else "unknown: not our child",
            )
            return {**info, "already_running": True}
        if info is not None:
            log.info("removing stale %s (pid %s is gone)", directory / INFO_FILE, info["pid"])
            (directory / INFO_FILE).unlink(missing_ok=True)

        node = AnvilNode(directory, port=port, chain_id=chain_id)
        binary = node._prepare()
        if _port_in_use(port):
            raise ConfigurationError(
                f"port {port} on {HOST} is already in use; stop whatever listens there "
                "or start the chain on another port",
                port=port,
            )
        pid, pgid = _spawn_detached(node.command(binary, port), node.log_path)
        try:
            _wait_ready(
                node.url,
                chain_id,
                timeout,
                node.log_path,
                lambda: None if _pid_alive(pid) else "unknown: detached",
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            _wait_group_exit(pgid, 5.0)
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
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_info(directory, info)
        return {**info, "already_running": False}


def _spawn_detached(cmd: list[str], log_path: Path) -> tuple[int, int]:
    """Run ``cmd`` in a new session whose parent is not us; return (pid, process group).

    A shell in a new session backgrounds anvil, prints its pid and exits; anvil is re-parented to
    init, so the caller leaves no zombie behind and may exit at once.
    """
    with log_path.open("ab") as log_fh:
        log_fh.write(f"--- {datetime.now(UTC).isoformat()} starting detached\n".encode())
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
        pgid = pid  # died already; _wait_ready reports it with the log tail
    return pid, pgid


def stop_background(data_dir: str | os.PathLike[str], *, timeout: float = 10.0) -> bool:
    """Stop the background anvil serving ``data_dir`` gracefully, so its state is saved.

    Returns True if a node was stopped, False if none was running (a stale pid file is removed).
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        return False
    with _locked(directory):
        info = _read_info(directory)
        if info is None:
            (directory / INFO_FILE).unlink(missing_ok=True)
            return False
        if not _is_our_node(info):
            (directory / INFO_FILE).unlink(missing_ok=True)
            return False
        pid = info["pid"]
        _terminate(pid, int(info.get("pgid", pid)), timeout, f"background anvil (pid {pid})")
        (directory / INFO_FILE).unlink(missing_ok=True)
        return True


def background_status(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``data_dir/anvil.json`` says, if that node still runs; None if none does.

    Adds ``answering`` (bool) and ``block_number`` (int, or None when it does not answer).
    Read-only: a stale pid file is left for the next start or stop to clean up.
    """
    directory = Path(data_dir)
    info = _read_info(directory)
    if info is None or not _is_our_node(info):
        return None
    try:
        block_number: int | None = int(json_rpc(info["url"], "eth_blockNumber", timeout=2.0), 16)
    except ChainError:
        block_number = None
    return {**info, "answering": block_number is not None, "block_number": block_number}
