"""The audit log's anchors on chain: publish a root, read one back, list a service's anchors.

A service anchors the RFC 9162 root of its audit log's first ``size`` entries
(``registry.core.audit_tree``) with ``anchorAuditLog(size, root)``; the contract keeps anchors
per sending account, so whoever checks a receipt pins the service's anchoring address and never
takes it from the receipt. Three readers:

- ``AuditAnchors.latest``: the service's latest anchor, identity-checked like every client read;
- ``anchored_root``: what a receipt's verifier needs, in exactly two JSON-RPC calls
  (``eth_chainId``, then ``eth_call auditRoot(service, size)``), because it holds nothing of the
  chain beforehand and one extra call per receipt adds up over an audit. The contract's code is
  not compared: an address without our contract answers nothing (refused) and a node that lies
  can lie about the code too;
- ``AuditAnchors.events``: every ``AuditLogAnchored`` event of a service, for checking a whole
  local log against everything it ever anchored.

The anchoring key may differ from the service's registration key
(``REGISTRY_AUDIT_ANCHOR_PRIVATE_KEY``): it then gets its own nonce counter on the same node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic
from eth_utils import to_checksum_address as checksum

from registry.chain.abi import address_topic, to_bytes, to_hex, topic_address
from registry.chain.client import RegistryClient
from registry.chain.rpc import Rpc
from registry.chain.transactions import GAS_LIMITS, Transactions
from registry.errors import ChainError, ContractMismatch, WrongChain

EVENT = "AuditLogAnchored"


@dataclass(frozen=True, slots=True)
class AuditAnchor:
    """One anchor: ``service``'s log had root ``root`` at ``size`` entries, anchored at
    ``anchored_at`` (unix seconds) in block ``anchored_block``; ``tx_hash`` where known."""

    service: str
    size: int
    root: bytes
    anchored_at: int
    anchored_block: int
    tx_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "size": self.size,
            "root": self.root.hex(),
            "anchored_at": self.anchored_at,
            "anchored_block": self.anchored_block,
            "tx_hash": self.tx_hash,
        }

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> AuditAnchor:
        root, anchored_at = abi_decode(["bytes32", "uint40"], to_bytes(log["data"]))
        topics = log["topics"]
        return cls(
            service=topic_address(topics[1]),
            size=int.from_bytes(to_bytes(topics[2]), "big"),
            root=bytes(root),
            anchored_at=int(anchored_at),
            anchored_block=int(log["blockNumber"]),
            tx_hash=to_hex(log["transactionHash"]),
        )


def anchored_topic(client: RegistryClient) -> str:
    event = next(e for e in client.artifact.abi if e["type"] == "event" and e["name"] == EVENT)
    return to_hex(event_abi_to_log_topic(event))  # type: ignore[arg-type]


class AuditAnchors:
    """Anchors of one contract, written with ``account`` (None: read only)."""

    def __init__(self, client: RegistryClient, account: LocalAccount | None) -> None:
        self.client = client
        self.account = account
        self._transactions: Transactions | None = None
        if account is not None:
            same = client.account is not None and client.account.address == account.address
            # The same key as the client's shares its nonce counter; another key counts its own.
            self._transactions = (
                client.transactions
                if same
                else Transactions(
                    client.rpc,
                    account,
                    chain_id=lambda: client.check_identity().chain_id,
                    confirmations=client.confirmations,
                    tx_timeout_s=client.tx_timeout_s,
                )
            )

    @property
    def address(self) -> str | None:
        return self.account.address if self.account is not None else None

    def anchor(self, size: int, root: bytes) -> AuditAnchor:
        """Anchor ``root`` for the first ``size`` entries; the contract refuses a size that does
        not grow (``ModelRegistryAuditLogNotGrowing``, raised typed)."""
        if self._transactions is None or self.account is None:
            raise ChainError("no anchoring key is configured; nothing can be anchored")
        self.client.check_identity()
        data = self.client.abi.encode_call("anchorAuditLog", size, root)
        tx = {"to": self.client.address, "data": to_hex(data), "gas": GAS_LIMITS["anchorAuditLog"]}
        receipt = self._transactions.execute(tx)
        topic = anchored_topic(self.client)
        for log in receipt["logs"]:
            if to_hex(log["topics"][0]) == topic:
                return AuditAnchor.from_log(log)
        raise ChainError(f"audit anchor of size {size} mined without its {EVENT} event")

    def latest(self, service: str) -> tuple[AuditAnchor | None, int]:
        """``service``'s latest anchor (None before its first) and the block that answered."""
        anchor, block, chain_id = self.client.call("latestAuditAnchor", checksum(service))
        self._check_chain(int(chain_id))
        size, anchored_at, anchored_block, root = anchor
        if int(size) == 0:
            return None, int(block)
        found = AuditAnchor(
            checksum(service), int(size), bytes(root), int(anchored_at), int(anchored_block)
        )
        return found, int(block)

    def root(self, service: str, size: int) -> bytes | None:
        """The root ``service`` anchored at ``size`` entries, or None."""
        (root,) = self.client.call("auditRoot", checksum(service), size)
        return None if bytes(root) == bytes(32) else bytes(root)

    def events(self, service: str) -> list[AuditAnchor]:
        """Every anchor ``service`` made, oldest first, from the contract's events."""
        topics: list[Any] = [anchored_topic(self.client), address_topic(service)]
        logs = self.client.events.logs(topics, self.client.deployment_block)
        anchors = [AuditAnchor.from_log(log) for log in logs]
        return sorted(anchors, key=lambda a: a.size)

    def _check_chain(self, chain_id: int) -> None:
        identity = self.client.identity.last
        expected = self.client.expected_chain_id or (identity.chain_id if identity else None)
        if expected is not None and chain_id != expected:
            self.client.identity.forget()
            raise WrongChain(expected, chain_id, self.client.endpoint)


def anchored_root(
    rpc: Rpc,
    client_abi: Any,
    contract: str,
    service: str,
    size: int,
    *,
    expected_chain_id: int | None,
) -> tuple[bytes | None, int]:
    """(the root ``service`` anchored at ``size`` on ``contract``, or None; the chain id), read
    with exactly two calls: the chain id first, so an answer from another chain is refused."""
    chain_id = rpc.chain_id()
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WrongChain(expected_chain_id, chain_id, rpc.endpoint)
    fn = client_abi.function("auditRoot")
    raw = rpc.eth_call({"to": contract, "data": to_hex(fn.encode(checksum(service), size))})
    if not raw:
        raise ContractMismatch(contract, "returned nothing; it holds no registry contract")
    (root,) = fn.decode(raw)
    return (None if bytes(root) == bytes(32) else bytes(root)), chain_id
