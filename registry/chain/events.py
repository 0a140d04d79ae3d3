"""The contract's event log: what storage does not keep, and everything that happened, in order.

The contract stores only what its own checks need; the test-set and card digests and the parent of
a registration live in its ``ModelRegistered`` event, and who revoked a checkpoint in its
``ModelRevoked`` event. This module reads those logs (paged, so a node's range limit never bites),
decodes them into the typed events of ``abi.py``, and keeps registration events in a cache that a
reorg cannot poison. Logs carry no identity check of their own, so every query starts with one:
"no matching event" from the wrong chain or address must fail closed, not read as "none".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.chain.abi import (
    ContractAbi,
    RegisteredEvent,
    RevokedEvent,
    address_topic,
    to_bytes,
    to_hex,
)
from registry.chain.identity import IdentityCheck
from registry.chain.rpc import Rpc
from registry.core.digest import Digest
from registry.core.records import HistoryEvent
from registry.errors import ChainError

LOG_CHUNK_BLOCKS = 50_000
BLOCKHASH_WINDOW = 256  # the EVM's blockhash sees only the 256 blocks before the current one

# A log filter's topics: one topic, any of several (a list), or None for "any".
Topic = str | bytes | list[str | bytes] | None


def _topic_filter(topic: Topic) -> Any:
    if topic is None or isinstance(topic, str):
        return topic
    if isinstance(topic, list):
        return [_topic_filter(t) for t in topic]
    return to_hex(topic)


class ContractEvents:
    """Queries of one contract's logs, and the cache of its registration events."""

    def __init__(
        self,
        rpc: Rpc,
        abi: ContractAbi,
        *,
        address: str,
        deployment_block: int,
        identity: IdentityCheck,
    ) -> None:
        self.rpc = rpc
        self.abi = abi
        self.address = address
        self.deployment_block = deployment_block
        self.identity = identity
        self._registrations: dict[tuple[Digest, int], RegisteredEvent] = {}

    def logs(
        self, topics: list[Topic], from_block: int, to_block: int | str = "latest"
    ) -> list[Mapping[str, Any]]:
        """The contract's raw logs matching ``topics`` between two blocks (inclusive)."""
        self.identity.check()
        wanted = [_topic_filter(t) for t in topics]
        last = self.rpc.block_number() if to_block == "latest" else int(to_block)
        found: list[Mapping[str, Any]] = []
        start = max(from_block, self.deployment_block)
        while start <= last:
            end = min(start + LOG_CHUNK_BLOCKS - 1, last)
            params = {"address": self.address, "fromBlock": start, "toBlock": end, "topics": wanted}
            found.extend(self.rpc.get_logs(params))
            start = end + 1
        return found

    # ------------------------------------------------------------------------------------
    # One record's events
    # ------------------------------------------------------------------------------------

    def registration(
        self,
        digest: Digest,
        block: int,
        stored: tuple[str, int, int],
        *,
        head: int,
        block_hash: bytes,
    ) -> RegisteredEvent:
        """The registration event of ``digest`` in ``block``, from the cache when it may answer.

        A reorg can put another registration of the digest at the same height, even one with
        the same registrant, time and accuracy (``stored``, from storage) but another card. So a
        cached event is used only if storage agrees with it and its block is still the one the
        chain holds at that height: ``block_hash`` is the contract's ``blockhash`` of it. That
        hash is zero for the answering block ``head`` itself (then the event is read again) and
        for blocks over 256 back, past any reorg this client follows.
        """
        if block > head:
            # Impossible on a consistent node: seen with anvil restarted from a state file that
            # it saved while still committing a block (storage kept, the block lost).
            raise ChainError(
                f"the record of {digest.short} names block {block}, past the chain's head "
                f"({head}): the node's state and its blocks disagree. Restart the node from a "
                "consistent state (or a backup of its state file), then try again"
            )
        key = (digest, block)
        cached = self._registrations.get(key)
        if cached is not None:
            same_block = block_hash == cached.block_hash or (
                block_hash == bytes(32) and block < head - BLOCKHASH_WINDOW
            )
            same_fields = (cached.registrant, cached.registered_at, cached.accuracy_bps) == stored
            if same_block and same_fields:
                return cached
        logs = self.logs([self.abi.registered_topic, digest.raw], block, block)
        if not logs:
            raise ChainError(
                f"the record of {digest.short} names block {block} but that block holds no "
                "registration event; the node may be out of sync or reorganising, try again"
            )
        event = RegisteredEvent.from_log(logs[-1])
        self._registrations[key] = event
        return event

    def remember(self, event: RegisteredEvent) -> None:
        """Cache a registration event read elsewhere (a receipt's own log)."""
        self._registrations[(event.digest, event.block_number)] = event

    def forget(self) -> None:
        """Drop every cached event (the chain was reverted to a snapshot, or reset)."""
        self._registrations.clear()

    def revocation(self, digest: Digest, block: int) -> RevokedEvent | None:
        """The revocation event of ``digest`` in ``block``; None if the node has no such log."""
        logs = self.logs([self.abi.revoked_topic, digest.raw], block, block)
        return RevokedEvent.from_log(logs[-1]) if logs else None

    # ------------------------------------------------------------------------------------
    # Every record's events
    # ------------------------------------------------------------------------------------

    def history(self, digest: Digest | None = None) -> list[HistoryEvent]:
        """Every registration and revocation (of one checkpoint, or all), in chain order."""
        topic = None if digest is None else digest.raw
        kinds: Topic = [self.abi.registered_topic, self.abi.revoked_topic]
        events: list[HistoryEvent] = []
        for log in self.logs([kinds, topic], 0):
            event = self.abi.decode_event(log)
            if event is not None:
                events.append(event.to_history())
        events.sort(key=lambda ev: (ev.block_number, ev.log_index))
        return events

    def registered(self, *, registrant: str | None = None) -> list[Digest]:
        """Digests of every registration (by ``registrant`` only, if given), oldest first."""
        topics: list[Topic] = [self.abi.registered_topic, None]
        if registrant is not None:
            topics.append(address_topic(registrant))
        return [Digest.from_bytes(to_bytes(log["topics"][1])) for log in self.logs(topics, 0)]

    def children(self, digest: Digest) -> list[Digest]:
        """Checkpoints registered with ``digest`` as their parent (an indexed event topic)."""
        logs = self.logs([self.abi.registered_topic, None, None, digest.raw], 0)
        return [Digest.from_bytes(to_bytes(log["topics"][1])) for log in logs]
