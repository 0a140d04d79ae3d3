"""The contract's ABI codec and its events as typed values.

Hot paths avoid web3's contract layer: a function's selector and argument types are read from the
artifact once, calldata is ``selector + eth_abi.encode`` and results are decoded with eth-abi, so a
lookup is one ``eth_call`` with little Python on top. The two events the registry reads back
(``ModelRegistered`` and ``ModelRevoked``) become frozen dataclasses here, so no caller indexes a
dict of decoded arguments by name and a renamed field fails in mypy, not at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import event_abi_to_log_topic, function_signature_to_4byte_selector
from eth_utils import to_checksum_address as checksum
from hexbytes import HexBytes

from registry.core.digest import Digest
from registry.core.records import HistoryEvent, ModelRecord, RevocationReason

ZERO_WORD = bytes(32)


def to_hex(value: bytes | str) -> str:
    """``0x``-prefixed hex of bytes; a string (already hex, as nodes send it) passes through."""
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def to_bytes(value: bytes | str) -> bytes:
    """Bytes of a hex string or of any bytes-like value a node or eth-tester hands back."""
    return bytes(HexBytes(value))


def abi_type(entry: Mapping[str, Any]) -> str:
    """The canonical type of an ABI input or output, tuples spelled out as ``(t1,t2)``."""
    if entry["type"].startswith("tuple"):
        inner = ",".join(abi_type(c) for c in entry["components"])
        return f"({inner}){entry['type'][5:]}"
    return str(entry["type"])


def address_topic(address: str) -> str:
    """An address as an indexed event topic (left-padded to 32 bytes), for log filters."""
    return "0x" + checksum(address)[2:].lower().rjust(64, "0")


def topic_address(topic: bytes | str) -> str:
    """An indexed address topic (or a 32-byte word) back to its EIP-55 address."""
    return checksum("0x" + to_bytes(topic)[-20:].hex())


def optional_digest(word: bytes) -> Digest | None:
    """A bytes32 digest field, where the zero word means none (a parent, a report...)."""
    return None if word == ZERO_WORD else Digest.from_bytes(word)


@dataclass(frozen=True)
class Function:
    """One contract function: its 4-byte selector and argument and result types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, *args: Any) -> bytes:
        """Calldata for a call of this function with ``args`` (in ABI order)."""
        return self.selector + abi_encode(self.inputs, args)

    def decode(self, raw: bytes) -> tuple[Any, ...]:
        """The returned values of this function, decoded from the call's raw result."""
        return tuple(abi_decode(self.outputs, raw))


@dataclass(frozen=True)
class RegisteredEvent:
    """A ``ModelRegistered`` log: the record's fields and the digests kept only in the event."""

    digest: Digest
    registrant: str
    parent: Digest | None
    accuracy_bps: int
    test_set_digest: Digest
    card_digest: Digest
    registered_at: int
    tx_hash: str
    block_number: int
    block_hash: bytes
    log_index: int

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> RegisteredEvent:
        accuracy, test_set, card, registered_at = abi_decode(
            ["uint16", "bytes32", "bytes32", "uint40"], to_bytes(log["data"])
        )
        topics = log["topics"]
        return cls(
            digest=Digest.from_bytes(to_bytes(topics[1])),
            registrant=topic_address(topics[2]),
            parent=optional_digest(to_bytes(topics[3])),
            accuracy_bps=int(accuracy),
            test_set_digest=Digest.from_bytes(test_set),
            card_digest=Digest.from_bytes(card),
            registered_at=int(registered_at),
            tx_hash=to_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
            block_hash=to_bytes(log["blockHash"]),
            log_index=int(log["logIndex"]),
        )

    def to_record(self) -> ModelRecord:
        """The record as this event states it, as of the event's block (no revocation yet)."""
        return ModelRecord(
            digest=self.digest,
            registrant=self.registrant,
            registered_at=self.registered_at,
            registered_block=self.block_number,
            accuracy_bps=self.accuracy_bps,
            test_set_digest=self.test_set_digest,
            card_digest=self.card_digest,
            parent=self.parent,
            registration_tx=self.tx_hash,
        )

    def to_history(self) -> HistoryEvent:
        return HistoryEvent(
            kind="registered",
            digest=self.digest,
            block_number=self.block_number,
            tx_hash=self.tx_hash,
            log_index=self.log_index,
            actor=self.registrant,
            timestamp=self.registered_at,
            details={
                "accuracy_bps": self.accuracy_bps,
                "test_set_digest": str(self.test_set_digest),
                "card_digest": str(self.card_digest),
                "parent": str(self.parent) if self.parent else None,
            },
        )


@dataclass(frozen=True)
class RevokedEvent:
    """A ``ModelRevoked`` log: who revoked which checkpoint, why, and what replaces it."""

    digest: Digest
    revoker: str
    replacement: Digest | None
    reason: RevocationReason
    revoked_at: int
    tx_hash: str
    block_number: int
    log_index: int

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> RevokedEvent:
        reason, revoked_at = abi_decode(["uint8", "uint40"], to_bytes(log["data"]))
        topics = log["topics"]
        return cls(
            digest=Digest.from_bytes(to_bytes(topics[1])),
            revoker=topic_address(topics[2]),
            replacement=optional_digest(to_bytes(topics[3])),
            reason=RevocationReason(reason),
            revoked_at=int(revoked_at),
            tx_hash=to_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
        )

    def to_history(self) -> HistoryEvent:
        return HistoryEvent(
            kind="revoked",
            digest=self.digest,
            block_number=self.block_number,
            tx_hash=self.tx_hash,
            log_index=self.log_index,
            actor=self.revoker,
            timestamp=self.revoked_at,
            details={
                "reason": self.reason.label,
                "replacement": str(self.replacement) if self.replacement else None,
            },
        )


@dataclass(frozen=True)
class BatchRegisteredEvent:
    """A ``BatchRegistered`` log: the root, who anchored it, its count and manifest digest."""

    root: bytes
    registrant: str
    count: int
    manifest_digest: Digest
    registered_at: int
    tx_hash: str
    block_number: int

    @classmethod
    def from_log(cls, log: Mapping[str, Any]) -> BatchRegisteredEvent:
        count, manifest, registered_at = abi_decode(
            ["uint32", "bytes32", "uint40"], to_bytes(log["data"])
        )
        topics = log["topics"]
        return cls(
            root=to_bytes(topics[1]),
            registrant=topic_address(topics[2]),
            count=int(count),
            manifest_digest=Digest.from_bytes(manifest),
            registered_at=int(registered_at),
            tx_hash=to_hex(log["transactionHash"]),
            block_number=int(log["blockNumber"]),
        )


class ContractAbi:
    """Selectors, types and event topics of one contract build, read from its ABI once."""

    def __init__(self, abi: Iterable[Mapping[str, Any]]) -> None:
        entries = list(abi)
        self.functions: dict[str, Function] = {}
        for e in entries:
            if e["type"] != "function":
                continue
            inputs = tuple(abi_type(i) for i in e["inputs"])
            self.functions[e["name"]] = Function(
                name=e["name"],
                selector=function_signature_to_4byte_selector(f"{e['name']}({','.join(inputs)})"),
                inputs=inputs,
                outputs=tuple(abi_type(o) for o in e["outputs"]),
            )
        events = {e["name"]: e for e in entries if e["type"] == "event"}
        self.registered_topic = to_hex(event_abi_to_log_topic(events["ModelRegistered"]))  # type: ignore[arg-type]
        self.revoked_topic = to_hex(event_abi_to_log_topic(events["ModelRevoked"]))  # type: ignore[arg-type]
        self.batch_registered_topic = to_hex(
            event_abi_to_log_topic(events["BatchRegistered"])  # type: ignore[arg-type]
        )

    def function(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            known = ", ".join(sorted(self.functions))
            raise ValueError(f"the contract has no function {name!r}; it has {known}") from None

    def encode_call(self, name: str, *args: Any) -> bytes:
        """Calldata for ``name(*args)``."""
        return self.function(name).encode(*args)

    def decode_event(self, log: Mapping[str, Any]) -> RegisteredEvent | RevokedEvent | None:
        """The typed event of one of the contract's logs; None for the role and admin events."""
        topic = to_hex(log["topics"][0])
        if topic == self.registered_topic:
            return RegisteredEvent.from_log(log)
        if topic == self.revoked_topic:
            return RevokedEvent.from_log(log)
        return None

    def registration_in(self, receipt: Mapping[str, Any], digest: Digest) -> RegisteredEvent | None:
        """The ``ModelRegistered`` event of ``digest`` among a receipt's logs (None if absent):
        a mined registration states its record there, with no further round trip."""
        return next(
            (
                RegisteredEvent.from_log(log)
                for log in receipt["logs"]
                if to_hex(log["topics"][0]) == self.registered_topic
                and to_bytes(log["topics"][1]) == digest.raw
            ),
            None,
        )
