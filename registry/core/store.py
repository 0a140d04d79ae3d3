"""Content-addressed storage for checkpoints and model cards.

The registry anchors digests, not files, so the files themselves need a home where their name *is*
their digest: a stored object can then never be swapped for other bytes under the same name, and a
reader can always check what it got. Objects live at ``root/<kind>/<ab>/<cdef...>`` (the first two
hex digits fan the directory out), are written atomically, made read-only, and never overwritten.
Every read re-hashes the bytes, so bit rot or tampering on disk surfaces as ``StoreError`` instead
of flowing into the inference gate.

``CheckpointStore`` is the seam: ``store_s3.S3Store`` keeps the same contract in a bucket several
services share, and ``stores.open_store`` picks the one the settings name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol, get_args

from registry.core.digest import HEX64
from registry.core.files import atomic_write
from registry.errors import InvalidDigest, NotFound, StoreError

# "manifest": a batch manifest (registry.core.batches), served so a clinic can check a leaf.
Kind = Literal["checkpoint", "card", "manifest"]
KINDS: tuple[str, ...] = get_args(Kind)

_READ_ONLY = 0o444


class CheckpointStore(Protocol):
    """Where checkpoint and model-card bytes live, addressed by their SHA-256."""

    def put(self, data: bytes, kind: Kind) -> str:
        """Store ``data``; return its lowercase hex SHA-256. Same bytes twice: a no-op."""
        ...

    def get(self, digest_hex: str, kind: Kind) -> bytes:
        """Return the bytes hashing to ``digest_hex``; raise ``NotFound`` or ``StoreError``."""
        ...

    def has(self, digest_hex: str, kind: Kind) -> bool:
        """Whether an object with that digest is stored (its content is not re-checked)."""
        ...

    def has_maybe_stale(self, digest_hex: str, kind: Kind) -> bool:
        """``has`` for listings, where a "no" a few seconds old will do (a bucket would
        otherwise be asked once per record on every catalogue page)."""
        ...


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}; use one of {', '.join(KINDS)}")


def check_digest(digest_hex: object) -> None:
    # Exactly what put() returns; anything else (upper case, prefixes, "..", separators) is
    # refused before it comes anywhere near a path.
    if not isinstance(digest_hex, str) or HEX64.fullmatch(digest_hex) is None:
        raise InvalidDigest(
            digest_hex,
            "the store takes exactly the 64 lowercase hex characters that put() returned",
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileStore:
    """A ``CheckpointStore`` on the local file system."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def __repr__(self) -> str:
        return f"FileStore({str(self._root)!r})"

    def _path(self, digest_hex: str, kind: str) -> Path:
        check_kind(kind)
        check_digest(digest_hex)
        return self._root / kind / digest_hex[:2] / digest_hex[2:]

    def put(self, data: bytes, kind: Kind) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"put() stores bytes, not {type(data).__name__}")
        data = bytes(data)
        digest = sha256_hex(data)
        target = self._path(digest, kind)
        if target.exists():
            self._check_existing(target, digest, kind)
            return digest

        try:
            # Never overwrite: a concurrent writer's object (or a corrupted one, kept as
            # evidence) stays in place and is checked instead.
            atomic_write(target, data, overwrite=False, mode=_READ_ONLY)
        except FileExistsError:
            self._check_existing(target, digest, kind)
        except OSError as exc:
            raise StoreError(
                f"could not write {kind} sha256:{digest[:12]}… under {self._root}: {exc}; "
                "check that the store directory is writable and the disk is not full",
                digest=digest,
                kind=kind,
            ) from exc
        return digest

    def get(self, digest_hex: str, kind: Kind) -> bytes:
        path = self._path(digest_hex, kind)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"no {kind} with sha256:{digest_hex} in the store at {self._root}; "
                "upload it first, or check the digest",
                digest=digest_hex,
                kind=kind,
            ) from None
        except OSError as exc:
            raise StoreError(
                f"could not read {kind} sha256:{digest_hex[:12]}… from {self._root}: {exc}",
                digest=digest_hex,
                kind=kind,
            ) from exc
        actual = sha256_hex(data)
        if actual != digest_hex:
            raise _corrupted(kind, digest_hex, actual, path)
        return data

    def has(self, digest_hex: str, kind: Kind) -> bool:
        return self._path(digest_hex, kind).is_file()

    def has_maybe_stale(self, digest_hex: str, kind: Kind) -> bool:
        return self.has(digest_hex, kind)  # a local folder is cheap to ask every time

    def _check_existing(self, path: Path, digest: str, kind: str) -> None:
        try:
            actual = sha256_hex(path.read_bytes())
        except OSError as exc:
            raise StoreError(
                f"{kind} sha256:{digest[:12]}… exists at {path} but cannot be read: {exc}",
                digest=digest,
                kind=kind,
            ) from exc
        if actual != digest:
            raise _corrupted(kind, digest, actual, path)


def _corrupted(kind: str, expected: str, actual: str, path: Path) -> StoreError:
    return StoreError(
        f"stored {kind} at {path} is corrupted: its bytes hash to sha256:{actual[:12]}…, "
        f"not sha256:{expected[:12]}…; it was left in place as evidence. Move it aside and "
        "put() the original bytes again",
        digest=expected,
        actual=actual,
        kind=kind,
    )
