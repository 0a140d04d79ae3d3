"""The secret that keys the audit log's hash chain, and the file it lives in.

A plain SHA-256 chain proves only that the lines agree with each other: whoever can write the file
can drop or edit entries and recompute every hash after them. Keying each entry's hash with a
secret the log does not hold (HMAC-SHA256, ``audit_chain``) means a rewritten chain no longer
verifies unless the forger also had the key. So the key must stay out of reach of whoever can
edit the log, and out of every log line and response: it is 32 random bytes in a file of its own
(``REGISTRY_AUDIT_KEY_FILE``, default ``<data_dir>/audit.key``), readable by its owner only.

The service creates the file when it is missing; a file that others may read, or that does not
hold exactly 32 bytes, is refused with a sentence saying what to do, never repaired silently.
A log names its key by ``key id`` (the first 8 hex digits of the key's SHA-256), which says which
key a log needs without giving anything of the key away.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from registry.core.files import fsync_dir
from registry.errors import ConfigurationError

KEY_BYTES = 32
DEFAULT_KEY_FILE = "audit.key"


@dataclass(frozen=True)
class AuditKey:
    """An audit chain key: ``secret`` never appears in a repr, a log line or a message."""

    secret: bytes = field(repr=False)
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ConfigurationError(
                f"an audit key is {KEY_BYTES} random bytes, not {len(self.secret)}"
            )
        object.__setattr__(self, "id", key_id(self.secret))


def key_id(secret: bytes) -> str:
    """What a log records about its key: the first 8 hex digits of the key's SHA-256."""
    return hashlib.sha256(secret).hexdigest()[:8]


def key_path(configured: Path | None, data_dir: Path) -> Path:
    """Where the key is: ``REGISTRY_AUDIT_KEY_FILE`` if set, else ``<data_dir>/audit.key``."""
    return configured if configured is not None else data_dir / DEFAULT_KEY_FILE


def load_key(path: Path, *, create: bool = False) -> AuditKey:
    """The key in ``path``; with ``create``, a new random one is written there first if the file
    does not exist (mode 0600). Raises ``ConfigurationError`` naming the file and the fix."""
    if create:
        _create_if_missing(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no audit key at {path}: a keyed audit log is checked with the key it was written "
            "with; point REGISTRY_AUDIT_KEY_FILE (or --key-file) at the service's key file "
            f"(default <data_dir>/{DEFAULT_KEY_FILE})",
            path=str(path),
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"the audit key {path} cannot be read ({exc.strerror}); it must be a file readable "
            "by the service's user only",
            path=str(path),
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(
                f"the audit key {path} is not a regular file; give the path of the key file",
                path=str(path),
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            # Anyone who can read the key can recompute a rewritten chain: refuse, never chmod.
            raise ConfigurationError(
                f"the audit key {path} is readable or writable by its group or others (mode "
                f"{mode:04o}); whoever reads it can forge the audit log. Run `chmod 600 {path}` "
                "(and keep it away from whoever may edit the log)",
                path=str(path),
                mode=f"{mode:04o}",
            )
        secret = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(secret) != KEY_BYTES:
        raise ConfigurationError(
            f"the audit key {path} holds {len(secret)}{'+' if len(secret) > KEY_BYTES else ''} "
            f"bytes; an audit key is exactly {KEY_BYTES} random bytes. Restore the file the log "
            "was written with; to start a new key, rotate the log (`registry audit rotate`) "
            "after moving this file aside",
            path=str(path),
            size=len(secret),
        )
    return AuditKey(secret)


def _create_if_missing(path: Path) -> None:
    """Write a new key at ``path`` unless a file is there, atomically: another worker starting at
    the same moment finds either no file or a complete one, and both end up with the same key."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask made of it
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() fails if the name exists, where rename() would replace a key some log needs.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)
