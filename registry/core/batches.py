"""A batch of models: its leaves, its manifest and what the chain keeps of it.

One ``registerBatch`` anchors the Merkle root of many records; each checkpoint is later shown to be
in the batch by the batch's manifest, the tree's OpenZeppelin ``standard-v1`` dump. The manifest
is itself anchored by its SHA-256 (``manifestDigest``), so a manifest that is not the one the
registrant published is refused before any proof in it is read. A batch never holds the same
checkpoint twice: one digest, one record, whichever way it was anchored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelformat.strictjson import StrictJSONError
from modelformat.strictjson import loads as strict_loads
from registry.core.digest import ZERO, Digest, digest_bytes
from registry.core.merkle_batch import MODEL_LEAF_ENCODING, StandardMerkleTree
from registry.core.records import RegisterRequest, RevocationReason
from registry.core.times import iso_utc
from registry.errors import InvalidInput

# A manifest of a million leaves is about 200 MB of JSON; nothing larger is read.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

ModelLeaf = tuple[bytes, int, bytes, bytes, bytes]


def leaf_of(request: RegisterRequest) -> ModelLeaf:
    """The leaf of one record, in ``MODEL_LEAF_ENCODING`` order (a first version's parent: 0)."""
    return (
        request.digest.raw,
        request.accuracy_bps,
        request.test_set_digest.raw,
        request.card_digest.raw,
        (request.parent or ZERO).raw,
    )


def request_of(leaf: Sequence[Any]) -> RegisterRequest:
    """The record a leaf states, with RegisterRequest's checks (range, zero digests)."""
    digest, accuracy, test_set, card, parent = leaf
    return RegisterRequest(
        Digest.from_bytes(digest),
        int(accuracy),
        Digest.from_bytes(test_set),
        Digest.from_bytes(card),
        None if bytes(parent) == bytes(32) else Digest.from_bytes(parent),
    )


def build_tree(requests: Sequence[RegisterRequest]) -> StandardMerkleTree:
    """The tree of a batch; an empty batch or a digest given twice is refused."""
    if not requests:
        raise InvalidInput("a batch needs at least one checkpoint", leaves=0)
    seen: set[Digest] = set()
    for request in requests:
        if request.digest in seen:
            raise InvalidInput(
                f"checkpoint {request.digest.short} is twice in the batch; give each once",
                digest=str(request.digest),
            )
        seen.add(request.digest)
    return StandardMerkleTree.of([leaf_of(r) for r in requests], MODEL_LEAF_ENCODING)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A batch manifest as read: its tree and the SHA-256 of its exact bytes."""

    tree: StandardMerkleTree
    digest: Digest

    @property
    def root(self) -> bytes:
        return self.tree.root

    @classmethod
    def parse(cls, data: bytes, *, source: str = "manifest") -> Manifest:
        """A manifest from its bytes: strict JSON, a standard-v1 dump whose every hash checks, of
        model leaves, each digest once and each leaf a valid record."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidInput(
                f"{source} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} a manifest may be",
                source=source,
            )
        try:
            dump = strict_loads(data)
        except (StrictJSONError, ValueError) as exc:
            raise InvalidInput(
                f"{source} is not strict JSON ({exc}); give the manifest `register --batch` wrote",
                source=source,
            ) from exc
        tree = StandardMerkleTree.load(dump)
        if tree.leaf_encoding != MODEL_LEAF_ENCODING:
            raise InvalidInput(
                f"{source} has leaves {list(tree.leaf_encoding)}, not a batch of models "
                f"{list(MODEL_LEAF_ENCODING)}",
                source=source,
            )
        digests = [leaf[0] for leaf in tree.values]
        if len(set(digests)) != len(digests):
            raise InvalidInput(f"{source} holds a checkpoint twice", source=source)
        for leaf in tree.values:
            request_of(leaf)
        return cls(tree, digest_bytes(data))

    def position(self, digest: Digest) -> int | None:
        """The index of ``digest``'s leaf among the manifest's values, None if absent."""
        for i, leaf in enumerate(self.tree.values):
            if leaf[0] == digest.raw:
                return i
        return None


def manifest_bytes(tree: StandardMerkleTree) -> bytes:
    """The manifest file of a tree: its dump as compact, key-sorted JSON (what gets hashed)."""
    return json.dumps(tree.dump(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch as the chain knows it: storage (registrant, times, revocation) and its event."""

    root: bytes
    registrant: str
    registered_at: int
    registered_block: int
    count: int
    manifest_digest: Digest
    registration_tx: str | None
    revocation_reason: RevocationReason | None = None

    @property
    def root_hex(self) -> str:
        return "0x" + self.root.hex()

    @property
    def valid(self) -> bool:
        return self.revocation_reason is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root_hex,
            "registrant": self.registrant,
            "registered_at": iso_utc(self.registered_at),
            "registered_block": self.registered_block,
            "count": self.count,
            "manifest_digest": str(self.manifest_digest),
            "registration_tx": self.registration_tx,
            "revoked": self.revocation_reason is not None,
            "revocation_reason": self.revocation_reason.label if self.revocation_reason else None,
        }


@dataclass(frozen=True, slots=True)
class BatchPosition:
    """Where a verified checkpoint sits: its batch's root and its index among the leaves."""

    root: bytes
    position: int
    batch: BatchRecord | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": "0x" + self.root.hex(),
            "position": self.position,
            "batch": self.batch.to_dict() if self.batch else None,
        }
