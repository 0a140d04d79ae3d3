"""Rotating the audit log: seal the current file and start a keyed log that records the seal.

Two reasons to start a new file: an unkeyed log of the release before keyed chains, which a
service refuses to continue (anyone can recompute its chain), and a log grown large enough that
checking it whole takes too long. Either way the old file must stay evidence: ``rotate`` checks
its chain first (a broken log is refused, never sealed as if it were sound), keeps it beside the
new one under a new name, and writes the new log's first line with a seal of it (its name, last
entry, last hash and the SHA-256 of its bytes). That line is keyed, so the old file, unkeyed or
not, cannot be changed afterwards without the new log's seal telling (``check_sealed``).

The swap needs no pause of a running service: the old file is locked while it is checked and
sealed, a new name is linked to it, and the new log is renamed over the old name in one step, so
the name always points at a complete log; a writer that waited for the lock follows the name.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from pathlib import Path

from registry.core.audit_chain import (
    GENESIS_PREV,
    HEADER_EVENT,
    MAX_LINE_BYTES,
    ChainReport,
    Seal,
    header_fields,
    make_line,
    parse_line,
    verify,
)
from registry.core.audit_key import AuditKey
from registry.core.files import fsync_dir
from registry.core.times import now_iso_utc
from registry.errors import AuditLogCorrupt, InvalidInput


def rotate(path: Path, key: AuditKey) -> tuple[ChainReport, Seal]:
    """Seal the log at ``path`` (keyed with ``key``, or unkeyed) and start a new keyed log there;
    return what the old log held and the seal the new one's first line records."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # FileNotFoundError: the CLI names the path
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no writer appends while the file is checked and sealed
        if os.fstat(fd).st_size == 0:
            raise InvalidInput(
                f"audit log {path} is empty: there is nothing to seal, and a service starts a "
                "keyed log in it by itself",
                path=str(path),
            )
        head = os.pread(fd, MAX_LINE_BYTES + 1, 0)
        try:
            keyed = "mac" in parse_line(head[: head.find(b"\n")])
        except ValueError:
            keyed = True  # verify names what is wrong with line 1
        report = verify(path, key if keyed else None)  # a broken log is never sealed
        os.fsync(fd)
        seal = Seal(
            _free_name(path),
            report.entries,
            report.head.hash,
            _file_sha256(fd),
            report.key_id,
        )
        _install_successor(path, key, seal)
    finally:
        os.close(fd)
    return report, seal


def check_sealed(log: Path, seal: Seal, key: AuditKey) -> ChainReport:
    """Check the log that ``log``'s header seals: beside it, its chain intact up to the sealed
    entry and no further, and its bytes those that were sealed."""
    if Path(seal.file).name != seal.file or seal.file in ("", ".", ".."):
        raise AuditLogCorrupt(
            str(log), 1, f"the seal names {seal.file!r}, which is not a file name"
        )
    sealed = log.parent / seal.file
    anchor = (seal.entries, seal.head)
    report = verify(sealed, key if seal.key_id is not None else None, anchor=anchor)
    if report.entries != seal.entries:
        raise AuditLogCorrupt(
            str(sealed),
            seal.entries + 1,
            f"it was sealed after entry {seal.entries}, and lines were added after that",
        )
    fd = os.open(sealed, os.O_RDONLY | os.O_CLOEXEC)
    try:
        actual = _file_sha256(fd)
    finally:
        os.close(fd)
    if actual != seal.sha256:
        raise AuditLogCorrupt(
            str(sealed),
            0,
            f"its bytes hash to {actual[:12]}…, but the seal in {log.name} says "
            f"{seal.sha256[:12]}…",
        )
    return report


def _free_name(path: Path) -> str:
    """A name for the sealed file beside ``path`` that nothing uses: ``audit.log.<UTC time>``."""
    stamp = now_iso_utc().replace("-", "").replace(":", "").split(".")[0] + "Z"
    name, n = f"{path.name}.{stamp}", 1
    while (path.parent / name).exists():
        n += 1
        name = f"{path.name}.{stamp}-{n}"
    return name


def _file_sha256(fd: int) -> str:
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _install_successor(path: Path, key: AuditKey, seal: Seal) -> None:
    """Keep the old file under ``seal.file`` and put a new log (its header) at ``path``."""
    _, line = make_line(HEADER_EVENT, header_fields(key, seal), 1, GENESIS_PREV, key)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(path, path.parent / seal.file)  # fails rather than replace an existing file
        os.rename(temporary, path)  # the name now points at the new log, never at nothing
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)
