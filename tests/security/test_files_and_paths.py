"""Files that change under the reader, links, special files and path traversal.

- The gate deserialises the bytes it hashed, whatever happens to the caller's buffer afterwards;
  ``registry verify`` opens the file once.
- ``registry hash`` / ``verify`` follow a symlink to its target's bytes; a loop or a dangling
  link is bad input (exit 2), and so is anything but a regular file: /dev/zero, a FIFO or a
  directory is refused before a byte is read (none of them may hang the command).
- Digests that look like paths never reach the file system: the store refuses them, the API
  answers 4xx, and an upload's file name is never used as a path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.numpy
from apikit import REGISTRAR, REVOKER, TEST_SET_DIGEST, Api, assert_error, make_card
from corpus import valid

from registry.cli import EXIT_OK, EXIT_USAGE, main
from registry.core.digest import Digest, digest_bytes
from registry.core.records import RegisterRequest
from registry.core.store import FileStore
from registry.errors import InvalidDigest, NotVerified
from registry.gate import Gate

A = valid(seed=1)
B = valid(seed=2)  # same header and length as A, other weights; never registered


def register(client: Any, data: bytes) -> Digest:
    digest = digest_bytes(data)
    card = digest_bytes(b"card of " + digest.raw)
    client.register(RegisterRequest(digest, 9_000, Digest.parse(TEST_SET_DIGEST), card))
    return digest


def weights(network: Any) -> dict[str, bytes]:
    return {name: t.detach().numpy().tobytes() for name, t in network.state_dict().items()}


def file_weights(data: bytes) -> dict[str, bytes]:
    return {name: a.tobytes() for name, a in safetensors.numpy.load(data).items()}


# --- bytes that change between hashing and loading -------------------------------------------------


def test_the_gate_loads_the_bytes_it_hashed_when_the_buffer_changes_right_after_hashing(
    memory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry.gate

    digest = register(memory.client, A)
    buffer = bytearray(A)
    real = registry.gate.digest_bytes

    def hash_then_swap(data: bytes | bytearray | memoryview) -> Digest:
        result = real(data)
        buffer[:] = B  # the caller's buffer now holds other (unregistered) weights
        return result

    monkeypatch.setattr(registry.gate, "digest_bytes", hash_then_swap)

    model = Gate(memory.client).admit(buffer)

    assert buffer == B
    assert model.digest == digest
    assert weights(model.network) == file_weights(A) != file_weights(B)


def test_the_gate_loads_only_registered_weights_while_another_thread_rewrites_the_buffer(
    memory: Any,
) -> None:
    digest = register(memory.client, A)
    gate = Gate(memory.client)
    buffer = bytearray(A)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            buffer[:] = B
            buffer[:] = A

    writer = threading.Thread(target=flip, daemon=True)
    writer.start()
    loaded, refused = 0, 0
    try:
        for _ in range(30):
            try:
                model = gate.admit(buffer)
            except NotVerified as exc:  # it copied B: unknown on chain, refused
                assert exc.verdict.reason == "unknown"
                refused += 1
                continue
            assert model.digest == digest
            assert weights(model.network) == file_weights(A)
            gate.forget(digest)
            loaded += 1
    finally:
        stop.set()
        writer.join()
    assert loaded + refused == 30 and loaded > 0


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, memory: Any) -> Any:
    """``registry`` run in-process against the session's eth-tester chain."""
    for name in list(os.environ):
        if name.startswith("REGISTRY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REGISTRY_RPC_URL", "memory")
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("registry.chain.connection.connect", lambda settings, **kw: memory.client)
    return memory


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_verify_opens_the_file_once_and_reports_the_digest_of_those_bytes(
    cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], audit: Any
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(A)
    register(cli_env.client, A)

    with audit.recording(trap=str(path)) as events:
        code, out, _ = cli(capsys, "--json", "verify", str(path))

    opens = [event for event in events if event[0] == "open"]
    assert code == EXIT_OK
    assert json.loads(out)["digest"] == str(digest_bytes(A))
    assert len(opens) == 1, opens


# --- symlinks ----------------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "real" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(A)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    return link, target


def test_registry_hash_of_a_symlink_prints_the_digest_of_the_target_bytes(
    cli_env: Any, linked: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    link, target = linked

    code, out, _ = cli(capsys, "--json", "hash", str(link))

    assert code == EXIT_OK
    assert json.loads(out) == {
        "file": str(link),
        "digest": "sha256:" + hashlib.sha256(A).hexdigest(),
    }
    assert link.is_symlink() and target.read_bytes() == A


def test_registry_verify_of_a_symlink_verifies_the_target_bytes(
    cli_env: Any, linked: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    link, _ = linked
    register(cli_env.client, A)

    code, out, _ = cli(capsys, "--json", "verify", str(link))

    assert code == EXIT_OK
    assert json.loads(out)["verified"] is True
    assert json.loads(out)["digest"] == str(digest_bytes(A))


@pytest.mark.parametrize("command", ["hash", "verify"])
def test_a_symlink_loop_is_a_usage_error_naming_the_loop(
    cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.symlink_to(two)
    two.symlink_to(one)

    code, out, err = cli(capsys, command, str(one))

    assert code == EXIT_USAGE and out == ""
    assert err.startswith(f"error: cannot open {one}: ") and "symbolic links" in err


def test_a_dangling_symlink_is_a_usage_error(
    cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "gone")

    code, _, err = cli(capsys, "hash", str(link))

    assert code == EXIT_USAGE
    assert err == f"error: no such file: {link}; check the path\n"


# --- special files -------------------------------------------------------------------------------


@pytest.fixture
def special(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    fifos: list[Path] = []

    def make(kind: str) -> Path:
        if kind == "fifo":
            path = tmp_path / "pipe"
            os.mkfifo(path)
            fifos.append(path)
            return path
        if kind == "directory":
            return tmp_path
        return Path(kind)

    yield make
    for fifo in fifos:  # release a reader that a regression left blocked in open()
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


SPECIAL = [
    ("hash", "/dev/zero", "character device"),
    ("hash", "/dev/null", "character device"),
    ("hash", "fifo", "FIFO"),
    ("hash", "directory", "directory"),
    ("verify", "/dev/zero", "character device"),
    ("verify", "fifo", "FIFO"),
    ("register", "fifo", "FIFO"),  # not /dev/zero: a regression would read it into memory
    ("register", "directory", "directory"),
]


@pytest.mark.parametrize(
    ("command", "kind", "described"), SPECIAL, ids=[f"{c}-{k}" for c, k, _ in SPECIAL]
)
def test_a_special_file_is_refused_as_not_a_regular_file_without_hanging(
    cli_env: Any,
    special: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    command: str,
    kind: str,
    described: str,
) -> None:
    path = special(kind)
    extra = ["--accuracy-bps", "9000", "--test-set-digest", TEST_SET_DIGEST, "--card-digest"]
    argv = [command, str(path), *([*extra, TEST_SET_DIGEST] if command == "register" else [])]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)

    runner.start()
    runner.join(timeout=60)

    assert not runner.is_alive(), f"registry {command} {path} is still reading after 60 s"
    _, err = capsys.readouterr()
    assert result == [EXIT_USAGE]
    assert err == (
        f"error: {path} is not a regular file (it is a {described}); "
        "give the path of the file itself\n"
    )


# --- digests that look like paths ------------------------------------------------------------------

TRAVERSALS = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "/etc/passwd",
    "../" + "a" * 61,  # 64 characters, like a digest
    "a" * 62 + "/.",
    "ab/../../../../../../../../../../../../../../../../../../../etc/passwd",
    "A" * 64,  # a digest, but not the store's spelling of it
    "sha256:" + "a" * 64,
    "a" * 64 + "\0",
    "",
]


@pytest.mark.parametrize("digest", TRAVERSALS)
def test_the_store_refuses_a_digest_that_is_a_path_before_touching_the_disk(
    tmp_path: Path, audit: Any, digest: str
) -> None:
    store = FileStore(tmp_path / "store")
    store.put(A, "checkpoint")

    with audit.recording(trap="/") as events:
        for call in (store.get, store.has):
            with pytest.raises(InvalidDigest) as info:
                call(digest, "checkpoint")
            assert info.value.value == digest

    assert [event for event in events if event[0] == "open"] == []


def test_the_store_refuses_a_kind_that_is_a_path(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    digest = store.put(A, "checkpoint")

    with pytest.raises(ValueError, match="unknown object kind"):
        store.get(digest, "../checkpoint")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown object kind"):
        store.put(A, "/tmp/x")  # type: ignore[arg-type]


ROUTES = [
    ("GET", "/models/..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/models/..%2F..%2Fetc/checkpoint"),
    ("GET", "/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/checkpoint"),
    ("GET", "/models/sha256:..%2f..%2fetc%2fpasswd/checkpoint"),
    ("GET", "/models/%2Fetc%2Fpasswd/checkpoint"),
    ("GET", "/models/..%5c..%5cwindows%5cwin.ini/checkpoint"),
    ("GET", "/models/%2e%2e/checkpoint"),
    ("GET", "/models/sha256:..%5c..%5cetc%5cpasswd"),
    ("POST", "/models/..%2F..%2Fetc%2Fpasswd/predict"),
    ("POST", "/models/..%2F..%2Fetc%2Fpasswd/revoke"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_route_with_a_path_for_a_digest_is_a_4xx_that_reads_no_file(
    make_api: Callable[..., Api], audit: Any, method: str, path: str
) -> None:
    api = make_api()
    headers = REVOKER if path.endswith("/revoke") else REGISTRAR

    with audit.recording(trap="/etc") as events:
        response = api.http.request(method, path, headers=headers, json={"reason": "other"})

    error = assert_error(response, response.status_code)
    assert 400 <= response.status_code < 500 and error["code"] in {"invalid_digest", "not_found"}
    assert [event for event in events if event[0] == "open"] == []


@pytest.mark.parametrize(
    "name", ["../../{token}", "/tmp/{token}", "..\\..\\{token}", "store/checkpoint/../../{token}"]
)
def test_an_upload_file_name_is_never_used_as_a_path(
    make_api: Callable[..., Api], tmp_path: Path, audit: Any, name: str
) -> None:
    api = make_api()
    token = "upload-" + secrets.token_hex(8)
    filename = name.format(token=token)
    files = {
        "checkpoint": (filename, A, "application/octet-stream"),
        "card": (filename + ".json", make_card(A), "application/json"),
    }

    with audit.recording(trap="/") as events:
        registered = api.http.post("/models", files=files, headers=REGISTRAR)
        verified = api.http.post("/verify", files={"file": (filename, A)})

    assert registered.status_code == 201, registered.text
    assert verified.status_code == 200 and verified.json()["verified"] is True
    opened = [event for event in events if event[0] == "open" and token in event[1]]
    assert opened == []
    assert not list(Path("/tmp").glob(f"{token}*"))
    assert not [p for p in tmp_path.rglob(f"*{token}*")]
    stored = sorted(p.name for p in (api.settings.data_dir / "store").rglob("*") if p.is_file())
    assert stored == sorted([digest_bytes(A).hex[2:], digest_bytes(make_card(A)).hex[2:]])
