"""Following the chain: catch the index up with confirmed blocks, undo what a reorg replaced.

Catching up reads the contract's registration and revocation logs block range by block range, up
to the newest block with ``confirmations``; each range is one write transaction that also stores
the hash of its last block and of every block holding an event. A block's hash commits to every
block before it, so before each range the index compares the hash it stored for its newest block
with the chain's: equal, nothing it read has changed; different, it walks back through the
hashes it kept to the newest one the chain still has, forgets everything after it and reads on
from there (none kept matches: it starts again from the deployment). The hash of a range's last
block is read before and after its logs; if they differ, a reorg happened meanwhile and the
range is read again.

The index answers lists only. A verdict (``/verify``, predict, the gate) never reads it: those
are direct chain reads, so a stale, tampered or foreign index file can mislead a catalogue page
at worst, never a decision to run a model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.chain.abi import RegisteredEvent, RevokedEvent, to_bytes
from registry.chain.client import RegistryClient
from registry.core.digest import Digest
from registry.core.endpoint import MEMORY
from registry.errors import ChainError, RegistryError
from registry.index.database import SCHEMA_VERSION, IndexBusy, IndexDatabase
from registry.index.logs import Decoder, read_logs
from registry.index.pages import Page, PageQuery

log = logging.getLogger("registry.index")

INDEX_FILE = "index.sqlite3"
RANGE_BLOCKS = 5_000  # blocks per write transaction: a few hundred ms of logs on a busy chain
REWIND_LIMIT = 256  # stored hashes compared before giving up and reading from the deployment

CardName = Callable[[Digest], str | None]


def index_path(data_dir: Path) -> Path:
    return data_dir / INDEX_FILE


class ChainIndex:
    """The event index of one contract, kept in ``path``, caught up from ``client``."""

    def __init__(
        self,
        path: Path,
        client: Callable[[], RegistryClient],
        *,
        confirmations: int = 1,
        card_name: CardName | None = None,
    ) -> None:
        """``client`` is called when the chain is needed (it may raise ChainUnavailable);
        ``card_name`` gives the model name of a card this service holds, stored at indexing."""
        self.db = IndexDatabase(path)
        self.client = client
        self.confirmations = confirmations
        self.card_name = card_name

    @property
    def indexed_to(self) -> int | None:
        """The newest block the index holds; None before its first catch-up."""
        value = self.db.meta().get("indexed_to")
        return None if value is None else int(value)

    def page(self, query: PageQuery) -> Page:
        """One catalogue page from the index as it is (no chain call)."""
        rows = self.db.page(query.filters, query.after, query.limit + 1)
        return Page.of(rows, query.limit, self.indexed_to)

    # ------------------------------------------------------------------------------------
    # Catching up
    # ------------------------------------------------------------------------------------

    def catch_up(self, budget_s: float) -> int | None:
        """Read confirmed blocks for at most about ``budget_s`` (a range started is finished);
        how far the index reaches. Raises the chain's errors (ChainUnavailable...); when another
        writer keeps the index longer than the budget, returns without reading."""
        deadline = time.monotonic() + budget_s
        client = self.client()
        identity = {"chain_id": str(client.chain_id), "contract": client.address}
        while True:
            target = client.head() - self.confirmations + 1
            try:
                with self.db.writing(max(deadline - time.monotonic(), 0.0)) as conn:
                    done = self._step(client, conn, identity, target)
            except IndexBusy:
                return self.indexed_to
            if done or time.monotonic() >= deadline:
                return self.indexed_to

    def _step(
        self, client: RegistryClient, conn: Any, identity: dict[str, str], target: int
    ) -> bool:
        """One range inside one write transaction; True when the index has reached ``target``."""
        meta = self.db.meta(conn)
        wanted = {**identity, "schema_version": SCHEMA_VERSION}
        if {k: meta.get(k) for k in wanted} != wanted:
            if meta:
                log.warning(
                    "the event index was built for another chain, contract or schema: rebuilding"
                )
            self.db.reset(conn, identity, client.deployment_block - 1)
            meta = self.db.meta(conn)
        indexed_to = self._verified_tip(client, conn, int(meta["indexed_to"]))
        if indexed_to >= target:
            return True
        start, end = indexed_to + 1, min(indexed_to + RANGE_BLOCKS, target)
        before = _block_hash(client, end)
        logs = read_logs(client, start, end)
        decoder = Decoder(client)
        events: list[tuple[RegisteredEvent | RevokedEvent, str | None]] = []
        hashes: dict[int, bytes] = {}
        for entry in logs:
            event = decoder.decode(entry)
            if event is None:
                continue
            hashes[event.block_number] = to_bytes(entry["blockHash"])
            name = None
            if isinstance(event, RegisteredEvent) and self.card_name is not None:
                name = self.card_name(event.card_digest)
            events.append((event, name))
        events.sort(key=lambda pair: (pair[0].block_number, pair[0].log_index))  # chain order
        # Last: the range is kept only if its last block is the same after all the reading.
        after = _block_hash(client, end)
        if before is None or before != after:
            return False  # reorganised while reading: read the range again
        hashes[end] = before
        self.db.apply(conn, events, hashes, end)
        return end >= target

    def _verified_tip(self, client: RegistryClient, conn: Any, indexed_to: int) -> int:
        """How far the index reaches once whatever a reorg replaced is forgotten."""
        stored = self.db.stored_hashes(conn, indexed_to, REWIND_LIMIT)
        if not stored:
            return indexed_to  # nothing read yet (or only empty ranges before any hash)
        for position, (number, stored_hash) in enumerate(stored):
            if _block_hash(client, number) == stored_hash:
                if position > 0:
                    log.info("chain reorganised after block %d: re-reading from there", number)
                    self.db.rewind(conn, number)
                    return number
                return indexed_to
        log.warning("no block the index read is on the chain any more: rebuilding")
        meta = self.db.meta(conn)
        identity = {k: meta[k] for k in ("chain_id", "contract")}
        self.db.reset(conn, identity, client.deployment_block - 1)
        return client.deployment_block - 1


def _block_hash(client: RegistryClient, number: int) -> bytes | None:
    """The chain's hash of block ``number``; None if it has no such block (it got shorter).

    A raw request: web3's block formatting costs more than the request, and its "no such
    block" exception would be one more web3 error to translate outside ``registry.chain.rpc``.
    """
    # eth-tester's provider takes the number as it is; a node, as JSON-RPC's hex quantity.
    params: Any = [number if client.endpoint == MEMORY else hex(number), False]
    response = client.rpc.run(
        lambda: client.w3.provider.make_request("eth_getBlockByNumber", params)  # type: ignore[arg-type]
    )
    if response.get("error"):
        raise ChainError(
            f"the node at {client.endpoint} refused to give block {number}: {response['error']}"
        )
    block = response.get("result")
    return None if block is None else to_bytes(block["hash"])


class Poller:
    """A thread that catches the index up every ``interval_s`` until stopped."""

    def __init__(self, index: ChainIndex, interval_s: float) -> None:
        self.index = index
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-index", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.index.catch_up(budget_s=self.interval_s)
            except RegistryError as exc:
                # The chain down or refusing: lists answer from the index meanwhile.
                log.debug("event index not caught up: %s", exc)
            except Exception:
                # A bug: logged with its traceback; the thread lives on, lists stay answered.
                log.exception("event index catch-up failed")
            self._stop.wait(self.interval_s)
