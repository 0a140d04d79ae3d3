"""``start_service``: a child HTTP service on a free loopback port, healthy before it is handed
over, stopped with SIGTERM and then SIGKILL, and never left running after a failed start.

A stand-in server (the standard library's, on ``REGISTRY_HOST``/``REGISTRY_PORT``) keeps these
fast; the real ``registry serve`` goes through the same helper in tests/api/test_api_server.py
and tests/security/test_api_abuse.py.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from registry.core.nodeinfo import pid_alive
from registry.devnet import service as service_module
from registry.devnet import start_service
from registry.errors import ConfigurationError

# Answers /health with HEALTH_STATUS (200 unless set); writes its pid to PID_FILE when set;
# ignores SIGTERM when IGNORE_TERM is set; reports REGISTRY_WORKERS on /workers.
STAND_IN = r"""
import http.server, os, signal
if os.environ.get("PID_FILE"):
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(os.environ.get("HEALTH_STATUS", "200")) if self.path == "/health" else 200
        body = os.environ.get("REGISTRY_WORKERS", "-").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
address = (os.environ["REGISTRY_HOST"], int(os.environ["REGISTRY_PORT"]))
http.server.HTTPServer(address, Handler).serve_forever()
"""
COMMAND = [sys.executable, "-c", STAND_IN]


def test_start_service_returns_a_healthy_service_on_loopback_and_stop_ends_it_on_sigterm(
    tmp_path: Path,
) -> None:
    with start_service(command=COMMAND, workers=3, log_path=tmp_path / "s.log") as service:
        assert service.url == f"http://127.0.0.1:{service.port}"
        assert service.running
        with urllib.request.urlopen(f"{service.url}/workers", timeout=5) as answer:
            assert answer.read() == b"3"
    assert service.process.returncode == -signal.SIGTERM
    service.stop()  # a second stop is a no-op


def test_a_service_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service(
        {"IGNORE_TERM": "1"}, command=COMMAND, log_path=tmp_path / "s.log", stop_timeout=0.5
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        service.stop()
    assert time.monotonic() - started >= 0.5
    assert service.process.returncode == -signal.SIGKILL
    assert "did not exit within 0.5 s of SIGTERM" in caplog.text


def test_a_service_that_exits_at_start_raises_with_its_status_and_log_tail(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('cannot start: no settings'); sys.exit(3)"]
    with pytest.raises(ConfigurationError) as caught:
        start_service(command=command, log_path=tmp_path / "s.log")
    assert caught.value.details["returncode"] == 3
    assert "cannot start: no settings" in caught.value.details["log_tail"]
    assert "cannot start: no settings" in caught.value.message


def test_a_service_that_never_turns_healthy_is_killed_after_the_start_timeout(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    env = {"HEALTH_STATUS": "503", "PID_FILE": str(pid_file)}
    with pytest.raises(ConfigurationError) as caught:
        start_service(env, command=COMMAND, log_path=tmp_path / "s.log", start_timeout=0.5)
    assert caught.value.details["last_answer"] == "status 503"
    assert "cannot reach its chain" in caught.value.message
    assert not pid_alive(int(pid_file.read_text()))


def test_a_picked_port_taken_before_the_service_binds_it_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real_free_port = service_module.free_port
        monkeypatch.setattr(
            service_module, "free_port", lambda: next(ports, None) or real_free_port()
        )
        with start_service(command=COMMAND, log_path=tmp_path / "s.log") as service:
            assert service.port != busy
        assert "Address already in use" in (tmp_path / "s.log").read_text()


def test_a_requested_port_that_is_taken_is_not_swapped_for_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ConfigurationError) as caught:
            start_service(command=COMMAND, port=busy, log_path=tmp_path / "s.log")
    assert "Address already in use" in caught.value.details["log_tail"]
