"""The audit log as one RFC 9162 Merkle tree: which bytes are its leaves, and the tree kept beside it.

Anchoring the log on chain (``registry.chain.audit_anchor``) publishes the root of this tree, and
a prediction's receipt names its entry's leaf; this module settles what both mean:

- A leaf is the exact bytes of one line of the log, without its newline: the bytes the keyed hash
  chain (``audit_chain``) covers, so the tree and the chain speak of the same entries. Its hash is
  ``merkle_log.leaf_hash(line)``.
- Indexes are global and continuous across rotated files (``audit_rotate``): the oldest sealed
  file holds entries ``0..k-1``, the file that sealed it continues at ``k`` (its header line is a
  leaf too), and so on. A file's first index is the sum of the entries its header's seal, and the
  seals before it, record: ``first_index`` reads only headers, so a receipt's index stays the same
  after the log is rotated.

The tree is the file's, not a worker's: several worker processes append to one log, so no
worker's memory knows the log. ``AuditTree.catch_up`` reads the lines added since it last looked
(from ``audit.tree.json``: the compact tree's size and nodes, where it stopped reading, and the
SHA-256 of the last line it read, all checked against the file before it is trusted) and appends
their leaves to ``audit.leaves`` (32-byte leaf hash and 8-byte offset of the line in its file,
per entry), from which the proofs of any size up to there are built. A state that does not match
the log (a rewritten line, a lost file) is dropped and the tree rebuilt from the log itself.
Beside the leaves, the catch-up keeps the root of every complete aligned block of ``2^k`` leaves
(``audit_nodes``: ``audit.level-<k>``), so a proof reads ``O(log n)`` stored hashes instead of
hashing every leaf; those files follow the leaves file's rules, and nodes that do not make up the
state's compact tree get the tree rebuilt too.
Only the process that holds the anchoring lock (``AuditTree.exclusive``) catches up, so one
process at a time writes those files; readers (the proof routes, in any worker) read the state
first and then only nodes below its size, which are never rewritten below the state's size.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.core import merkle_log
from registry.core.audit_chain import MAX_LINE_BYTES, Seal, parse_line
from registry.core.audit_nodes import LevelWriter, NodeFiles, discard_levels, trim_levels
from registry.core.files import atomic_write
from registry.errors import AuditLogCorrupt, NotFound

__all__ = ["AuditTree", "LogFile", "TreeState", "first_index", "log_files", "read_line_at"]

STATE_FILE = "audit.tree.json"
LEAVES_FILE = "audit.leaves"
LOCK_FILE = "audit.anchor.lock"
_RECORD = struct.Struct(">32sQ")  # leaf hash, offset of its line in its file
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LogFile:
    """One file of the log: its path, its first global index, and how many of its lines count
    (a sealed file: the entries its seal records; the current file: None, every complete line)."""

    path: Path
    first: int
    entries: int | None


def _first_line(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            head = f.read(MAX_LINE_BYTES + 1)
    except OSError:
        return None
    end = head.find(b"\n")
    return head[:end] if end >= 0 else None


def _seal_of(header: bytes | None) -> Seal | None:
    if header is None:
        return None
    try:
        seal = Seal.from_header(parse_line(header))
    except (ValueError, KeyError, TypeError):
        return None
    if seal is not None and (Path(seal.file).name != seal.file or seal.file in ("", ".", "..")):
        return None  # a seal naming a path is the chain verifier's to report
    return seal


def first_index(directory: Path, header: bytes | None) -> int | None:
    """The global index of the first line of the file whose first line is ``header``: the entries
    of every file its seal chain names, oldest first. None when a sealed file is not beside it
    (moved away): then no index in this file can be told."""
    total, seen = 0, set()
    seal = _seal_of(header)
    while seal is not None:
        if seal.file in seen or not (directory / seal.file).is_file():
            return None
        seen.add(seal.file)
        total += seal.entries
        seal = _seal_of(_first_line(directory / seal.file))
    return total


def log_files(log: Path) -> list[LogFile]:
    """Every file of the log at ``log``, oldest first; ``AuditLogCorrupt`` if a sealed one is
    missing (its entries cannot be counted, so no index after it can)."""
    chain: list[tuple[Path, int | None]] = [(log, None)]
    seal = _seal_of(_first_line(log))
    while seal is not None:
        path = log.parent / seal.file
        if not path.is_file() or any(p == path for p, _ in chain):
            raise AuditLogCorrupt(
                str(log),
                1,
                f"the seal chain names {seal.file}, which is not beside it: the log's entries "
                "before that file cannot be counted; put the sealed file back beside the log",
            )
        chain.append((path, seal.entries))
        seal = _seal_of(_first_line(path))
    chain.reverse()
    files, first = [], 0
    for path, entries in chain:
        files.append(LogFile(path, first, entries))
        first += entries or 0
    return files


def read_line_at(path: Path, offset: int) -> bytes:
    """The line starting at ``offset`` in ``path`` (no newline)."""
    with path.open("rb") as f:
        f.seek(offset)
        raw = f.readline(MAX_LINE_BYTES + 1)
    if not raw.endswith(b"\n"):
        raise AuditLogCorrupt(str(path), 0, f"no complete line at byte {offset}")
    return raw[:-1]


@dataclass(frozen=True)
class TreeState:
    """What ``audit.tree.json`` holds: the compact tree of the first ``size`` entries, the file
    being read (device, inode) and where (``offset`` bytes, ``lines`` lines, the SHA-256 of the
    last line read), and the latest anchor the service made (None before the first)."""

    size: int
    nodes: tuple[bytes, ...]
    device: int
    inode: int
    offset: int
    lines: int
    last_line: str
    anchor: dict[str, Any] | None = None

    @property
    def root(self) -> bytes:
        return merkle_log.CompactTree.restore(self.size, self.nodes).root()

    def to_json(self) -> bytes:
        data = {
            "version": 1,
            "size": self.size,
            "nodes": [n.hex() for n in self.nodes],
            "device": self.device,
            "inode": self.inode,
            "offset": self.offset,
            "lines": self.lines,
            "last_line": self.last_line,
            "anchor": self.anchor,
        }
        return json.dumps(data, sort_keys=True).encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes) -> TreeState:
        data = json.loads(raw)
        if data.get("version") != 1:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        nodes = tuple(bytes.fromhex(n) for n in data["nodes"])
        merkle_log.CompactTree.restore(int(data["size"]), nodes)  # the node count matches
        return cls(
            int(data["size"]),
            nodes,
            int(data["device"]),
            int(data["inode"]),
            int(data["offset"]),
            int(data["lines"]),
            str(data["last_line"]),
            data.get("anchor"),
        )


class AuditTree:
    """The Merkle tree of the log at ``log``, kept in files beside it (see the module docstring)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.state_path = log.parent / STATE_FILE
        self.leaves_path = log.parent / LEAVES_FILE
        self.lock_path = log.parent / LOCK_FILE

    @contextlib.contextmanager
    def exclusive(self, *, wait: bool = False) -> Iterator[bool]:
        """Hold the anchoring lock (an OS lock, so across processes); yields False when another
        process holds it and ``wait`` is off: that process catches up and anchors instead."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def state(self) -> TreeState | None:
        """The saved state as last written (no check against the log: ``catch_up`` does that)."""
        try:
            return TreeState.from_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None

    def record_anchor(self, anchor: dict[str, Any]) -> None:
        """Remember the anchor just made beside the state (holding the lock)."""
        state = self.state()
        if state is not None:
            atomic_write(self.state_path, _replace_anchor(state, anchor).to_json())

    # ------------------------------------------------------------------------------------
    # Catching up with the file (the anchoring lock held)
    # ------------------------------------------------------------------------------------

    def catch_up(self) -> TreeState:
        """Read the lines added since the saved state (or the whole log, when the state does not
        match it) into the tree and the leaves file; return the new state."""
        files = log_files(self.log)
        state = self.state()
        start = self._resume_point(state, files) if state is not None else None
        if start is not None and state is not None and not self._levels_match(state):
            start = None  # stored nodes that are not the saved tree's: rebuilt, never trusted
        if start is None:
            tree, position, anchor = merkle_log.CompactTree(), (0, 0, 0, ""), None
            with self.leaves_path.open("wb"):
                pass
            discard_levels(self.log.parent)
        else:
            assert state is not None
            tree = merkle_log.CompactTree.restore(state.size, state.nodes)
            position, anchor = start, state.anchor
            with self.leaves_path.open("r+b") as f:
                f.truncate(state.size * _RECORD.size)  # leaves of a catch-up cut short
        file_number, offset, lines, last = position
        with self.leaves_path.open("ab") as leaves, LevelWriter(self.log.parent) as levels:
            for number in range(file_number, len(files)):
                log_file = files[number]
                if number != file_number:
                    offset, lines = 0, 0
                offset, lines, last = self._read_file(
                    log_file, offset, lines, last, tree, leaves, levels
                )
            leaves.flush()
            os.fsync(leaves.fileno())
        current = os.stat(files[-1].path)
        new = TreeState(
            tree.size,
            tree.nodes,
            current.st_dev,
            current.st_ino,
            offset,
            lines,
            last,
            anchor,
        )
        atomic_write(self.state_path, new.to_json())
        return new

    def _resume_point(
        self, state: TreeState, files: list[LogFile]
    ) -> tuple[int, int, int, str] | None:
        """(file number, offset, lines, last line's SHA-256) to go on from, or None when the saved
        state does not describe this log."""
        try:
            leaves = self.leaves_path.stat().st_size
        except FileNotFoundError:
            return None
        if leaves < state.size * _RECORD.size:
            return None
        for number, log_file in enumerate(files):
            info = os.stat(log_file.path)
            if (info.st_dev, info.st_ino) != (state.device, state.inode):
                continue
            if log_file.first + state.lines != state.size:
                return None
            if state.offset == 0:
                return (number, 0, 0, "") if state.lines == 0 else None
            with log_file.path.open("rb") as f:
                window = min(state.offset, MAX_LINE_BYTES + 1)
                f.seek(state.offset - window)
                tail = f.read(window)
            if not tail.endswith(b"\n"):
                return None
            last = tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1 : -1]
            if hashlib.sha256(last).hexdigest() != state.last_line:
                return None  # the line where reading stopped is not the one read then
            return number, state.offset, state.lines, state.last_line
        return None

    def _levels_match(self, state: TreeState) -> bool:
        """Whether the level files hold the nodes of the saved tree (cut back to its size): the
        nodes its size is made of must be the compact tree the state saved. False for a data
        directory from before the levels were kept: its catch-up builds them."""
        if not trim_levels(self.log.parent, state.size):
            return False
        with NodeFiles(self.leaves_path, _RECORD.size) as stored:
            try:
                nodes = merkle_log.compact_range(stored.node, state.size)
            except AuditLogCorrupt:
                return False
        return tuple(nodes) == state.nodes

    @staticmethod
    def _read_file(
        log_file: LogFile,
        offset: int,
        lines: int,
        last: str,
        tree: merkle_log.CompactTree,
        leaves: Any,
        levels: LevelWriter,
    ) -> tuple[int, int, str]:
        """Append the leaves of ``log_file``'s complete lines from ``offset``; a sealed file only
        up to the entries its seal records."""
        with log_file.path.open("rb") as f:
            f.seek(offset)
            pending = b""
            while log_file.entries is None or lines < log_file.entries:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                data = pending + chunk
                start = 0
                while log_file.entries is None or lines < log_file.entries:
                    end = data.find(b"\n", start)
                    if end < 0:
                        break
                    line = data[start:end]
                    leaf = merkle_log.leaf_hash(line)
                    levels.append(tree.push(leaf))
                    leaves.write(_RECORD.pack(leaf, offset))
                    offset += end + 1 - start
                    lines += 1
                    last = hashlib.sha256(line).hexdigest()
                    start = end + 1
                pending = data[start:]
                if len(pending) > MAX_LINE_BYTES:
                    raise AuditLogCorrupt(
                        str(log_file.path), log_file.first + lines + 1, "line too long"
                    )
        if log_file.entries is not None and lines < log_file.entries:
            raise AuditLogCorrupt(
                str(log_file.path),
                lines + 1,
                f"it was sealed after entry {log_file.entries} but ends after {lines}",
            )
        return offset, lines, last

    # ------------------------------------------------------------------------------------
    # Reading (any process)
    # ------------------------------------------------------------------------------------

    def tree_size(self) -> int:
        state = self.state()
        return state.size if state is not None else 0

    def leaf_hashes(self, size: int) -> list[bytes]:
        """The leaf hashes of the first ``size`` entries, as caught up."""
        self._within(size, "size")
        if size == 0:
            return []  # before the first catch-up there is no leaves file at all
        with self.leaves_path.open("rb") as f:
            raw = f.read(size * _RECORD.size)
        return [raw[i : i + 32] for i in range(0, len(raw), _RECORD.size)]

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index`` (its line, no newline), checked against its leaf."""
        self._within(index + 1, "index")
        with self.leaves_path.open("rb") as f:
            f.seek(index * _RECORD.size)
            leaf, offset = _RECORD.unpack(f.read(_RECORD.size))
        holder = [f for f in log_files(self.log) if f.first <= index][-1]
        line = read_line_at(holder.path, offset)
        if merkle_log.leaf_hash(line) != leaf:
            raise AuditLogCorrupt(
                str(holder.path),
                index - holder.first + 1,
                "the line no longer hashes to the leaf read from it: the file was changed",
            )
        return line

    def inclusion(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        """The inclusion proof of entry ``index`` in the tree of ``size`` entries, and its root:
        ``O(log n)`` stored nodes read (see ``audit_nodes``)."""
        state = self._covering(size)
        with NodeFiles(self.leaves_path, _RECORD.size) as stored:
            if not stored.covers(size):  # a data dir from before the levels: until catch-up
                leaves = self.leaf_hashes(size)
                return merkle_log.inclusion_proof(leaves, index), merkle_log.root_of(leaves)
            path, root = merkle_log.inclusion_proof_from_nodes(stored.node, size, index)
        self._check_root(state, size, root)
        return path, root

    def consistency(self, first: int, second: int) -> tuple[list[bytes], bytes, bytes]:
        """The consistency proof from ``first`` to ``second`` entries, and the two roots:
        ``O(log n)`` stored nodes read."""
        state = self._covering(second)
        with NodeFiles(self.leaves_path, _RECORD.size) as stored:
            if not stored.covers(second):
                leaves = self.leaf_hashes(second)
                return (
                    merkle_log.consistency_proof(leaves, first),
                    merkle_log.root_of(leaves[:first]),
                    merkle_log.root_of(leaves),
                )
            proof, first_root, second_root = merkle_log.consistency_proof_from_nodes(
                stored.node, second, first
            )
        self._check_root(state, second, second_root)
        return proof, first_root, second_root

    def _covering(self, size: int) -> TreeState | None:
        self._within(size, "size")
        return self.state()

    def _check_root(self, state: TreeState | None, size: int, root: bytes) -> None:
        """Fail closed when stored nodes changed after the catch-up that wrote them: at the
        state's own size the proof's root must be the one the state saved."""
        if state is not None and state.size == size and root != state.root:
            raise AuditLogCorrupt(
                str(self.leaves_path),
                0,
                f"the stored tree of {size} entries hashes to {root.hex()[:12]}…, not to the "
                f"root its state saved ({state.root.hex()[:12]}…): a node file was changed",
            )

    def _within(self, size: int, what: str) -> None:
        caught_up = self.tree_size()
        if size > caught_up:
            shown = size - 1 if what == "index" else size
            raise NotFound(
                f"the audit tree holds {caught_up} entries so far, and {what} {shown} is beyond "
                "them; entries join it when the service next anchors the log",
                size=caught_up,
            )


def _replace_anchor(state: TreeState, anchor: dict[str, Any]) -> TreeState:
    return TreeState(
        state.size,
        state.nodes,
        state.device,
        state.inode,
        state.offset,
        state.lines,
        state.last_line,
        anchor,
    )
