"""A real ``registry serve``: uvicorn with two worker processes, against a real anvil node.

Each worker has its own gate; a revocation must come to be refused by both, and no prediction may
rest on a validity check that saw it. The body limit must fire while a chunked upload is still
streaming, not after it has been buffered.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from apikit import API_KEYS, REGISTRAR, REVOKER, deploy, make_card, make_checkpoint, png

pytestmark = pytest.mark.anvil

WORKERS = 2
MAX_UPLOAD = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    devnet = pytest.importorskip("registry.devnet")
    try:
        devnet.find_anvil()
    except Exception as exc:  # ConfigurationError: not installed
        pytest.skip(f"anvil is not installed: {exc}")
    root = tmp_path_factory.mktemp("served")
    with devnet.AnvilNode(root / "chain") as node:
        address, key = deploy(node.url)
        env = {
            "REGISTRY_RPC_URL": node.url,
            "REGISTRY_CONTRACT_ADDRESS": address,
            "REGISTRY_PRIVATE_KEY": key,
            "REGISTRY_DATA_DIR": str(root / "data"),
            "REGISTRY_API_KEYS": API_KEYS,
            "REGISTRY_VALIDITY_TTL_S": "1.0",
            "REGISTRY_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            # A worker's first predict loads torch and the model: on a loaded machine that can
            # outlast the default deadline, which this module does not test.
            "REGISTRY_REQUEST_DEADLINE_S": "120",
        }
        log_path = root / "server.log"
        with devnet.start_service(env, workers=WORKERS, log_path=log_path) as service:
            yield {"base": service.url, "port": service.port, "audit": root / "data" / "audit.log"}


def _audit(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def _predict(base: str, digest: str) -> int:
    # A fresh connection each time, so the kernel may hand it to either worker.
    # The timeout guards against a hang, not a slow machine.
    with httpx.Client(timeout=120, headers={"Connection": "close"}) as http:
        files = [("images", ("x.png", png()))]
        return http.post(f"{base}/models/{digest}/predict", files=files).status_code


def test_after_a_revocation_every_worker_refuses_and_no_answer_rests_on_a_later_check(
    server: dict[str, Any],
) -> None:
    # How soon each worker refuses is bench_api.py's to measure (a timed assertion would fail on
    # a loaded machine, not on a bug). What must hold whatever the timing: every worker comes to
    # refuse, and no prediction rests on a validity check made at or after the revocation's block.
    base = server["base"]
    checkpoint = make_checkpoint(seed=50)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    registered = httpx.post(f"{base}/models", files=files, headers=REGISTRAR, timeout=30)
    assert registered.status_code == 201, registered.text
    digest = registered.json()["record"]["digest"]

    # Warm both workers: concurrent requests until each pid has answered one prediction.
    pids: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        deadline = time.monotonic() + 180  # liveness only: the kernel picks the worker
        while len(pids) < WORKERS:
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            assert set(pool.map(lambda _: _predict(base, digest), range(8))) == {200}
            pids = {
                e["pid"]
                for e in _audit(server["audit"])
                if e["event"] == "predict" and e["outcome"] == "predicted"
            }
        seen_before = len(_audit(server["audit"]))

        revoked = httpx.post(
            f"{base}/models/{digest}/revoke", json={"reason": "safety-issue"}, headers=REVOKER
        )
        assert revoked.status_code == 200, revoked.text
        revoked_at_block = revoked.json()["revocation"]["block_number"]

        refused_by: set[int] = set()
        deadline = time.monotonic() + 60  # liveness only: the TTL is 1 s
        while refused_by != pids and time.monotonic() < deadline:
            statuses = list(pool.map(lambda _: _predict(base, digest), range(8)))
            assert set(statuses) <= {200, 403}, statuses
            after = [e for e in _audit(server["audit"])[seen_before:] if e["event"] == "predict"]
            refused_by = {e["pid"] for e in after if e["outcome"] == "not_verified"}

    assert refused_by == pids, f"workers {pids - refused_by} never refused"
    stale = [e for e in after if e["outcome"] == "predicted" and e["block"] >= revoked_at_block]
    assert not stale, f"predictions confirmed at or after the revocation's block: {stale}"
    # The worker that revoked forgot the model at once: its answers after the revocation are
    # refusals only (the other worker may answer from its cache within the TTL).
    revoker_pid = next(e["pid"] for e in _audit(server["audit"]) if e["event"] == "revoke")
    assert all(e["outcome"] != "predicted" for e in after if e["pid"] == revoker_pid), after


def test_a_chunked_upload_is_answered_413_while_it_is_still_streaming(
    server: dict[str, Any],
) -> None:
    total = 64 * MAX_UPLOAD  # far more than the limit; the server must stop us long before
    chunk = b"\0" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as sock:
        sock.sendall(
            b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the answer arrived before the body was complete
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        response = b""
        try:
            while data := sock.recv(65536):
                response += data
        except ConnectionResetError:
            pass

    # What was sent is the limit plus what the two kernels' socket buffers absorbed (~4.5 MB
    # measured on loopback), not the 64 MB body.
    assert sent <= 8 * MAX_UPLOAD, f"{sent} bytes went out before the server refused"
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b'"code":"payload_too_large"' in response


def test_an_over_limit_content_length_is_refused_before_the_body_is_sent(
    server: dict[str, Any],
) -> None:
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as sock:
        sock.sendall(
            b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
