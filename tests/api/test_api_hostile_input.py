"""Hostile uploads: pickles with payloads, malformed safetensors, oversize and deeply nested bodies.

Each is refused with a 4xx in the one error shape, nothing is loaded, and the service keeps working.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apikit import (
    REGISTRAR,
    REVOKER,
    Api,
    assert_error,
    digest_of,
    make_card,
    make_checkpoint,
    png,
)

# --- pickles -------------------------------------------------------------------------------------


class _Canary:
    """Unpickling this calls os.open(path, O_CREAT) - proof that something loaded the pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (os.open, (self.path, os.O_CREAT | os.O_WRONLY, 0o600))


def _pickles(canary: Path) -> dict[str, bytes]:
    payload = {"state_dict": _Canary(canary)}
    torch_style = io.BytesIO()
    with zipfile.ZipFile(torch_style, "w") as archive:  # what torch.save writes
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
    return {
        "protocol-4": pickle.dumps(payload, protocol=4),
        "protocol-2": pickle.dumps(payload, protocol=2),
        "protocol-0": pickle.dumps(payload, protocol=0),
        "torch-save-zip": torch_style.getvalue(),
    }


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "canary"
    # The payload really works: unpickling it here creates the file (then we remove it).
    pickle.loads(_pickles(path)["protocol-4"])
    assert path.exists()
    path.unlink()
    yield path
    assert not path.exists(), "a pickle was deserialised"


@pytest.mark.parametrize("kind", ["protocol-4", "protocol-2", "protocol-0", "torch-save-zip"])
def test_a_pickle_with_a_payload_is_refused_by_verify_and_register_and_never_loaded(
    api: Api, canary: Path, kind: str
) -> None:
    data = _pickles(canary)[kind]

    verify = api.verify(data)
    register = api.register(data, make_card(data))
    predict = api.http.post(
        f"/models/{digest_of(data)}/predict", files=[("images", ("x.png", png()))]
    )

    assert_error(verify, 422, "pickle_rejected")
    assert_error(register, 422, "pickle_rejected")
    assert_error(predict, 404, "not_found")
    assert not canary.exists()
    assert not any(p.is_file() for p in (api.settings.data_dir / "store").rglob("*"))
    assert api.http.get("/models").json()["count"] == 0


# --- malformed safetensors ----------------------------------------------------------------------


def _reframe(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _header_and_data(checkpoint: bytes) -> tuple[dict[str, object], bytes]:
    (n,) = struct.unpack("<Q", checkpoint[:8])
    return json.loads(checkpoint[8 : 8 + n]), checkpoint[8 + n :]


def _malformed() -> dict[str, bytes]:
    good = make_checkpoint(seed=21)
    header, data = _header_and_data(good)
    first = next(k for k in header if k != "__metadata__")

    def edit(fn: Callable[[dict[str, object]], None]) -> bytes:
        copy = json.loads(json.dumps(header))
        fn(copy)
        return _reframe(copy, data)

    return {
        "empty": b"",
        "too-short": b"\x01\x02\x03",
        "huge-header-length": struct.pack("<Q", 1 << 62) + b"{}",
        "header-longer-than-file": struct.pack("<Q", 4096) + b'{"a": 1}',
        "header-not-json": struct.pack("<Q", 9) + b"{not json" + data,
        "header-not-utf8": struct.pack("<Q", 4) + b"{\xff\xfe}" + data,
        "deeply-nested-header": _reframe_raw(b"[" * 50_000 + b"]" * 50_000),
        "missing-metadata": edit(lambda h: h.pop("__metadata__")),
        "unknown-architecture": edit(
            lambda h: h["__metadata__"].update(architecture="resnet")  # type: ignore[attr-defined]
        ),
        "wrong-dtype": edit(lambda h: h[first].update(dtype="F64")),  # type: ignore[attr-defined]
        "wrong-shape": edit(lambda h: h[first].update(shape=[1, 2, 3])),  # type: ignore[attr-defined]
        "offsets-out-of-range": edit(
            lambda h: h[first].update(data_offsets=[0, 1 << 40])  # type: ignore[attr-defined]
        ),
        "extra-tensor": edit(
            lambda h: h.update(evil={"dtype": "F32", "shape": [0], "data_offsets": [0, 0]})
        ),
        "truncated-data": good[:-100],
        "trailing-data": good + b"\x00" * 8,
    }


def _reframe_raw(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


MALFORMED = _malformed()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_a_4xx_for_verify_and_register(api: Api, case: str) -> None:
    data = MALFORMED[case]

    verify = api.verify(data)
    register = api.register(data, make_card(data))

    # An empty body is no upload at all (400); an empty checkpoint part is a bad checkpoint.
    assert_error(verify, 400 if case == "empty" else 422)
    assert_error(register, 422, "invalid_checkpoint")
    assert api.http.get("/health").status_code == 200  # still alive


# --- size limits ---------------------------------------------------------------------------------


LIMIT = 256 * 1024  # a LeNet checkpoint (~180 KB) fits, twice that does not


@pytest.fixture
def small(make_api: Callable[..., Api]) -> Api:
    return make_api(max_upload_bytes=LIMIT)


def test_an_over_limit_content_length_is_a_413_before_the_body_is_read(small: Api) -> None:
    reads: list[int] = []

    def body() -> Iterator[bytes]:
        reads.append(1)
        yield b"x" * 10

    response = small.http.post(
        "/verify",
        content=body(),
        headers={"Content-Length": str(10**9), "Content-Type": "application/octet-stream"},
    )

    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit"] == LIMIT
    assert error["details"]["size"] == 10**9


def test_a_chunked_body_without_length_is_refused_at_the_limit(small: Api) -> None:
    # TestClient hands the app the whole body at once; that the limit fires *while* a chunked
    # body streams is checked against a real uvicorn server in test_api_server.py.
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"\0" * 16 * 1024

    response = small.http.post(
        "/verify", content=chunks(), headers={"Content-Type": "application/octet-stream"}
    )

    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["size"] > LIMIT


@pytest.mark.parametrize("route", ["/verify", "/models", "/models/{d}/predict"])
def test_an_over_limit_multipart_upload_is_a_413(small: Api, route: str) -> None:
    field = {"/verify": "file", "/models": "checkpoint", "/models/{d}/predict": "images"}[route]
    response = small.http.post(
        route.replace("{d}", "ab" * 32),
        files={field: ("big.bin", b"\0" * 2 * LIMIT)},
        headers=REGISTRAR,
    )
    assert_error(response, 413, "payload_too_large")


def test_an_over_limit_json_body_is_a_413(small: Api) -> None:
    response = small.http.post(
        "/models/" + "ab" * 32 + "/predict", json={"pixels": [[0] * 28] * 28 * 1000}
    )
    assert_error(response, 413, "payload_too_large")
    response = small.http.post(
        "/models/" + "ab" * 32 + "/revoke", json={"reason": "x" * 2 * LIMIT}, headers=REVOKER
    )
    assert_error(response, 413, "payload_too_large")


def test_the_service_works_after_refusing_an_oversize_body(small: Api) -> None:
    assert small.http.post("/verify", content=b"\0" * 2 * LIMIT).status_code == 413
    checkpoint, _ = small.registered_model()
    assert small.verify(checkpoint).json()["verified"] is True


def test_a_content_length_that_is_not_a_number_is_a_400() -> None:
    import asyncio

    from registry.api.limits import BodyLimitMiddleware

    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the app must not be called")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "headers": [(b"content-length", b"lots")]}
    asyncio.run(BodyLimitMiddleware(app, 10)(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_input"  # type: ignore[arg-type]


# --- JSON that would crash json.loads ------------------------------------------------------------

DEEP = b"[" * 90_000 + b"]" * 90_000


def test_deeply_nested_json_is_refused_without_crashing_the_worker(api: Api) -> None:
    _, digest = api.registered_model()
    pixels = api.post_json(f"/models/{digest}/predict", b'{"pixels": ' + DEEP + b"}")
    revoke = api.post_json(f"/models/{digest}/revoke", b'{"reason": ' + DEEP + b"}", REVOKER)
    checkpoint = make_checkpoint(seed=30)
    card = api.register(checkpoint, DEEP)

    assert_error(pixels, 400, "invalid_input")
    assert_error(revoke, 422, "invalid_request")
    assert_error(card, 400, "invalid_model_card")
    assert api.http.get("/health").status_code == 200
