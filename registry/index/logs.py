"""The contract's logs for a block range, read and decoded at the rate a catch-up needs.

web3's log formatting and eth-abi's decoder cost about a millisecond per log, which would cap a
catch-up near 1 000 events a second. Both events have static fields only, so a log's data is
fixed 32-byte words, read here by slicing; a node's logs are asked for with a raw JSON-RPC
request after the same identity check ``ContractEvents.logs`` makes. An address topic is
checksummed once per address (a registry has few registrants). eth-tester's in-process chain
takes the formatted path: it is for tests and demos, not for size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_utils import to_checksum_address

from registry.chain.abi import RegisteredEvent, RevokedEvent, to_bytes, to_hex
from registry.chain.client import RegistryClient
from registry.core.digest import Digest
from registry.core.endpoint import MEMORY
from registry.core.records import RevocationReason
from registry.errors import ChainError

Event = RegisteredEvent | RevokedEvent


def read_logs(client: RegistryClient, start: int, end: int) -> list[Mapping[str, Any]]:
    """The contract's registration and revocation logs from ``start`` to ``end`` (inclusive)."""
    topics: list[Any] = [[client.abi.registered_topic, client.abi.revoked_topic]]
    if client.endpoint == MEMORY:
        return client.events.logs(topics, start, end)
    client.check_identity()
    params: Any = [
        {"address": client.address, "fromBlock": hex(start), "toBlock": hex(end), "topics": topics}
    ]
    response = client.rpc.run(
        lambda: client.w3.provider.make_request("eth_getLogs", params)  # type: ignore[arg-type]
    )
    if response.get("error"):
        raise ChainError(
            f"the node at {client.endpoint} refused the logs of blocks {start}-{end}: "
            f"{response['error']}"
        )
    result = response.get("result")
    if not isinstance(result, list):
        raise ChainError(f"the node at {client.endpoint} answered eth_getLogs without a list")
    return result


class Decoder:
    """Typed events of raw logs, the same values ``ContractAbi.decode_event`` gives."""

    def __init__(self, client: RegistryClient) -> None:
        self.registered = to_bytes(client.abi.registered_topic)
        self.revoked = to_bytes(client.abi.revoked_topic)
        self._addresses: dict[bytes, str] = {}

    def decode(self, log: Mapping[str, Any]) -> Event | None:
        topics = [to_bytes(t) for t in log["topics"]]
        data = to_bytes(log["data"])
        words = [data[i : i + 32] for i in range(0, len(data), 32)]
        digest = Digest.from_bytes(topics[1])
        tx_hash = to_hex(to_bytes(log["transactionHash"]))
        block_number, log_index = _int(log["blockNumber"]), _int(log["logIndex"])
        if topics[0] == self.registered and len(topics) == 4 and len(words) == 4:
            return RegisteredEvent(
                registrant=self._address(topics[2]),
                parent=None if topics[3] == bytes(32) else Digest.from_bytes(topics[3]),
                accuracy_bps=int.from_bytes(words[0], "big"),
                test_set_digest=Digest.from_bytes(words[1]),
                card_digest=Digest.from_bytes(words[2]),
                registered_at=int.from_bytes(words[3], "big"),
                block_hash=to_bytes(log["blockHash"]),
                digest=digest,
                tx_hash=tx_hash,
                block_number=block_number,
                log_index=log_index,
            )
        if topics[0] == self.revoked and len(topics) == 4 and len(words) == 2:
            return RevokedEvent(
                revoker=self._address(topics[2]),
                replacement=None if topics[3] == bytes(32) else Digest.from_bytes(topics[3]),
                reason=RevocationReason(int.from_bytes(words[0], "big")),
                revoked_at=int.from_bytes(words[1], "big"),
                digest=digest,
                tx_hash=tx_hash,
                block_number=block_number,
                log_index=log_index,
            )
        return None

    def _address(self, topic: bytes) -> str:
        known = self._addresses.get(topic)
        if known is None:
            known = self._addresses[topic] = to_checksum_address(topic[-20:])
        return known


def _int(value: int | str) -> int:
    return value if isinstance(value, int) else int(value, 16)
