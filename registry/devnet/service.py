"""The registry's HTTP service as a child process on a free loopback port, for the demo, scripts
and tests: start it, wait until it is healthy, stop it.

``start_service(env, log_path=...)`` runs ``python -m registry.api.server`` (``registry serve``
with its settings from the environment) with ``os.environ`` + ``env`` + the loopback host and a
port picked here, and returns once ``GET /health`` answers 200: the service is up *and* reaches
its chain. The result is a context manager; ``stop()`` sends SIGTERM (uvicorn finishes its
requests and stops its workers) and SIGKILLs the process group after ``stop_timeout``.

Settings travel in the environment, never on the command line, because they can hold keys.
``command`` runs something else with the same lifecycle (a baseline server in a benchmark).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from registry.devnet.processes import (
    HOST,
    StopOnExit,
    free_port,
    kill_group,
    log_tail,
    stop_process,
)
from registry.errors import ConfigurationError

__all__ = ["REGISTRY_SERVER", "ServiceProcess", "start_service"]

log = logging.getLogger(__name__)

REGISTRY_SERVER: tuple[str, ...] = (sys.executable, "-m", "registry.api.server")

_POLL_S = 0.1
_PORT_RETRIES = 3  # a free_port() can be taken by someone else before the server binds it
_LOG_TAIL_LINES = 40  # a Python traceback is rarely shorter
# An explicit empty ProxyHandler: an http_proxy in the environment must never see loopback calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceProcess(StopOnExit):
    """A service started by ``start_service`` and answering on ``url``; ``stop()`` ends it."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, log_path: Path, stop_timeout: float
    ) -> None:
        self.process = process
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self.stop_timeout = stop_timeout

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout`` for the process and its workers, then SIGKILL.
        Stopping a stopped service does nothing."""
        if not stop_process(self.process, self.stop_timeout):
            log.warning(
                "the service on %s (pid %s) did not exit within %g s of SIGTERM and was killed",
                self.url,
                self.pid,
                self.stop_timeout,
            )

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.process.returncode}"
        return f"ServiceProcess({self.url}, pid {self.pid}, {state}, log {self.log_path})"


def start_service(
    env: Mapping[str, str] | None = None,
    *,
    log_path: str | os.PathLike[str],
    workers: int | None = None,
    command: Sequence[str] = REGISTRY_SERVER,
    port: int | None = None,
    health_path: str = "/health",
    start_timeout: float = 90.0,
    stop_timeout: float = 15.0,
) -> ServiceProcess:
    """Start ``command`` and return once ``health_path`` answers 200.

    ``env`` (``REGISTRY_*`` settings and anything else) goes on top of ``os.environ``; then
    ``REGISTRY_HOST`` is loopback, ``REGISTRY_PORT`` the port (``port``, or a free one picked
    here: picked again if another process takes it first) and, when given, ``REGISTRY_WORKERS``
    is ``workers``. A ``command`` that takes its port as an argument needs ``port`` given.
    stdout and stderr are appended to ``log_path``.

    Raises ``ConfigurationError`` (details: ``url``, ``log_path``, ``log_tail`` and, when it
    exited, ``returncode``) if the process exits or is not healthy within ``start_timeout``;
    nothing is left running then.
    """
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(_PORT_RETRIES):
        chosen = port if port is not None else free_port()
        child_env = {**os.environ, **(env or {}), "REGISTRY_HOST": HOST}
        child_env["REGISTRY_PORT"] = str(chosen)
        if workers is not None:
            child_env["REGISTRY_WORKERS"] = str(workers)
        start = path.stat().st_size if path.exists() else 0
        with path.open("ab") as log_file:
            # Own process group: stop() waits for the workers too, and a Ctrl-C meant for the
            # caller reaches the service through the caller's stop(), after its own cleanup.
            process = subprocess.Popen(
                list(command),
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        service = ServiceProcess(process, chosen, path, stop_timeout)
        try:
            _wait_healthy(service, health_path, start_timeout, start)
        except ConfigurationError as exc:
            kill_group(process)
            taken = "address already in use" in str(exc.details.get("log_tail", "")).lower()
            if port is None and taken and attempt + 1 < _PORT_RETRIES:
                continue  # lost the race for a free port: pick another
            raise
        except BaseException:
            kill_group(process)
            raise
        return service
    raise AssertionError("unreachable")  # the loop returns or raises


def _wait_healthy(service: ServiceProcess, health_path: str, timeout: float, start: int) -> None:
    url = service.url + health_path
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        code = service.process.poll()
        if code is not None:
            raise _start_failed(
                service,
                start,
                f"the service exited (status {code}) before answering {url}",
                url=url,
                returncode=code,
            )
        try:
            with _OPENER.open(url, timeout=2.0) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            exc.close()
            last = f"status {exc.code}"  # 503: up, but its chain does not answer (yet)
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise _start_failed(
                service,
                start,
                f"the service at {service.url} did not answer 200 on {health_path} within "
                f"{timeout:g} s (last: {last}); a 503 means it cannot reach its chain",
                url=url,
                last_answer=last,
            )
        time.sleep(_POLL_S)


def _start_failed(
    service: ServiceProcess, start: int, what: str, **details: object
) -> ConfigurationError:
    """``what`` went wrong, with the lines the service logged since ``start`` (a byte offset)."""
    tail = log_tail(service.log_path, _LOG_TAIL_LINES, start=start)
    return ConfigurationError(
        f"{what}. Last lines of {service.log_path}:\n{tail}",
        **details,
        log_path=str(service.log_path),
        log_tail=tail,
    )
