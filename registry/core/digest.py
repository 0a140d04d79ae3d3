"""SHA-256 digests of checkpoint bytes, and strict parsing of digests people type or paste.

A model's identity is the SHA-256 of its exact file bytes. ``Digest`` names its algorithm so a
value can never be mistaken for another kind of hash, and it has one canonical text form
(``sha256:<64 lowercase hex>``) however it was given (bare hex, ``0x…``, ``sha256:…``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import BinaryIO

from registry.errors import InvalidDigest, InvalidInput

ALGORITHM = "sha256"
HEX_LENGTH = 64
# 1 MiB reads keep the hashing loop in C for almost all of its time while staying cache-friendly.
CHUNK_SIZE = 1 << 20
# The canonical text of a digest, as records, the store and the audit log write it (fullmatch).
HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclass(frozen=True, slots=True)
class Digest:
    """A SHA-256 digest. ``hex`` is always 64 lowercase hex characters."""

    hex: str
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm != ALGORITHM:
            raise InvalidDigest(self.hex, f"algorithm {self.algorithm!r} is not supported")
        if not HEX64.fullmatch(self.hex):
            raise InvalidDigest(self.hex, "not 64 lowercase hex characters")

    @classmethod
    def parse(cls, value: object) -> Digest:
        """Accept ``<64 hex>``, ``0x<64 hex>`` or ``sha256:<64 hex>`` (any case); refuse the rest."""
        if isinstance(value, Digest):
            return value
        if isinstance(value, bytes | bytearray):
            return cls.from_bytes(bytes(value))
        if not isinstance(value, str):
            raise InvalidDigest(value, f"expected text, got {type(value).__name__}")
        text = value.strip()
        if ":" in text:
            algorithm, _, text = text.partition(":")
            if algorithm.lower() != ALGORITHM:
                raise InvalidDigest(value, f"algorithm {algorithm!r} is not sha256")
        elif text[:2].lower() == "0x":
            text = text[2:]
        if not _HEX.fullmatch(text):
            bad = next(c for c in text if not _HEX.fullmatch(c))
            raise InvalidDigest(value, f"{bad!r} is not a hex character")
        if len(text) != HEX_LENGTH:
            raise InvalidDigest(value, f"{len(text)} hex characters, need {HEX_LENGTH}")
        return cls(text.lower())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Digest:
        """From the 32 raw bytes of a digest (as stored on chain in a bytes32)."""
        if len(raw) != HEX_LENGTH // 2:
            raise InvalidDigest(raw.hex(), f"{len(raw)} bytes, need {HEX_LENGTH // 2}")
        return cls(raw.hex())

    @property
    def raw(self) -> bytes:
        """The 32 bytes, as the contract's ``bytes32`` takes them."""
        return bytes.fromhex(self.hex)

    @property
    def is_zero(self) -> bool:
        return self.hex == "0" * HEX_LENGTH

    @property
    def short(self) -> str:
        return f"{ALGORITHM}:{self.hex[:12]}…"

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.hex}"


ZERO = Digest("0" * HEX_LENGTH)


def parse_optional(value: object) -> Digest | None:
    """``None``/empty/zero mean "absent" (e.g. no parent); anything else must be a valid digest."""
    if value is None or value == "":
        return None
    digest = Digest.parse(value)
    return None if digest.is_zero else digest


def digest_bytes(data: bytes | bytearray | memoryview) -> Digest:
    """SHA-256 of bytes already in memory: the gate hashes exactly the bytes it will load."""
    return Digest(hashlib.sha256(data).hexdigest())


def digest_stream(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Digest:
    """SHA-256 of a binary stream, read in fixed chunks into one reused buffer."""
    h = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    while n := stream.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
    return Digest(h.hexdigest())


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` (following symlinks) for reading, refusing anything but a regular file.

    A FIFO blocks in open() until someone writes and /dev/zero never ends: both must be refused
    before a byte is read. O_NONBLOCK makes the open of a FIFO return at once, and the type is
    taken from the open descriptor, not the path, so the file checked is the file read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:  # a symlink loop (ELOOP), no permission...
        raise InvalidInput(
            f"cannot open {path}: {exc.strerror}; check the path",
            path=str(path),
            errno=errno_name(exc),
        ) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "special file")
        raise InvalidInput(
            f"{path} is not a regular file (it is a {kind}); give the path of the file itself",
            path=str(path),
            kind=kind,
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=0)


_FILE_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


def read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """All bytes of a regular file (see ``open_regular_file``), read through one descriptor."""
    with open_regular_file(path) as stream:
        try:
            return stream.read()
        except OSError as exc:
            raise unreadable(path, exc) from None


def digest_file(path: str | os.PathLike[str]) -> Digest:
    """SHA-256 of a regular file's bytes, streamed, with constant memory whatever its size."""
    with open_regular_file(path) as stream:
        try:
            return digest_stream(stream)
        except OSError as exc:
            raise unreadable(path, exc) from None


def errno_name(exc: OSError) -> str | None:
    """The symbolic name of ``exc``'s errno (``EIO``), for callers that act on the kind."""
    return errno.errorcode.get(exc.errno) if exc.errno is not None else None


def unreadable(path: str | os.PathLike[str], exc: OSError) -> InvalidInput:
    """A file that opened but could not be read to its end (a failing disk or network mount
    answers EIO): bad input, since nothing was hashed or sent, named with what the system said.
    The OSError itself carries no path (it comes from read(), not open())."""
    name = errno_name(exc)
    meaning = exc.strerror or str(exc)
    return InvalidInput(
        f"cannot read {path}: {meaning}{f' ({name})' if name else ''}; check the file and the "
        "disk or mount it is on, or copy it again",
        path=str(path),
        errno=name,
        reason=meaning,
    )
