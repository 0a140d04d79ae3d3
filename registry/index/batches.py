"""Which stored batch manifest holds a checkpoint: digest -> (root, manifest, position).

A batched checkpoint has no record of its own on chain, so a verifier must be told which batch to
look in and be given the leaf's proof. A clinic service keeps the manifests it accepted in its
checkpoint store (by SHA-256) and this shelf, a small SQLite file beside the event index
(``<data_dir>/batches.sqlite3``), says which of them holds a digest. It only says where to look:
every proof taken from a manifest is checked against its root and the chain like any other
(``registry.verify.verify_located``), so a stale or tampered shelf can at worst make a batched
checkpoint look unknown, never make anything verify. Worker processes share the file (WAL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from registry.core.batch_proof import BatchProof
from registry.core.batches import Manifest
from registry.core.digest import Digest
from registry.core.store import CheckpointStore
from registry.errors import NotFound, RegistryError, StoreUnavailable

log = logging.getLogger("registry.index")

SHELF_FILE = "batches.sqlite3"
MAX_CACHED_MANIFESTS = 8  # parsed manifests kept in memory (a 10 000-leaf one is ~10 MB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    digest TEXT NOT NULL,
    root TEXT NOT NULL,
    manifest TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (digest, root)
);
"""


def shelf_path(data_dir: Path) -> Path:
    return data_dir / SHELF_FILE


@dataclass(frozen=True, slots=True)
class Place:
    """Where a manifest on the shelf puts a checkpoint."""

    root: bytes
    manifest_digest: Digest
    position: int


class BatchShelf:
    """The shelf at ``path``, whose manifests are read from ``store``."""

    def __init__(self, path: Path, store: CheckpointStore) -> None:
        self.path = path
        self.store = store
        self._lock = threading.Lock()
        self._cache: OrderedDict[Digest, Manifest] = OrderedDict()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError:
            # Not a database: it holds only what the stored manifests say again.
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, manifest: Manifest) -> int:
        """Shelve every leaf of ``manifest`` (already in the store); how many were new."""
        root, digest = manifest.root.hex(), manifest.digest.hex
        rows = [
            (bytes(leaf[0]).hex(), root, digest, i)  # type: ignore[arg-type]  # a bytes32
            for i, leaf in enumerate(manifest.tree.values)
        ]
        with self._lock:
            before = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR IGNORE INTO leaves VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._remember(manifest)
            return self._conn.total_changes - before

    def holds(self, root: bytes) -> bool:
        """Whether a manifest of batch ``root`` is on the shelf."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM leaves WHERE root = ? LIMIT 1", (root.hex(),)
            ).fetchone()
        return row is not None

    def places(self, digest: Digest) -> list[Place]:
        """Every shelved batch holding ``digest``, in no particular order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT root, manifest, position FROM leaves WHERE digest = ? ORDER BY root",
                (digest.hex,),
            ).fetchall()
        return [Place(bytes.fromhex(r), Digest(m), int(p)) for r, m, p in rows]

    def manifest(self, digest: Digest) -> Manifest:
        """The stored manifest with this SHA-256, parsed (and checked) once while cached."""
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                return cached
        manifest = Manifest.parse(self.store.get(digest.hex, "manifest"), source=str(digest))
        with self._lock:
            self._remember(manifest)
        return manifest

    def _remember(self, manifest: Manifest) -> None:
        self._cache[manifest.digest] = manifest
        self._cache.move_to_end(manifest.digest)
        while len(self._cache) > MAX_CACHED_MANIFESTS:
            self._cache.popitem(last=False)

    def proofs(self, digest: Digest) -> Iterator[BatchProof]:
        """``digest``'s proof from each shelved manifest holding it. A manifest the store no
        longer gives (gone, corrupt) is skipped and logged: its checkpoints look unknown, the
        fail-closed side; a store that cannot be reached raises."""
        for place in self.places(digest):
            try:
                manifest = self.manifest(place.manifest_digest)
            except StoreUnavailable:
                raise  # can't tell: the caller fails closed
            except NotFound:
                log.warning("manifest %s is shelved but not stored", place.manifest_digest)
                continue
            except RegistryError as exc:
                log.warning("manifest %s unusable: %s", place.manifest_digest, exc)
                continue
            yield BatchProof.from_manifest(manifest, digest)
