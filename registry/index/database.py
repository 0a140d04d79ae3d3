"""The index's SQLite file: one row per registered checkpoint, the hashes of the blocks it read.

Everything here is derived from the chain and can be rebuilt from it, so the file is disposable:
a schema version, chain id or contract address other than the one expected, or a file SQLite
cannot read, empties it and the index reads the chain again. WAL mode lets the service's worker
processes share one file: readers never wait for the writer, and ``BEGIN IMMEDIATE`` makes one
writer at a time across processes (another one waits at most its budget, then answers from what
is indexed).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.chain.abi import RegisteredEvent, RevokedEvent
from registry.core.digest import Digest
from registry.core.records import ModelRecord, Revocation, RevocationReason

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    digest TEXT PRIMARY KEY,
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    registrant TEXT NOT NULL,
    parent TEXT,
    accuracy_bps INTEGER NOT NULL,
    test_set TEXT NOT NULL,
    card TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    tx TEXT NOT NULL,
    name TEXT,
    revoked_block INTEGER,
    revoked_at INTEGER,
    reason INTEGER,
    replacement TEXT,
    revoker TEXT,
    revoke_tx TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS models_order ON models (block, log_index);
CREATE INDEX IF NOT EXISTS models_registrant ON models (registrant, block, log_index);
CREATE INDEX IF NOT EXISTS models_parent ON models (parent, block, log_index);
"""


class IndexBusy(Exception):
    """Another writer (thread or process) holds the index for longer than the caller waits."""


@dataclass(frozen=True)
class Filters:
    """What a catalogue page keeps; None means "any"."""

    registrant: str | None = None  # EIP-55 form
    valid: bool | None = None
    parent: Digest | None = None
    min_accuracy_bps: int | None = None
    name: str | None = None  # a substring of the card's model name, case-insensitive

    def matches(self, record: ModelRecord) -> bool:
        """The same test in Python, for records read from the chain (no card name there)."""
        return (
            (self.registrant is None or record.registrant == self.registrant)
            and (self.valid is None or record.valid == self.valid)
            and (self.parent is None or record.parent == self.parent)
            and (self.min_accuracy_bps is None or record.accuracy_bps >= self.min_accuracy_bps)
        )


class IndexDatabase:
    """The SQLite file at ``path``; a connection per thread, opened on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._writer = threading.Lock()  # one writer per process; BEGIN IMMEDIATE across them
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._create()
        except sqlite3.DatabaseError:
            # Not a database (or a damaged one): it holds only what the chain can say again.
            self._drop_files()
            self._create()

    def _create(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)

    def _drop_files(self) -> None:
        self._local.__dict__.pop("conn", None)
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are begun here, explicitly (BEGIN IMMEDIATE).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints; derived data
            self._local.conn = conn
        return conn

    # ------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, wait_s: float) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on success; ``IndexBusy`` if another writer keeps
        the index for more than ``wait_s``."""
        if not self._writer.acquire(timeout=max(wait_s, 0.001)):
            raise IndexBusy()
        try:
            conn = self._conn()
            conn.execute(f"PRAGMA busy_timeout={max(int(wait_s * 1000), 1)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise IndexBusy() from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            self._writer.release()

    @staticmethod
    def reset(conn: sqlite3.Connection, identity: dict[str, str], start: int) -> None:
        """Empty the index and bind it to ``identity`` (chain id, contract); ``start`` is the
        last block before anything of the contract's can be."""
        conn.execute("DELETE FROM models")
        conn.execute("DELETE FROM blocks")
        conn.execute("DELETE FROM meta")
        values = {**identity, "schema_version": SCHEMA_VERSION, "indexed_to": str(start)}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(values.items()))

    @staticmethod
    def rewind(conn: sqlite3.Connection, block: int) -> None:
        """Forget everything read after ``block`` (a reorg replaced those blocks)."""
        conn.execute("DELETE FROM models WHERE block > ?", (block,))
        conn.execute(
            "UPDATE models SET revoked_block = NULL, revoked_at = NULL, reason = NULL, "
            "replacement = NULL, revoker = NULL, revoke_tx = NULL WHERE revoked_block > ?",
            (block,),
        )
        conn.execute("DELETE FROM blocks WHERE number > ?", (block,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'indexed_to'", (str(block),))

    @staticmethod
    def apply(
        conn: sqlite3.Connection,
        events: Sequence[tuple[RegisteredEvent | RevokedEvent, str | None]],
        hashes: dict[int, bytes],
        indexed_to: int,
    ) -> None:
        """Store ``events`` (each with its card's model name, if known), in chain order, the
        hashes of the blocks read, and how far the index now reaches."""
        for event, name in events:
            if isinstance(event, RegisteredEvent):
                conn.execute(
                    "INSERT OR REPLACE INTO models (digest, block, log_index, registrant, parent, "
                    "accuracy_bps, test_set, card, registered_at, tx, name) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.digest.hex,
                        event.block_number,
                        event.log_index,
                        event.registrant,
                        event.parent.hex if event.parent else None,
                        event.accuracy_bps,
                        event.test_set_digest.hex,
                        event.card_digest.hex,
                        event.registered_at,
                        event.tx_hash,
                        name,
                    ),
                )
            else:
                conn.execute(
                    "UPDATE models SET revoked_block = ?, revoked_at = ?, reason = ?, "
                    "replacement = ?, revoker = ?, revoke_tx = ? WHERE digest = ?",
                    (
                        event.block_number,
                        event.revoked_at,
                        int(event.reason),
                        event.replacement.hex if event.replacement else None,
                        event.revoker,
                        event.tx_hash,
                        event.digest.hex,
                    ),
                )
        conn.executemany("INSERT OR REPLACE INTO blocks VALUES (?, ?)", sorted(hashes.items()))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'indexed_to'", (str(indexed_to),))

    # ------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------

    def meta(self, conn: sqlite3.Connection | None = None) -> dict[str, str]:
        rows = (conn or self._conn()).execute("SELECT key, value FROM meta").fetchall()
        return {str(k): str(v) for k, v in rows}

    @staticmethod
    def stored_hashes(conn: sqlite3.Connection, upto: int, limit: int) -> list[tuple[int, bytes]]:
        """The newest ``limit`` stored block hashes at or below ``upto``, newest first."""
        rows = conn.execute(
            "SELECT number, hash FROM blocks WHERE number <= ? ORDER BY number DESC LIMIT ?",
            (upto, limit),
        ).fetchall()
        return [(int(n), bytes(h)) for n, h in rows]

    def page(
        self, filters: Filters, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[ModelRecord, tuple[int, int]]]:
        """Up to ``limit`` records after the sort key ``after``, in (block, log index) order,
        each with its sort key."""
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            where.append("(block, log_index) > (?, ?)")
            args.extend(after)
        if filters.registrant is not None:
            where.append("registrant = ?")
            args.append(filters.registrant)
        if filters.valid is not None:
            where.append("reason IS NULL" if filters.valid else "reason IS NOT NULL")
        if filters.parent is not None:
            where.append("parent = ?")
            args.append(filters.parent.hex)
        if filters.min_accuracy_bps is not None:
            where.append("accuracy_bps >= ?")
            args.append(filters.min_accuracy_bps)
        if filters.name is not None:
            # instr on lower(): no LIKE wildcards to escape in what a reader types.
            where.append("name IS NOT NULL AND instr(lower(name), ?) > 0")
            args.append(filters.name.lower())
        sql = "SELECT * FROM models"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY block, log_index LIMIT ?"
        args.append(limit)
        conn = self._conn()
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.row_factory = None
        return [(_record(row), (int(row["block"]), int(row["log_index"]))) for row in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.__dict__.pop("conn", None)


def _optional(hex_digest: str | None) -> Digest | None:
    return Digest(hex_digest) if hex_digest else None


def _record(row: sqlite3.Row) -> ModelRecord:
    revocation = None
    if row["reason"] is not None:
        revocation = Revocation(
            revoked_at=int(row["revoked_at"]),
            block_number=int(row["revoked_block"]),
            reason=RevocationReason(int(row["reason"])),
            replacement=_optional(row["replacement"]),
            revoker=row["revoker"],
            tx_hash=row["revoke_tx"],
        )
    return ModelRecord(
        digest=Digest(row["digest"]),
        registrant=row["registrant"],
        registered_at=int(row["registered_at"]),
        registered_block=int(row["block"]),
        accuracy_bps=int(row["accuracy_bps"]),
        test_set_digest=Digest(row["test_set"]),
        card_digest=Digest(row["card"]),
        parent=_optional(row["parent"]),
        registration_tx=row["tx"],
        revocation=revocation,
    )
