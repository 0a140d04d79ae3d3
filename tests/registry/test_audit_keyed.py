"""The audit log's keyed chain: forgeries without the key, the wrong key, the unkeyed logs of the
release before keys, and rotation (``registry.core.audit_chain``, ``audit_rotate``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from registry.core.audit import AuditLog, canonical_json
from registry.core.audit_chain import GENESIS_PREV, verify
from registry.core.audit_key import AuditKey
from registry.core.audit_rotate import check_sealed, rotate
from registry.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigurationError

KEY = AuditKey(bytes(range(32)))
OTHER_KEY = AuditKey(bytes(range(1, 33)))
N = 8


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def write_log(path: Path, n: int = N, key: AuditKey = KEY) -> list[dict[str, Any]]:
    log = AuditLog(path, key)
    return [
        log.append("verify", digest=f"{i:064x}", outcome="verified", who="c1") for i in range(n)
    ]


def entries_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def rechain(entries: list[dict[str, Any]], key: AuditKey | None, start: int = 0) -> bytes:
    """The forger's tool: renumber and re-hash every entry from ``start`` on, with plain SHA-256
    (``key=None``) or HMAC with ``key``, chaining each to the line before as the writer does."""
    out: list[bytes] = []
    prev = GENESIS_PREV
    for seq, entry in enumerate(entries, start=1):
        if seq - 1 < start:
            line = canonical_json(entry)
        else:
            body = {k: v for k, v in entry.items() if k != "hash"} | {"seq": seq, "prev": prev}
            data = canonical_json(body)
            digest = (
                hmac.new(key.secret, data, hashlib.sha256).hexdigest()
                if key
                else hashlib.sha256(data).hexdigest()
            )
            line = canonical_json({**body, "hash": digest})
        out.append(line + b"\n")
        prev = hashlib.sha256(line).hexdigest()
    return b"".join(out)


def unkeyed_log(path: Path, n: int = 4) -> None:
    """A log as the release before keys wrote it: no header, plain SHA-256 hashes."""
    entries = [
        {
            "event": "verify",
            "digest": f"{i:064x}",
            "outcome": "verified",
            "time": "2025-01-01T00:00:00Z",
        }
        for i in range(n)
    ]
    path.write_bytes(rechain(entries, None))


# --- forgeries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("forger_key", [None, OTHER_KEY], ids=["sha256", "hmac-wrong-key"])
def test_a_log_with_lines_dropped_and_edited_and_its_chain_recomputed_without_the_key_fails(
    path: Path, forger_key: AuditKey | None
) -> None:
    write_log(path)
    entries = entries_of(path)
    # Drop entry 4, make entry 6 say "unknown", keep the header and lines 2-3 as they were.
    forged = [*entries[:3], *entries[4:]]
    forged[4] = {**forged[4], "outcome": "unknown"}
    path.write_bytes(rechain(forged, forger_key, start=3))
    assert len(entries_of(path)) == N  # one line fewer, every line after it re-hashed

    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, KEY)

    assert info.value.line == 4  # the first line the forger had to re-hash
    assert "keyed hash" in info.value.problem


def test_a_log_rechained_entirely_with_plain_sha256_fails_at_its_first_line(path: Path) -> None:
    write_log(path)
    path.write_bytes(rechain(entries_of(path)[:-2], None))
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, KEY)
    assert info.value.line == 1
    assert "keyed hash" in info.value.problem


def test_a_log_rewritten_under_another_key_names_both_key_ids(path: Path) -> None:
    write_log(path)
    entries = entries_of(path)
    entries[0] = {**entries[0], "key_id": OTHER_KEY.id}
    path.write_bytes(rechain(entries[:-1], OTHER_KEY))
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, KEY)
    assert info.value.line == 1
    assert f"keyed with key id '{OTHER_KEY.id}', you gave key id '{KEY.id}'" in info.value.problem


def test_verifying_with_the_wrong_key_says_which_key_the_log_needs(path: Path) -> None:
    write_log(path)
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, OTHER_KEY)
    assert info.value.line == 1
    assert f"keyed with key id '{KEY.id}', you gave key id '{OTHER_KEY.id}'" in info.value.problem


def test_a_keyed_log_stripped_of_its_header_and_rechained_unkeyed_fails_at_line_one(
    path: Path,
) -> None:
    write_log(path)
    path.write_bytes(rechain(entries_of(path)[1:], None))
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, KEY)
    assert info.value.line == 1
    assert "declares no key" in info.value.problem


def test_the_report_names_the_head_to_publish_and_the_key_id(path: Path) -> None:
    entries = write_log(path)
    report = verify(path, KEY)
    assert (report.entries, report.key_id, report.seal) == (N + 1, KEY.id, None)
    assert report.head.anchor == f"{N + 1}:{entries[-1]['hash']}"
    assert report.head.time == entries[-1]["time"]
    assert verify(path, KEY, anchor=(report.head.seq, report.head.hash)).entries == N + 1


def test_an_empty_file_is_not_a_keyed_log(path: Path) -> None:
    path.write_bytes(b"")
    with pytest.raises(AuditLogCorrupt) as info:
        verify(path, KEY)
    assert "empty" in info.value.problem


# --- the writer and its key --------------------------------------------------------------------


def test_a_log_keyed_with_another_key_is_refused_at_start_and_left_alone(path: Path) -> None:
    write_log(path)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as info:
        AuditLog(path, OTHER_KEY)
    assert KEY.id in info.value.message and OTHER_KEY.id in info.value.message
    assert path.read_bytes() == before


def test_an_unkeyed_log_of_the_earlier_release_is_refused_and_rotate_is_named(path: Path) -> None:
    unkeyed_log(path)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as info:
        AuditLog(path, KEY)
    assert "registry audit rotate" in info.value.message
    assert path.read_bytes() == before
    with pytest.raises(AuditLogCorrupt) as checked:
        verify(path, KEY)
    assert checked.value.line == 1 and "--unkeyed" in checked.value.problem
    assert verify(path, None).entries == 4  # checked as what it is, when asked to


def test_lines_cut_from_the_end_while_the_service_writes_stop_it(path: Path) -> None:
    log = AuditLog(path, KEY)
    for i in range(3):
        log.append("verify", n=i)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    with pytest.raises(AuditLogCorrupt) as info:
        log.append("verify", n=3)
    assert "shrank" in info.value.problem
    assert len(entries_of(path)) == 2


def test_a_log_deleted_while_the_service_writes_is_not_silently_recreated(path: Path) -> None:
    log = AuditLog(path, KEY)
    log.append("verify", n=1)
    path.unlink()
    with pytest.raises(AuditLogUnavailable, match="gone"):
        log.append("verify", n=2)
    assert not path.exists()


# --- rotation ----------------------------------------------------------------------------------


def test_rotating_an_unkeyed_log_seals_it_into_the_first_line_of_a_keyed_one(path: Path) -> None:
    unkeyed_log(path)
    old = path.read_bytes()

    report, seal = rotate(path, KEY)

    sealed = path.parent / seal.file
    assert sealed.read_bytes() == old
    assert (report.entries, report.key_id) == (4, None)
    assert (seal.entries, seal.head, seal.key_id) == (4, entries_of(sealed)[-1]["hash"], None)
    assert seal.sha256 == hashlib.sha256(old).hexdigest()
    header = entries_of(path)[0]
    assert header["sealed_file"] == seal.file and header["sealed_sha256"] == seal.sha256
    AuditLog(path, KEY).append("verify", n=1)  # the service continues, keyed
    new = verify(path, KEY)
    assert (new.entries, new.seal) == (2, seal)
    assert check_sealed(path, seal, KEY).entries == 4


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data.replace(b'"verified"', b'"unknown!"', 1),
        lambda data: b"".join(data.splitlines(keepends=True)[:-1]),
        lambda data: data + data.splitlines(keepends=True)[-1],
    ],
    ids=["edited", "truncated", "extended"],
)
def test_a_sealed_log_changed_after_rotation_fails_its_seal(path: Path, tamper: Any) -> None:
    unkeyed_log(path)
    _, seal = rotate(path, KEY)
    sealed = path.parent / seal.file
    sealed.write_bytes(tamper(sealed.read_bytes()))
    with pytest.raises(AuditLogCorrupt) as info:
        check_sealed(path, seal, KEY)
    assert info.value.path == str(sealed)


def test_a_broken_log_is_never_sealed(path: Path) -> None:
    unkeyed_log(path)
    broken = path.read_bytes().replace(b'"verified"', b'"unknown!"', 1)
    path.write_bytes(broken)
    with pytest.raises(AuditLogCorrupt):
        rotate(path, KEY)
    assert path.read_bytes() == broken
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_rotating_under_a_running_writer_sends_its_next_entry_to_the_new_log(path: Path) -> None:
    log = AuditLog(path, KEY)
    log.append("verify", n=1)

    _, seal = rotate(path, KEY)
    entry = log.append("verify", n=2)

    assert entry["seq"] == 2  # chained after the new header, not after the sealed log's end
    assert verify(path, KEY).entries == 2
    assert check_sealed(path, seal, KEY).entries == 2
    assert seal.key_id == KEY.id
