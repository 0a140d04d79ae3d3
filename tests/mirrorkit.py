"""Mirrors for the pull tests, on loopback: a hostile raw HTTP server, and a registry service.

``HostileMirror`` answers by the first segment of the path, so one server plays every way a
mirror can misbehave: ``/good/…`` the right bytes, ``/wrong/…`` other bytes, ``/truncated/…``
fewer bytes than its Content-Length, ``/endless/…`` a body that never ends, ``/huge/…`` a
Content-Length over any cap, ``/loop/…`` a redirect loop, ``/stall/…`` headers then nothing,
``/missing/…`` 404, ``/broken/…`` 500, ``/gate/…`` the right bytes once ``release`` is set. It
counts the requests per kind, so a test can tell that a source was (not) asked.
"""

from __future__ import annotations

import collections
import contextlib
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HUGE_LENGTH = 1 << 40


class HostileMirror:
    def __init__(self, good: bytes, wrong: bytes = b"not the checkpoint you asked for") -> None:
        self.good, self.wrong = good, wrong
        self.requests: collections.Counter[str] = collections.Counter()
        self.arrived = threading.Event()  # a /gate/ request is waiting for release
        self.release = threading.Event()
        self.stop = threading.Event()
        mirror = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                mirror._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, kind: str, name: str = "model.safetensors") -> str:
        return f"{self.base}/{kind}/{name}"

    def __enter__(self) -> HostileMirror:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, sock: Any) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        path = head.split(b" ", 2)[1].decode()
        kind = path.strip("/").split("/")[0]
        self.requests[kind] += 1
        with contextlib.suppress(OSError):
            self._answer(sock, kind)

    def _answer(self, sock: Any, kind: str) -> None:
        def send(status: str, body: bytes = b"", length: int | None = None, **headers: str) -> None:
            lines = [f"HTTP/1.1 {status}", "Connection: close"]
            if length is not None:
                lines.append(f"Content-Length: {length}")
            lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

        if kind == "good":
            send("200 OK", self.good, len(self.good))
        elif kind == "gate":
            self.arrived.set()
            self.release.wait(30)
            send("200 OK", self.good, len(self.good))
        elif kind == "wrong":
            send("200 OK", self.wrong, len(self.wrong))
        elif kind == "truncated":
            send("200 OK", self.good[: len(self.good) // 2], len(self.good))
        elif kind == "huge":
            send("200 OK", self.good[:1024], HUGE_LENGTH)
        elif kind == "endless":
            send("200 OK")
            while not self.stop.is_set():
                sock.sendall(b"\0" * 65536)
        elif kind == "loop":
            send("302 Found", b"", 0, Location="/loop-back/model.safetensors")
        elif kind == "loop-back":
            send("302 Found", b"", 0, Location="/loop/model.safetensors")
        elif kind == "stall":
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.good)}\r\n\r\n".encode())
            self.stop.wait(30)
        elif kind == "missing":
            send("404 Not Found", b"no such file", 12)
        else:
            send("500 Internal Server Error", b"boom", 4)


@contextlib.contextmanager
def registry_service(client: Any, data_dir: Path, **overrides: Any) -> Iterator[str]:
    """A second registry service (uvicorn in a thread) on ``client``'s chain: its base URL."""
    import uvicorn
    from apikit import settings_for

    from registry.api import create_app
    from registry.devnet import free_port

    settings = settings_for(data_dir, **overrides)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=client), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # a server that never starts fails the test's own timeout
        if not thread.is_alive():
            raise RuntimeError("the mirror service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def stored_files(store_root: Path) -> list[str]:
    """Every object under a folder store, as relative paths (empty when nothing is stored)."""
    if not store_root.exists():
        return []
    return sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*") if p.is_file())
