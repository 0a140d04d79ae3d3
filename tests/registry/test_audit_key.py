"""The audit chain's key file: created 0600 with 32 random bytes, refused when others may read it
or when it is the wrong size, never shown (``registry.core.audit_key``)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from registry.core.audit_key import AuditKey, key_path, load_key
from registry.errors import ConfigurationError


def test_a_missing_key_is_created_with_32_random_bytes_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == key.secret and len(key.secret) == 32
    assert key.id == hashlib.sha256(key.secret).hexdigest()[:8]
    assert load_key(path) == key  # created once, read back the same
    assert load_key(tmp_path / "other.key", create=True).id != key.id
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]  # no temporary file left


def test_workers_starting_together_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    ids: list[str] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        ids.append(load_key(path, create=True).id)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_key_others_may_read_or_write_is_refused_and_left_as_it_is(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "audit.key"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(ConfigurationError) as info:
        load_key(path, create=True)
    assert f"{mode:04o}" in info.value.message and "chmod 600" in info.value.message
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_key_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "audit.key"
    path.write_bytes(b"k" * size)
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="exactly 32 random bytes"):
        load_key(path, create=True)
    assert path.read_bytes() == b"k" * size


def test_a_missing_key_is_not_created_for_a_verifier(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no audit key"):
        load_key(tmp_path / "audit.key")
    assert not (tmp_path / "audit.key").exists()


def test_a_directory_is_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "audit.key").mkdir(mode=0o700)
    with pytest.raises(ConfigurationError):
        load_key(tmp_path / "audit.key")


def test_the_key_never_shows_in_its_repr_or_in_an_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    key = load_key(path, create=True)
    assert key.secret.hex() not in repr(key) and repr(key.secret) not in repr(key)
    assert key.id in repr(key)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError) as info:
        load_key(path)
    assert key.secret.hex() not in str(info.value.to_dict())


def test_the_key_lives_beside_the_data_unless_configured(tmp_path: Path) -> None:
    assert key_path(None, tmp_path) == tmp_path / "audit.key"
    assert key_path(tmp_path / "elsewhere.key", tmp_path / "data") == tmp_path / "elsewhere.key"
    with pytest.raises(ConfigurationError, match="32 random bytes"):
        AuditKey(b"short")
