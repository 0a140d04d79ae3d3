"""The proof bundle's file format, and the clinic's pinned block hashes, read strictly.

A proof bundle lets a checkpoint be verified with no node at all: it holds one block header (RLP)
and the EIP-1186 proofs (``eth_getProof``) of the registry's account and of a record's storage
slots at that block. Checking it is the chain layer's job (``registry.chain.bundles``: keccak,
RLP and the Merkle-Patricia trie); this module only says what the JSON looks like, refuses
anything malformed before a hash is computed, and writes it back byte for byte the same.

Every size is bounded here (file, node count, node size), so a hostile bundle costs a verifier
at most a few hundred keccaks. Values that are only *carried* (the registration event's digests,
which live in a log, not in storage) are kept apart under ``event`` and never called proven.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modelformat.strictjson import StrictJSONError, loads
from registry.core.address import ADDRESS, to_checksum_address
from registry.core.digest import Digest, parse_optional
from registry.errors import InvalidInput

FORMAT = "model-registry-proof-bundle/1"
TRUSTED_FORMAT = "model-registry-trusted-blocks/1"
MAX_BUNDLE_BYTES = 64 * 1024  # a real one is under 4 KiB (scripts/bench_bundle.py)
MAX_TRUSTED_FILE_BYTES = 1024 * 1024
MAX_PROOF_NODES = 64  # a trie of 2**256 keys is at most 64 nibbles deep
MAX_NODE_BYTES = 1024  # a full branch node is 532 bytes
MAX_HEADER_BYTES = 2048  # about 620 bytes after Prague
_HEX = re.compile(r"0x(?:[0-9a-f]{2})*")
_HASH = re.compile(r"0x[0-9a-f]{64}")
_QUANTITY = re.compile(r"0x(?:0|[1-9a-f][0-9a-f]{0,63})")


def _bad(source: str, problem: str, **details: Any) -> InvalidInput:
    return InvalidInput(f"{source}: {problem}", source=source, **details)


def _field(data: dict[str, Any], name: str, kind: type, source: str) -> Any:
    if name not in data:
        raise _bad(source, f"field {name!r} is missing")
    value = data[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _bad(source, f"{name} must be a non-negative integer, got {value!r:.60}")
    if not isinstance(value, kind):
        raise _bad(source, f"{name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _hex(value: object, name: str, source: str, *, limit: int, exact: int | None = None) -> bytes:
    if not isinstance(value, str) or len(value) > 2 + 2 * limit or not _HEX.fullmatch(value):
        raise _bad(source, f"{name} must be 0x and lowercase hex of at most {limit} bytes")
    raw = bytes.fromhex(value[2:])
    if exact is not None and len(raw) != exact:
        raise _bad(source, f"{name} must be {exact} bytes, got {len(raw)}")
    return raw


def _quantity(value: object, name: str, source: str) -> int:
    """A JSON-RPC quantity of at most 256 bits: ``0x0``, or 0x and hex without leading zeros."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise _bad(source, f"{name} must be a 0x hex quantity of at most 32 bytes")
    return int(value, 16)


def _nodes(value: object, name: str, source: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PROOF_NODES:
        raise _bad(source, f"{name} must be a list of 1 to {MAX_PROOF_NODES} proof nodes")
    return tuple(_hex(n, f"{name}[{i}]", source, limit=MAX_NODE_BYTES) for i, n in enumerate(value))


def _object(value: object, name: str, source: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(source, f"{name} must be an object")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise _bad(source, f"{name} has unknown field {unknown[0]!r}")
    return value


def _load(raw: bytes, source: str, limit: int) -> Any:
    if len(raw) > limit:
        raise _bad(source, f"{len(raw)} bytes, more than the {limit} a valid file can have")
    try:
        return loads(raw)
    except StrictJSONError as exc:
        raise _bad(source, f"not valid JSON ({exc})", json_problem=exc.problem) from None


@dataclass(frozen=True, slots=True)
class StorageProof:
    """One storage slot of the registry, its value as the proof claims it, and the proof."""

    slot: bytes  # the 32-byte slot position (before hashing into the trie key)
    value: int
    nodes: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": "0x" + self.slot.hex(),
            "value": hex(self.value),
            "proof": ["0x" + n.hex() for n in self.nodes],
        }


@dataclass(frozen=True, slots=True)
class EventClaim:
    """What the registration event says and storage does not hold: carried, never proven."""

    test_set_digest: Digest
    card_digest: Digest
    parent: Digest | None
    registration_tx: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_set_digest": str(self.test_set_digest),
            "card_digest": str(self.card_digest),
            "parent": str(self.parent) if self.parent else None,
            "registration_tx": self.registration_tx,
        }


@dataclass(frozen=True, slots=True)
class ProofBundle:
    digest: Digest
    chain_id: int
    contract: str  # EIP-55
    code_hash: bytes
    block_number: int
    block_hash: bytes
    header: bytes  # the block header, RLP; keccak(header) == block_hash
    account_proof: tuple[bytes, ...]
    storage: tuple[StorageProof, ...]
    event: EventClaim | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "digest": str(self.digest),
            "chain_id": self.chain_id,
            "contract": self.contract,
            "code_hash": "0x" + self.code_hash.hex(),
            "block": {
                "number": self.block_number,
                "hash": "0x" + self.block_hash.hex(),
                "header_rlp": "0x" + self.header.hex(),
            },
            "account_proof": ["0x" + n.hex() for n in self.account_proof],
            "storage_proofs": [s.to_dict() for s in self.storage],
            "event": self.event.to_dict() if self.event else None,
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode("ascii")

    @classmethod
    def parse(cls, raw: bytes, source: str = "proof bundle") -> ProofBundle:
        """The bundle in ``raw``, or InvalidInput naming the first thing wrong with it."""
        data = _object(
            _load(raw, source, MAX_BUNDLE_BYTES),
            "the bundle",
            source,
            {"format", "digest", "chain_id", "contract", "code_hash", "block", "account_proof"}
            | {"storage_proofs", "event"},
        )
        if data.get("format") != FORMAT:
            raise _bad(source, f"format is {data.get('format')!r:.60}, expected {FORMAT!r}")
        contract = _field(data, "contract", str, source)
        if not ADDRESS.fullmatch(contract):
            raise _bad(source, f"contract {contract!r:.60} is not an address")
        block = _object(data.get("block"), "block", source, {"number", "hash", "header_rlp"})
        storage = _field(data, "storage_proofs", list, source)
        if not 0 < len(storage) <= 8:
            raise _bad(source, "storage_proofs must hold 1 to 8 slots")
        slots = []
        for i, item in enumerate(storage):
            item = _object(item, f"storage_proofs[{i}]", source, {"slot", "value", "proof"})
            slots.append(
                StorageProof(
                    slot=_hex(
                        item.get("slot"), f"storage_proofs[{i}].slot", source, limit=32, exact=32
                    ),
                    value=_quantity(item.get("value"), f"storage_proofs[{i}].value", source),
                    nodes=_nodes(item.get("proof"), f"storage_proofs[{i}].proof", source),
                )
            )
        try:
            digest = Digest.parse(_field(data, "digest", str, source))
        except InvalidInput as exc:
            raise _bad(source, f"digest: {exc.message}") from None
        return cls(
            digest=digest,
            chain_id=_field(data, "chain_id", int, source),
            contract=to_checksum_address(contract),
            code_hash=_hex(data.get("code_hash"), "code_hash", source, limit=32, exact=32),
            block_number=_field(block, "number", int, source),
            block_hash=_hex(block.get("hash"), "block.hash", source, limit=32, exact=32),
            header=_hex(
                block.get("header_rlp"), "block.header_rlp", source, limit=MAX_HEADER_BYTES
            ),
            account_proof=_nodes(data.get("account_proof"), "account_proof", source),
            storage=tuple(slots),
            event=_event(data.get("event"), source),
        )


def _event(value: object, source: str) -> EventClaim | None:
    if value is None:
        return None
    data = _object(
        value, "event", source, {"test_set_digest", "card_digest", "parent", "registration_tx"}
    )
    tx = data.get("registration_tx")
    if tx is not None and (not isinstance(tx, str) or not _HASH.fullmatch(tx)):
        raise _bad(source, "event.registration_tx must be a 0x transaction hash or null")
    try:
        return EventClaim(
            test_set_digest=Digest.parse(data.get("test_set_digest")),
            card_digest=Digest.parse(data.get("card_digest")),
            parent=parse_optional(data.get("parent")),
            registration_tx=tx,
        )
    except InvalidInput as exc:
        raise _bad(source, f"event: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class TrustedBlocks:
    """Block hashes a clinic pinned (from its own node, an explorer it trusts, a colleague's
    signed note): the only roots a bundle is checked against. ``contract``, when given, is the
    registry the clinic trusts on that chain."""

    chain_id: int
    contract: str | None
    blocks: dict[int, bytes]  # number -> hash

    @classmethod
    def parse(cls, raw: bytes, source: str = "trusted blocks file") -> TrustedBlocks:
        data = _object(
            _load(raw, source, MAX_TRUSTED_FILE_BYTES),
            "the file",
            source,
            {"format", "chain_id", "contract", "blocks"},
        )
        if data.get("format", TRUSTED_FORMAT) != TRUSTED_FORMAT:
            raise _bad(source, f"format is {data.get('format')!r:.60}, expected {TRUSTED_FORMAT!r}")
        contract = data.get("contract")
        if contract is not None and (
            not isinstance(contract, str) or not ADDRESS.fullmatch(contract)
        ):
            raise _bad(source, f"contract {contract!r:.60} is not an address")
        entries = _field(data, "blocks", list, source)
        if not entries:
            raise _bad(source, "blocks is empty: pin at least one block number and hash")
        blocks: dict[int, bytes] = {}
        for i, entry in enumerate(entries):
            entry = _object(entry, f"blocks[{i}]", source, {"number", "hash"})
            number = _field(entry, "number", int, source)
            hash_ = _hex(entry.get("hash"), f"blocks[{i}].hash", source, limit=32, exact=32)
            if blocks.get(number, hash_) != hash_:
                raise _bad(source, f"block {number} is pinned twice with two hashes")
            blocks[number] = hash_
        return cls(
            chain_id=_field(data, "chain_id", int, source),
            contract=to_checksum_address(contract) if contract else None,
            blocks=blocks,
        )

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "format": TRUSTED_FORMAT,
            "chain_id": self.chain_id,
            "blocks": [
                {"number": n, "hash": "0x" + h.hex()} for n, h in sorted(self.blocks.items())
            ],
        }
        if self.contract:
            data["contract"] = self.contract
        return (json.dumps(data, indent=1) + "\n").encode("ascii")

    @property
    def newest(self) -> int:
        return max(self.blocks)
