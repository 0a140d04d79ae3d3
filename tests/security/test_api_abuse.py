"""Abuse of the HTTP service: malformed multipart, oversize and slow bodies, bad keys, header
injection, content types that lie, malformed digests, hostile images, deeply nested JSON.

Most cases drive the app in-process (``TestClient`` on the session's eth-tester chain). What only
a real server shows (socket-level limits, a client that trickles its body, raw header bytes,
request framing, proxy headers) runs against ``python -m registry.api.server`` on a free loopback port:
one worker, its own in-process chain, a 1 MiB body limit and a 2 s body deadline.

Every case ends in a 4xx in the one error shape ``{"error": {"code", "message", "details"}}`` (or,
for bytes uvicorn's parser refuses before the app sees them, its own 400 and a closed
connection), never a 5xx, and the service keeps answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apikit import (
    API_KEYS,
    CLASS_NAMES,
    READER,
    READER_KEY,
    REGISTRAR,
    REGISTRAR_KEY,
    REVOKER,
    Api,
    assert_error,
    digest_of,
    jpeg,
    make_card,
    make_checkpoint,
    png,
)

from registry.devnet import ServiceProcess, start_service

SERVER_MAX_UPLOAD = 1 << 20
SERVER_BODY_TIMEOUT_S = 2.0
UNKNOWN = "sha256:" + "ab" * 32


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def app(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture
def model(app: Api) -> str:
    """The digest of a registered, stored, valid checkpoint."""
    return app.registered_model(seed=7)[1]


class Server:
    """A real ``registry serve`` on loopback, with helpers to talk to it byte by byte."""

    def __init__(self, service: ServiceProcess, data_dir: Path) -> None:
        self.process = service.process
        self.port = service.port
        self.base = service.url
        self.audit = data_dir / "audit.log"
        self.log_path = service.log_path

    def health(self, timeout: float = 2.0) -> int:
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            return http.get(f"{self.base}/health").status_code

    def exchange(self, data: bytes, *, timeout: float = 10.0) -> bytes:
        """Send raw bytes (from a thread: the server may answer before they are all sent) and
        read until the server closes the connection or ``timeout`` passes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:

            def send() -> None:
                # The server may answer and close before taking everything.
                with contextlib.suppress(OSError):
                    sock.sendall(data)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            answer = _read_until_closed(sock, timeout)
            sender.join(timeout)
            return answer


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    answer = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        answer += chunk
    return answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("abused")
    env = {
        "REGISTRY_RPC_URL": "memory",
        "REGISTRY_DATA_DIR": str(root / "data"),
        "REGISTRY_API_KEYS": API_KEYS,
        "REGISTRY_MAX_UPLOAD_BYTES": str(SERVER_MAX_UPLOAD),
        "REGISTRY_BODY_TIMEOUT_S": str(SERVER_BODY_TIMEOUT_S),
    }
    with start_service(env, workers=1, log_path=root / "server.log") as service:
        yield Server(service, root / "data")
    log = (root / "server.log").read_text()
    assert "Traceback" not in log, log[-4000:]


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def _json_body(answer: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def _multipart(parts: list[bytes], boundary: bytes = b"BOUNDARY") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def _file_part(name: str, data: bytes, filename: str = "f.bin") -> bytes:
    return (
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data


def _text_part(name: str, value: str) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()


# --- malformed multipart -------------------------------------------------------------------------


def test_multipart_without_a_boundary_is_a_400(app: Api) -> None:
    body, _ = _multipart([_file_part("file", make_checkpoint(seed=1))])
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=", "multipart/x"):
        response = app.http.post("/verify", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (400, 422), (content_type, response.text)
        assert_error(response, response.status_code)


@pytest.mark.parametrize("cut", ["in-part-headers", "in-content", "before-closing-boundary"])
def test_a_truncated_multipart_body_is_a_400(app: Api, cut: str) -> None:
    checkpoint = make_checkpoint(seed=1)
    body, content_type = _multipart([_file_part("file", checkpoint)])
    at = {
        "in-part-headers": 30,
        "in-content": len(body) // 2,
        "before-closing-boundary": len(body) - len(b"--BOUNDARY--\r\n") - 2,
    }[cut]
    response = app.http.post("/verify", content=body[:at], headers={"Content-Type": content_type})
    assert_error(response, 400, "invalid_input")


def test_the_boundary_inside_the_content_does_not_cut_the_file(app: Api) -> None:
    # The checkpoint's own metadata carries the delimiter, but never as "CRLF--BOUNDARY" followed
    # by CRLF or "--": a parser that cut the part there would hash other bytes than were sent.
    import torch

    from modelformat.spec import ModelSpec
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    spec = ModelSpec(
        in_channels=1,
        input_size=28,
        num_classes=2,
        class_names=CLASS_NAMES,
        mean=(0.5,),
        std=(0.25,),
        dataset="set --BOUNDARY-- and --BOUNDARYX and BOUNDARY",
    )
    with torch.random.fork_rng():
        torch.manual_seed(3)
        checkpoint = checkpoint_bytes(build_model(spec), spec)
    assert b"--BOUNDARY--" in checkpoint
    body, content_type = _multipart([_file_part("file", checkpoint)])

    response = app.http.post("/verify", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 200, response.text
    assert response.json()["digest"] == digest_of(checkpoint)
    assert response.json()["reason"] == "unknown"


def test_ten_thousand_parts_are_refused_at_once(app: Api) -> None:
    fields = [_text_part(f"f{i}", "x") for i in range(10_000)]
    files = [_file_part("images", b"x", f"{i}.png") for i in range(10_000)]
    for route, parts in (("/verify", fields), ("/models/" + UNKNOWN + "/predict", files)):
        body, content_type = _multipart(parts)
        response = app.http.post(route, content=body, headers={"Content-Type": content_type})
        # The parser's own part limit, not the route, refused it.
        assert_error(response, 400, "invalid_input")
        assert "Too many" in response.json()["error"]["message"]


@pytest.mark.parametrize("where", ["filename", "extra-header"])
def test_a_part_with_a_ten_megabyte_header_line_is_a_400(
    make_api: Callable[..., Api], where: str
) -> None:
    api = make_api(max_upload_bytes=32 << 20)  # the body limit must not be what refuses it
    long = b"a" * (10 << 20)
    if where == "filename":
        part = b'Content-Disposition: form-data; name="file"; filename="' + long + b'"\r\n\r\nx'
    else:
        part = b'Content-Disposition: form-data; name="file"; filename="f"\r\nX-Long: '
        part += long + b"\r\n\r\nx"
    body, content_type = _multipart([part])

    response = api.http.post("/verify", content=body, headers={"Content-Type": content_type})

    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize(
    ("route", "field"),
    [("/verify", "file"), ("/models", "checkpoint"), ("/models", "card"), ("predict", "images")],
)
def test_a_text_field_where_a_file_is_expected_is_a_400(
    app: Api, model: str, route: str, field: str
) -> None:
    checkpoint = make_checkpoint(seed=2)
    parts = {
        "checkpoint": _file_part("checkpoint", checkpoint),
        "card": _file_part("card", make_card(checkpoint)),
    }
    if route == "/models":
        parts[field] = _text_part(field, "not a file")
        body, content_type = _multipart(list(parts.values()))
    else:
        body, content_type = _multipart([_text_part(field, "not a file")])
    path = f"/models/{model}/predict" if route == "predict" else route

    response = app.http.post(
        path, content=body, headers={"Content-Type": content_type, **REGISTRAR}
    )

    error = assert_error(response, 400, "invalid_input")
    assert field in error["message"]


def test_two_files_in_one_field_are_a_400(app: Api) -> None:
    first, second = make_checkpoint(seed=3), make_checkpoint(seed=4)
    body, content_type = _multipart([_file_part("file", first), _file_part("file", second)])
    verify = app.http.post("/verify", content=body, headers={"Content-Type": content_type})
    register = app.http.post(
        "/models",
        files=[
            ("checkpoint", ("a", first)),
            ("checkpoint", ("b", second)),
            ("card", ("c", make_card(first))),
        ],
        headers=REGISTRAR,
    )
    assert_error(verify, 400, "invalid_input")
    assert_error(register, 400, "invalid_input")
    assert app.http.get("/models").json()["count"] == 0


def test_a_file_where_a_text_field_is_expected_is_a_400(app: Api) -> None:
    checkpoint = make_checkpoint(seed=5)
    response = app.http.post(
        "/models",
        files={
            "checkpoint": ("m", checkpoint),
            "card": ("c", make_card(checkpoint)),
            "parent": ("p", b"sha256:" + b"00" * 32),
        },
        headers=REGISTRAR,
    )
    assert_error(response, 400, "invalid_input")


# --- oversize and slow bodies (real server) --------------------------------------------------------


def test_an_over_limit_content_length_is_a_413_before_the_body_is_sent(server: Server) -> None:
    # Only the head goes out: an answer at all means the server did not wait for the body.
    answer = server.exchange(
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 1000000000\r\n\r\n",
        timeout=5,
    )
    assert _status(answer) == 413
    assert _json_body(answer)["error"]["code"] == "payload_too_large"


def test_a_chunked_body_over_the_limit_is_a_413(server: Server) -> None:
    chunk = b"\0" * 65536
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(64)) + b"0\r\n\r\n"
    answer = server.exchange(
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body,
        timeout=10,
    )
    assert _status(answer) == 413
    assert _json_body(answer)["error"]["code"] == "payload_too_large"


def _trickle(server: Server, head: bytes, drip: bytes, limit_s: float) -> bytes:
    """Send ``head``, then ``drip`` one byte per 100 ms until the server answers or closes (or
    ``limit_s`` passes); meanwhile another client asks /health every 0.5 s and must be answered.
    Returns the slow client's answer."""
    health: list[tuple[int, float]] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        started = time.monotonic()
        next_health = started
        answer = b""
        sent = 0
        while time.monotonic() - started < limit_s:
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer = _read_until_closed(sock, 5)
                break
            if sent < len(drip):
                try:
                    sock.sendall(drip[sent : sent + 1])
                except OSError:
                    answer = _read_until_closed(sock, 5)
                    break
                sent += 1
            if time.monotonic() >= next_health:
                asked = time.monotonic()
                health.append((server.health(timeout=2), time.monotonic() - asked))
                next_health = asked + 0.5
    assert health, "no /health request was made while the slow body was open"
    # Other clients are served while the slow body is open (each /health had 2 s to answer).
    assert all(status == 200 for status, _ in health), health
    return answer


def test_a_body_sent_one_byte_per_100_ms_ends_in_408_while_others_are_served(
    server: Server,
) -> None:
    answer = _trickle(
        server,
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 10000\r\n\r\n",
        b"x" * 10000,
        limit_s=SERVER_BODY_TIMEOUT_S + 4,
    )
    assert _status(answer) == 408, answer[:300]
    error = _json_body(answer)["error"]
    assert error["code"] == "request_timeout"
    assert 0 < error["details"]["received"] < 10000
    assert b"connection: close" in answer.lower()


def test_a_multipart_upload_that_trickles_ends_in_408(server: Server) -> None:
    # The deadline fires inside the multipart parser: the 408 must still be what goes out.
    body, content_type = _multipart([_file_part("file", b"x" * 5000)])
    answer = _trickle(
        server,
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + content_type.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body),
        body,
        limit_s=SERVER_BODY_TIMEOUT_S + 4,
    )
    assert _status(answer) == 408, answer[:300]


def test_a_chunked_body_that_stalls_ends_in_408(server: Server) -> None:
    answer = _trickle(
        server,
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
        b"",  # then nothing at all
        limit_s=SERVER_BODY_TIMEOUT_S + 4,
    )
    assert _status(answer) == 408, answer[:300]


@pytest.mark.parametrize("pace", ["a-header-line-per-0.5s", "silent"])
def test_a_connection_that_never_completes_its_headers_is_closed(server: Server, pace: str) -> None:
    limit = 3 * SERVER_BODY_TIMEOUT_S
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" if pace != "silent" else b"")
        started = time.monotonic()
        closed_or_answered = False
        while time.monotonic() - started < limit:
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                closed_or_answered = True  # an answer (408) or EOF
                break
            if pace != "silent":
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    closed_or_answered = True
                    break
    assert server.health() == 200
    assert closed_or_answered, f"the connection was still open after {limit:g} s"


def test_the_body_deadline_is_408_and_does_not_time_a_finished_body() -> None:
    from registry.api.limits import BodyLimitMiddleware

    async def scenario(messages: list[dict[str, Any]], hang: bool) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            if hang:
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            while (await receive()).get("more_body"):
                pass
            await asyncio.sleep(0.3)  # longer than the deadline: the body is complete by now
            await receive()  # waiting for a disconnect is not timed
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        scope = {"type": "http", "headers": []}
        await BodyLimitMiddleware(inner, 1000, timeout_s=0.2)(scope, receive, send)
        return sent

    part = {"type": "http.request", "body": b"abc", "more_body": True}
    stalled = asyncio.run(asyncio.wait_for(scenario([part], hang=True), 5))
    finished = asyncio.run(
        asyncio.wait_for(
            scenario([part, {"type": "http.request", "body": b"", "more_body": False}], False), 5
        )
    )

    assert stalled[0]["status"] == 408
    assert json.loads(stalled[1]["body"])["error"]["code"] == "request_timeout"
    assert finished[0]["status"] == 200


# --- API keys ---------------------------------------------------------------------------------------


def test_an_empty_key_is_no_key(app: Api) -> None:
    checkpoint = make_checkpoint(seed=6)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    assert_error(
        app.http.post("/models", files=files, headers={"X-API-Key": ""}), 401, "unauthenticated"
    )
    assert app.http.get("/models", headers={"X-API-Key": ""}).status_code == 200


def test_a_one_megabyte_key_is_refused_without_a_5xx(app: Api, server: Server) -> None:
    huge = "k" * (1 << 20)
    assert_error(app.http.get("/models", headers={"X-API-Key": huge}), 401, "unauthenticated")
    answer = server.exchange(
        b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + huge.encode() + b"\r\n\r\n",
        timeout=5,
    )
    assert _status(answer) in (400, 431), answer[:200]
    assert server.health() == 200


@pytest.mark.parametrize(
    "key",
    [
        REGISTRAR_KEY.encode() + b"\xe9",  # latin-1
        REGISTRAR_KEY.encode() + "é".encode(),  # UTF-8
        "ключ-регистратора-0123456789".encode(),
        b"\x80\x81\xfe\xff" * 8,
    ],
    ids=["latin1-suffix", "utf8-suffix", "cyrillic", "high-bytes"],
)
def test_a_non_ascii_key_is_a_401(app: Api, key: bytes) -> None:
    response = app.http.get("/models", headers=[(b"X-API-Key", key)])
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    ("headers", "action"),
    [(READER, "register"), (REVOKER, "register"), (REGISTRAR, "revoke"), (READER, "revoke")],
)
def test_a_key_without_the_role_is_a_403(
    app: Api, model: str, headers: dict[str, str], action: str
) -> None:
    checkpoint = make_checkpoint(seed=8)
    if action == "register":
        files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
        response = app.http.post("/models", files=files, headers=headers)
    else:
        response = app.http.post(
            f"/models/{model}/revoke", json={"reason": "other"}, headers=headers
        )
    error = assert_error(response, 403, "forbidden")
    assert error["details"]["role"] == ("registrar" if action == "register" else "revoker")
    assert app.http.get(f"/models/{model}").json()["record"]["valid"] is True


def test_a_key_removed_from_the_configuration_is_refused(
    make_api: Callable[..., Api],
) -> None:
    checkpoint = make_checkpoint(seed=9)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    # After a restart: the registrar's key gone entirely, or kept with the reader role only.
    gone = make_api(api_keys=f"{READER_KEY}:reader")
    demoted = make_api(api_keys=f"{REGISTRAR_KEY}:reader")

    assert_error(gone.http.post("/models", files=files, headers=REGISTRAR), 401, "unauthenticated")
    assert_error(demoted.http.post("/models", files=files, headers=REGISTRAR), 403, "forbidden")
    assert_error(gone.http.get("/models", headers=REGISTRAR), 401, "unauthenticated")


def test_two_key_headers_are_not_a_5xx(app: Api) -> None:
    checkpoint = make_checkpoint(seed=10)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    for pair in ((READER_KEY, REGISTRAR_KEY), ("", REGISTRAR_KEY), ("nobody-0123456789abcdef", "")):
        headers = [(b"X-API-Key", value.encode()) for value in pair]
        response = app.http.post("/models", files=files, headers=headers)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert_error(response, response.status_code)


# --- header injection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "sha256%0d%0aSet-Cookie:%20stolen=1",
        UNKNOWN + "%0d%0aX-Injected:%201",
        UNKNOWN + "%0aX-Injected:%201",
        "%0d%0a%0d%0a<html>",
    ],
)
def test_a_digest_cannot_inject_response_headers(app: Api, digest: str) -> None:
    for method, route in (("GET", "/models/{}/checkpoint"), ("POST", "/models/{}/predict")):
        response = app.http.request(method, route.format(digest), content=png())
        assert_error(response, 400, "invalid_digest")
        assert "set-cookie" not in response.headers
        assert "x-injected" not in response.headers


@pytest.mark.parametrize(
    "header",
    [b"X-API-Key: a\x00b", b"X-API-Key: a\rb", b"X-Bad\x7f: 1", b"X Bad: 1", b": no-name"],
    ids=["nul-in-value", "bare-cr-in-value", "del-in-name", "space-in-name", "empty-name"],
)
def test_raw_header_bytes_that_break_framing_are_refused_by_the_server(
    server: Server, header: bytes
) -> None:
    answer = server.exchange(
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n\r\n", timeout=5
    )
    assert _status(answer) == 400, answer[:200]
    assert server.health() == 200


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x1bb\x7f", b"\xff\xfe", b"a\tb"])
def test_control_bytes_in_a_key_reach_the_app_as_an_unknown_key(
    server: Server, value: bytes
) -> None:
    # h11 lets control characters other than NUL, CR and LF through in header values.
    answer = server.exchange(
        b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-API-Key: "
        + value
        + b"\r\n\r\n",
        timeout=5,
    )
    assert _status(answer) == 401, answer[:300]
    assert _json_body(answer)["error"]["code"] == "unauthenticated"


def test_content_length_and_transfer_encoding_together_are_refused_and_nothing_is_smuggled(
    server: Server,
) -> None:
    smuggled = b"POST /models/" + UNKNOWN.encode() + b"/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    smuggled += b"Content-Type: application/json\r\nContent-Length: 19\r\n\r\n"
    smuggled += b'{"reason": "other"}'
    body = b"0\r\n\r\n" + smuggled
    answer = server.exchange(
        b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body,
        timeout=5,
    )
    assert _status(answer) == 400, answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the hidden request was not answered
    assert _json_body(answer)["error"]["code"] == "invalid_input"


def test_a_forged_forwarded_for_cannot_break_or_forge_the_audit_log(server: Server) -> None:
    from registry.core.audit import verify as verify_audit
    from registry.core.audit_key import load_key

    forged = [
        '1.2.3.4", "outcome": "verified',
        "a" * 3000,  # longer than the audit log takes for a value
        "\u00e9\u00e8, {}",
    ]
    for value in forged:
        response = httpx.post(
            f"{server.base}/verify",
            content=b"not a checkpoint",
            headers=[(b"X-Forwarded-For", value.encode("latin-1"))],
            timeout=10,
        )
        assert_error(response, 422)

    entries = [json.loads(line) for line in server.audit.read_text().splitlines()]
    last = [e for e in entries if e["event"] == "verify"][-len(forged) :]
    assert [e["outcome"] for e in last] == ["invalid_checkpoint"] * len(forged)
    assert all(e["who"].startswith("ip:") and len(e["who"]) <= 67 for e in last), last
    key = load_key(server.audit.with_name("audit.key"))
    assert verify_audit(server.audit, key).entries == len(entries)


def test_a_wrong_method_names_every_allowed_method(app: Api) -> None:
    response = app.http.request("DELETE", "/models")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert app.http.request("PUT", f"/models/{UNKNOWN}/predict").headers["allow"] == "POST"


# --- content types that lie ------------------------------------------------------------------------


def test_an_image_is_judged_by_its_bytes_not_its_name_or_type(app: Api, model: str) -> None:
    route = f"/models/{model}/predict"
    png_as_json = app.http.post(route, files=[("images", ("scan.json", png(), "application/json"))])
    jpeg_as_text = app.http.post(route, files=[("images", ("scan.txt", jpeg(), "text/plain"))])
    json_as_png = app.http.post(
        route, files=[("images", ("scan.png", b'{"pixels": [[0]]}', "image/png"))]
    )
    html_as_jpeg = app.http.post(
        route, content=b"<html><script>alert(1)</script>", headers={"Content-Type": "image/jpeg"}
    )
    png_as_json_body = app.http.post(
        route, content=png(), headers={"Content-Type": "application/json"}
    )

    assert png_as_json.status_code == 200, png_as_json.text
    assert jpeg_as_text.status_code == 200, jpeg_as_text.text
    assert_error(json_as_png, 400, "invalid_image")
    assert_error(html_as_jpeg, 400, "invalid_image")
    assert_error(png_as_json_body, 400, "invalid_input")


def test_files_named_and_typed_as_something_else_are_judged_by_their_bytes(app: Api) -> None:
    checkpoint = make_checkpoint(seed=11)
    png_as_checkpoint = app.http.post(
        "/verify", files={"file": ("model.safetensors", png(), "application/octet-stream")}
    )
    checkpoint_as_json = app.http.post(
        "/verify", content=checkpoint, headers={"Content-Type": "application/json"}
    )
    checkpoint_as_card = app.http.post(
        "/models",
        files={
            "checkpoint": ("model.safetensors", checkpoint),
            "card": ("model_card.json", checkpoint, "application/json"),
        },
        headers=REGISTRAR,
    )
    card_as_checkpoint = app.http.post(
        "/models",
        files={
            "checkpoint": ("model.safetensors", make_card(checkpoint)),
            "card": ("model_card.json", make_card(checkpoint)),
        },
        headers=REGISTRAR,
    )

    assert_error(png_as_checkpoint, 422, "invalid_checkpoint")
    assert checkpoint_as_json.status_code == 200  # the bytes are a checkpoint: verdict unknown
    assert checkpoint_as_json.json()["digest"] == digest_of(checkpoint)
    assert_error(checkpoint_as_card, 400, "invalid_model_card")
    assert_error(card_as_checkpoint, 422, "invalid_checkpoint")


# --- malformed digests --------------------------------------------------------------------------

MALFORMED_DIGESTS = {
    "empty-prefix": "sha256:",
    "short": "ab" * 31,
    "long": "ab" * 33,
    "odd": "a" * 63,
    "non-hex": "g" * 64,
    "other-algorithm": "sha512:" + "ab" * 32,
    "double-prefix": "0x0x" + "ab" * 32,
    "prefix-mix": "sha256:0x" + "ab" * 32,
    "arabic-digits": "\u0661" * 64,
    "fullwidth": "\uff41" * 64,
    "nul": "%00" + "ab" * 32,
    "traversal": "..%2F..%2F..%2Fetc%2Fpasswd",
    "inner-space": "ab" * 16 + " " + "ab" * 16,
    "10k": "a" * 10_000,
    "sql": "' OR 1=1 --",
    "json": '{"$ne": null}',
}
DIGEST_ROUTES = [
    ("GET", "/models/{}"),
    ("GET", "/models/{}/checkpoint"),
    ("POST", "/models/{}/predict"),
    ("POST", "/models/{}/revoke"),
]


def on_digest_routes(app: Api, digest: str) -> Iterator[tuple[str, str, httpx.Response]]:
    """A request naming ``digest`` on each of DIGEST_ROUTES, with a body the route accepts."""
    for method, route in DIGEST_ROUTES:
        kwargs: dict[str, Any] = {"headers": REVOKER}
        if route.endswith("revoke"):
            kwargs["json"] = {"reason": "other"}
        elif method == "POST":
            kwargs["files"] = [("images", ("x.png", png()))]
        yield method, route, app.http.request(method, route.format(digest), **kwargs)


@pytest.mark.parametrize("shape", sorted(MALFORMED_DIGESTS))
def test_a_malformed_digest_is_a_400_on_every_route(app: Api, shape: str) -> None:
    for method, route, response in on_digest_routes(app, MALFORMED_DIGESTS[shape]):
        # A "/" decoded from %2F can leave the route: then it is an unknown path.
        expected = {400} if shape != "traversal" else {400, 404, 405}
        assert response.status_code in expected, (method, route, response.text)
        error = assert_error(response, response.status_code)
        if response.status_code == 400:
            assert error["code"] == "invalid_digest"
        assert b"root:" not in response.content


@pytest.mark.parametrize(
    "form",
    [
        UNKNOWN,
        UNKNOWN.upper(),
        "0x" + "ab" * 32,
        "ab" * 32,
        " " + UNKNOWN + " ",
        "\u2003" + UNKNOWN,
        "sha256:" + "00" * 32,
    ],
    ids=["prefixed", "upper", "0x", "bare", "padded", "unicode-padded", "zero"],
)
def test_a_well_formed_unknown_digest_is_a_404(app: Api, form: str) -> None:
    for _method, route, response in on_digest_routes(app, form):
        # Revoking is the contract's call: it reverts with UnknownModel.
        assert_error(response, 404, "unknown_model" if route.endswith("revoke") else "not_found")


# --- hostile images -------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's
    header; the IDAT holds one row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + min(width, 4096)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _image(mode: str, fmt: str = "PNG", size: int = 28, **options: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _animated_png() -> bytes:
    from PIL import Image

    frames = [Image.new("L", (28, 28), shade) for shade in (10, 200, 90)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def test_predict_with_no_images_is_a_400(app: Api, model: str) -> None:
    route = f"/models/{model}/predict"
    body, content_type = _multipart([_text_part("note", "no images here")])
    answers = [
        app.http.post(route, content=body, headers={"Content-Type": content_type}),
        app.http.post(route, json={"images": []}),
        app.http.post(route, json={}),
        app.http.post(route, json={"pixels": [], "images": []}),
        app.http.post(route, content=b"", headers={"Content-Type": "image/png"}),
        app.http.post(route),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        assert_error(response, 400)


def test_predict_with_more_images_than_allowed_is_a_400(make_api: Callable[..., Api]) -> None:
    api = make_api(max_images_per_request=4)
    _, digest = api.registered_model(seed=12)
    route = f"/models/{digest}/predict"
    pixels = [[0] * 28] * 28

    four = api.http.post(route, files=[("images", (f"{n}.png", png())) for n in range(4)])
    five = api.http.post(route, files=[("images", (f"{n}.png", png())) for n in range(5)])
    five_json = api.http.post(route, json={"images": [pixels] * 5})

    assert four.status_code == 200 and len(four.json()["predictions"]) == 4
    assert_error(five, 400, "invalid_input")
    assert_error(five_json, 400, "invalid_input")


@pytest.mark.parametrize(
    "claim", [(100_000, 100_000), (1, 2**31 - 1), (65_535, 65_535)], ids=["square", "tall", "max"]
)
def test_an_image_bomb_is_a_413_from_its_header(
    app: Api, model: str, claim: tuple[int, int]
) -> None:
    bomb = _png_claiming(*claim)
    assert len(bomb) < 10_000
    response = app.http.post(f"/models/{model}/predict", files=[("images", ("b.png", bomb))])
    # Refused by what its header claims: the few bytes behind it were never decoded.
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["what"] == "image pixel count"


def test_a_real_decompression_bomb_is_a_413(make_api: Callable[..., Api]) -> None:
    api = make_api(max_image_pixels=1_000_000)
    _, digest = api.registered_model(seed=13)
    bomb = _image("L", size=2_000)  # 4 M pixels of zeros, a few KB compressed
    assert len(bomb) < 50_000
    response = api.http.post(f"/models/{digest}/predict", files=[("images", ("b.png", bomb))])
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "kind",
    ["cmyk-jpeg", "16-bit-png", "paletted-png", "animated-png", "rgba-png", "1-bit-png", "la-png"],
)
def test_unusual_but_valid_images_are_converted_and_classified(
    app: Api, model: str, kind: str
) -> None:
    image = {
        "cmyk-jpeg": lambda: _image("CMYK", "JPEG"),
        "16-bit-png": lambda: _image("I;16"),
        "paletted-png": lambda: _image("P"),
        "animated-png": _animated_png,
        "rgba-png": lambda: _image("RGBA"),
        "1-bit-png": lambda: _image("1"),
        "la-png": lambda: _image("LA"),
    }[kind]()
    response = app.http.post(f"/models/{model}/predict", files=[("images", ("i", image))])
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] in CLASS_NAMES


def _noisy_png() -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["jpeg-cut", "jpeg-header-only", "png-cut-in-pixels", "png-magic"])
def test_a_truncated_image_is_a_400(app: Api, model: str, kind: str) -> None:
    noisy = _noisy_png()
    image = {
        "jpeg-cut": jpeg()[:-40],
        "jpeg-header-only": jpeg()[:20],
        "png-cut-in-pixels": noisy[: len(noisy) // 2],
        "png-magic": noisy[:8],
    }[kind]
    response = app.http.post(f"/models/{model}/predict", files=[("images", ("i", image))])
    assert_error(response, 400, "invalid_image")


# --- deeply nested JSON ------------------------------------------------------------------------------

NESTINGS = {
    "arrays": b"[" * 200_000 + b"]" * 200_000,
    "objects": b'{"a":' * 200_000 + b"1" + b"}" * 200_000,
    "mixed": b'[{"a":' * 100_000 + b"0" + b"}]" * 100_000,
    "unclosed": b"[" * 500_000,
}


@pytest.mark.parametrize("shape", sorted(NESTINGS))
def test_deeply_nested_json_is_refused_and_the_worker_lives(
    app: Api, model: str, shape: str
) -> None:
    nested = NESTINGS[shape]
    pixels = app.post_json(f"/models/{model}/predict", b'{"pixels": ' + nested + b"}")
    images = app.post_json(f"/models/{model}/predict", b'{"images": [' + nested + b"]}")
    revoke = app.post_json(
        f"/models/{model}/revoke", b'{"reason": "other", "replacement": ' + nested + b"}", REVOKER
    )
    checkpoint = make_checkpoint(seed=14)
    card = app.register(checkpoint, nested)

    for response in (pixels, images):
        assert_error(response, 400)
    assert_error(revoke, 422, "invalid_request")
    assert_error(card, 400, "invalid_model_card")
    assert app.http.get(f"/models/{model}").json()["record"]["valid"] is True


def test_deeply_nested_json_does_not_kill_a_served_worker(server: Server) -> None:
    before = server.process.pid
    for shape in ("arrays", "objects"):
        response = httpx.post(
            f"{server.base}/models/{UNKNOWN}/revoke",
            content=b'{"reason": ' + NESTINGS[shape][: SERVER_MAX_UPLOAD - 100] + b"}",
            headers={**REVOKER, "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code in (400, 422), response.text
    assert server.process.poll() is None and server.process.pid == before
    assert server.health() == 200
