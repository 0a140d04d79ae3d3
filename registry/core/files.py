"""Writing a file so that a crash leaves either the old bytes or the new ones, never a torn mix.

Deployment records, stored checkpoints and the managed node's bookkeeping are all read back by a
later process that trusts what it finds; a half-written file there is a wrong answer, not a
missing one. Every such write goes through ``atomic_write``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Make the directory's entries durable (a rename or link), not only the file's contents."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, overwrite: bool = True, mode: int | None = None
) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The bytes are fsynced before the file takes its name and the folder is fsynced after, so a
    reader sees the old file or the complete new one, before and after a crash. ``mode`` (e.g.
    ``0o444``) is set before the name appears; without it the umask decides, as for ``open()``.
    With ``overwrite=False`` an existing ``path`` is left untouched and ``FileExistsError`` is
    raised, so the caller can decide what an existing file means (the store checks its bytes).
    Missing parent folders are created. Any other failure raises ``OSError``, with no temporary
    file left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never write through a file (or link) someone else put at the temporary name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name exists, where os.replace would silently overwrite it.
            os.link(tmp, path)
            tmp.unlink()
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
