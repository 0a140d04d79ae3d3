from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from storekit import put_at_once

from registry.core.store import CheckpointStore, FileStore
from registry.errors import InvalidDigest, NotFound, StoreError

DATA = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256))
DIGEST = hashlib.sha256(DATA).hexdigest()


def object_path(root: Path, kind: str, digest: str) -> Path:
    return root / kind / digest[:2] / digest[2:]


def test_file_store_satisfies_the_protocol(tmp_path: Path) -> None:
    store: CheckpointStore = FileStore(tmp_path)
    assert store.put(b"x", "card") == hashlib.sha256(b"x").hexdigest()


def test_put_then_get_returns_the_same_bytes_under_their_sha256(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    digest = store.put(DATA, "checkpoint")
    assert digest == DIGEST
    assert store.get(digest, "checkpoint") == DATA
    assert store.has(digest, "checkpoint")
    assert object_path(tmp_path, "checkpoint", digest).read_bytes() == DATA


def test_kinds_are_separate_namespaces(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put(DATA, "checkpoint")
    assert not store.has(DIGEST, "card")
    with pytest.raises(NotFound):
        store.get(DIGEST, "card")


def test_put_writes_a_read_only_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put(DATA, "card")
    path = object_path(tmp_path, "card", DIGEST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert os.listdir(path.parent) == [DIGEST[2:]]


def test_put_is_idempotent(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    path = object_path(tmp_path, "checkpoint", DIGEST)
    assert store.put(DATA, "checkpoint") == DIGEST
    inode = path.stat().st_ino
    assert store.put(bytearray(DATA), "checkpoint") == DIGEST
    assert path.stat().st_ino == inode
    assert os.listdir(path.parent) == [DIGEST[2:]]


def test_get_of_a_missing_object_raises_not_found_naming_the_digest(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(NotFound) as info:
        store.get("ab" * 32, "checkpoint")
    assert "ab" * 32 in str(info.value)
    assert info.value.details["digest"] == "ab" * 32
    assert not store.has("ab" * 32, "checkpoint")


def corrupt(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(0o444)


def test_get_detects_an_object_whose_bytes_changed_on_disk(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put(DATA, "checkpoint")
    corrupt(object_path(tmp_path, "checkpoint", DIGEST), DATA[:-1] + b"\x00")
    with pytest.raises(StoreError, match="corrupted") as info:
        store.get(DIGEST, "checkpoint")
    assert info.value.details["digest"] == DIGEST
    assert info.value.details["actual"] != DIGEST


def test_put_never_overwrites_an_existing_object_even_a_corrupted_one(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put(DATA, "checkpoint")
    path = object_path(tmp_path, "checkpoint", DIGEST)
    corrupt(path, b"tampered")
    with pytest.raises(StoreError, match="corrupted"):
        store.put(DATA, "checkpoint")
    # Left in place as evidence, not silently repaired.
    assert path.read_bytes() == b"tampered"
    assert os.listdir(path.parent) == [DIGEST[2:]]


def test_put_refuses_an_object_name_taken_by_something_unreadable(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    object_path(tmp_path, "card", DIGEST).mkdir(parents=True)
    with pytest.raises(StoreError):
        store.put(DATA, "card")


@pytest.mark.parametrize(
    "digest",
    [
        "../" * 21 + "a",
        "ab/" + "0" * 61,
        "/etc/passwd",
        DIGEST.upper(),
        "0x" + DIGEST[:62],
        "sha256:" + DIGEST,
        DIGEST[:63],
        DIGEST + "0",
        DIGEST[:63] + "\x00",
        DIGEST[:62] + "..",
        "",
        "g" * 64,
    ],
)
def test_digests_that_are_not_64_lowercase_hex_are_refused_before_any_path_is_built(
    tmp_path: Path, digest: str
) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(InvalidDigest):
        store.get(digest, "checkpoint")
    with pytest.raises(InvalidDigest):
        store.has(digest, "card")
    assert not (tmp_path / "store").exists()


def test_non_string_digest_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(InvalidDigest):
        store.get(bytes.fromhex(DIGEST), "checkpoint")  # type: ignore[arg-type]


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ValueError, match="unknown object kind"):
        store.put(DATA, "../etc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown object kind"):
        store.get(DIGEST, "model")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_put_refuses_non_bytes(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        FileStore(tmp_path).put("text", "card")  # type: ignore[arg-type]


def test_concurrent_puts_of_the_same_bytes_all_succeed_with_one_object(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = os.urandom(1 << 20)
    results = put_at_once(store, data, 16)
    digest = hashlib.sha256(data).hexdigest()
    assert results == [digest] * 16
    assert os.listdir(object_path(tmp_path, "checkpoint", digest).parent) == [digest[2:]]
    assert store.get(digest, "checkpoint") == data
