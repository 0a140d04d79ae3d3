"""The audit tree's perfect subtrees, kept beside its leaves so a proof reads ``O(log n)`` hashes.

Anyone may ask the service for an inclusion or consistency proof (``registry.api.routes.audit``),
so building one must not cost a pass over every leaf: at a million entries that was seconds of
hashing per request, and a handful of requests kept a worker busy. Every node of an RFC 6962
proof is the root of a complete, aligned block of ``2^k`` leaves, or the root of the tree's ragged
right edge, which folds from ``O(log n)`` such blocks (``merkle_log.inclusion_proof_from_nodes``).
So the catch-up (``audit_tree``) stores each block's root when the block completes:

- level 0 is ``audit.leaves`` itself (a leaf hash per 40-byte record);
- level ``k`` >= 1 is ``audit.level-<k>``: the root of leaves ``i * 2^k .. (i + 1) * 2^k - 1`` at
  byte ``32 * i``, appended as ``CompactTree.push`` hands it out; about 32 bytes per leaf in all.

They follow the leaves file's rules: written only under the anchoring lock, fsynced before the
state (``audit.tree.json``) that counts them is written, so a reader that read the state finds
every node below its size; cut back to the state's size when a catch-up resumes (a catch-up cut
short leaves nodes the state never counted); and checked before reuse: the nodes that make up the
state's size must be the compact tree the state saved, or the whole tree is rebuilt from the log.
A data directory from before the levels were kept has none: ``covers`` says so, the tree answers
with the ``O(n)`` reference provers until the next catch-up builds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from registry.core.merkle_log import HASH_SIZE
from registry.errors import AuditLogCorrupt

__all__ = ["LEVEL_PREFIX", "LevelWriter", "NodeFiles", "discard_levels", "trim_levels"]

LEVEL_PREFIX = "audit.level-"


def level_path(directory: Path, level: int) -> Path:
    return directory / f"{LEVEL_PREFIX}{level}"


def _stored_levels(directory: Path) -> dict[int, Path]:
    found = {}
    for path in directory.glob(f"{LEVEL_PREFIX}*"):
        suffix = path.name[len(LEVEL_PREFIX) :]
        if suffix.isdigit() and suffix == str(int(suffix)) and int(suffix) >= 1:
            found[int(suffix)] = path
    return found


def discard_levels(directory: Path) -> None:
    """Remove every level file: the tree is rebuilt from the log, its nodes with it."""
    for path in _stored_levels(directory).values():
        path.unlink(missing_ok=True)


def trim_levels(directory: Path, size: int) -> bool:
    """Cut every level file back to the nodes of a tree of ``size`` leaves (what a catch-up cut
    short wrote past the state); False when one holds fewer: the levels do not match the state."""
    stored = _stored_levels(directory)
    for level in range(1, size.bit_length()):
        path = stored.get(level)
        if path is None or path.stat().st_size < (size >> level) * HASH_SIZE:
            return False
    for level, path in stored.items():
        if size >> level == 0:
            path.unlink()  # a level of a larger tree that was dropped
        elif path.stat().st_size != (size >> level) * HASH_SIZE:
            os.truncate(path, (size >> level) * HASH_SIZE)
    return True


class LevelWriter:
    """Appends the nodes a catch-up completes to their level files; ``close`` makes them durable
    (before the state that counts them is written)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[int, BinaryIO] = {}

    def append(self, nodes: list[bytes]) -> None:
        """``CompactTree.push``'s answer: the node of level 1 first, then 2, ..."""
        for level, node in enumerate(nodes, start=1):
            f = self._files.get(level)
            if f is None:
                f = self._files[level] = level_path(self.directory, level).open("ab")
            f.write(node)

    def close(self) -> None:
        try:
            for f in self._files.values():
                f.flush()
                os.fsync(f.fileno())
        finally:
            for f in self._files.values():
                f.close()
            self._files.clear()

    def __enter__(self) -> LevelWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NodeFiles:
    """Reads stored nodes (a ``merkle_log.NodeReader``): level 0 from the leaves file's records
    (the leaf hash first), level ``k`` from ``audit.level-<k>``; one open file per level read."""

    def __init__(self, leaves: Path, record_size: int) -> None:
        self.leaves, self.record_size = leaves, record_size
        self._fds: dict[int, int] = {}

    def covers(self, size: int) -> bool:
        """Whether the level files hold every node of a tree of ``size`` leaves (False in a data
        directory from before they were kept, until the next catch-up builds them)."""
        for level in range(1, size.bit_length()):
            try:
                held = level_path(self.leaves.parent, level).stat().st_size
            except FileNotFoundError:
                return False
            if held < (size >> level) * HASH_SIZE:
                return False
        return True

    def node(self, level: int, index: int) -> bytes:
        path = self.leaves if level == 0 else level_path(self.leaves.parent, level)
        fd = self._fds.get(level)
        try:
            if fd is None:
                fd = self._fds[level] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            width = self.record_size if level == 0 else HASH_SIZE
            raw = os.pread(fd, HASH_SIZE, index * width)
        except FileNotFoundError:
            raw = b""
        if len(raw) != HASH_SIZE:
            # Never below the state's size unless the tree is being rebuilt under us.
            raise AuditLogCorrupt(
                str(path),
                0,
                f"the stored tree holds no node {index} at level {level}: it was cut while being "
                "read (a rebuild of the tree from the log); ask again once the rebuild is done",
            )
        return raw

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> NodeFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
