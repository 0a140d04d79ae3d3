"""One checkpoint's inclusion proof, cut out of its batch's manifest.

A manifest holds every leaf of a batch; whoever hands over one file needs to hand over only its
leaf, the sibling hashes up to the root, and the root itself. That is this file: small, plain JSON
(``registry-batch-proof-v1``), checkable with OpenZeppelin's ``MerkleProof`` or its JavaScript
library, since the leaf values are written as a ``standard-v1`` dump writes them. Nothing in it is
trusted: the verifier recomputes the root from the leaf and the proof, and the chain says whether
that root is an anchored, unrevoked batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from modelformat.strictjson import StrictJSONError
from modelformat.strictjson import loads as strict_loads
from registry.core.abi_static import json_value, normalise, parse_types, shown
from registry.core.batches import Manifest, ModelLeaf, request_of
from registry.core.digest import Digest
from registry.core.merkle_batch import MODEL_LEAF_ENCODING
from registry.core.merkle_batch import verify as verify_proof
from registry.errors import InvalidInput

PROOF_FORMAT: Final = "registry-batch-proof-v1"
# A proof for a tree of 2^64 leaves has 64 siblings; anything longer is not a proof.
MAX_PROOF_BYTES = 64 * 1024
MAX_SIBLINGS = 64


@dataclass(frozen=True, slots=True)
class BatchProof:
    """A leaf of batch ``root``, its siblings up to the root, and where the manifest had it."""

    root: bytes
    leaf: ModelLeaf
    proof: tuple[bytes, ...]
    position: int
    manifest_digest: Digest | None = None

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.leaf[0])

    @classmethod
    def from_manifest(cls, manifest: Manifest, digest: Digest) -> BatchProof:
        """The proof of ``digest``'s leaf in ``manifest``; bad input if it holds no such leaf."""
        position = manifest.position(digest)
        if position is None:
            raise InvalidInput(
                f"checkpoint {digest.short} is not in the manifest of batch "
                f"0x{manifest.root.hex()}; give the manifest of the batch that anchored it",
                digest=str(digest),
                root="0x" + manifest.root.hex(),
            )
        leaf: ModelLeaf = manifest.tree.values[position]  # type: ignore[assignment]
        return cls(
            manifest.root,
            leaf,
            tuple(manifest.tree.proof(position)),
            position,
            manifest.digest,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "root": "0x" + self.root.hex(),
            "leafEncoding": list(MODEL_LEAF_ENCODING),
            "leaf": [json_value(v) for v in self.leaf],
            "proof": ["0x" + node.hex() for node in self.proof],
            "position": self.position,
            "manifest_digest": str(self.manifest_digest) if self.manifest_digest else None,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes, *, source: str = "proof") -> BatchProof:
        """A proof from its bytes: strict JSON, this format, a valid record as its leaf, and
        siblings that lead from that leaf to the root it names (a forged proof is refused here,
        before any chain is asked)."""
        if len(data) > MAX_PROOF_BYTES:
            raise InvalidInput(
                f"{source} is {len(data)} bytes, over the {MAX_PROOF_BYTES} a proof may be; "
                "give one checkpoint's proof (`registry batch proof`), not a manifest",
                source=source,
            )
        try:
            raw = strict_loads(data)
        except (StrictJSONError, ValueError) as exc:
            raise InvalidInput(
                f"{source} is not strict JSON ({exc}); give the file `registry batch proof` wrote",
                source=source,
            ) from exc
        if not isinstance(raw, Mapping) or raw.get("format") != PROOF_FORMAT:
            found = raw.get("format") if isinstance(raw, Mapping) else type(raw).__name__
            raise InvalidInput(
                f"{source} is not a {PROOF_FORMAT} file (format {shown(found)}); give the file "
                "`registry batch proof` wrote",
                source=source,
            )
        if raw.get("leafEncoding", list(MODEL_LEAF_ENCODING)) != list(MODEL_LEAF_ENCODING):
            raise InvalidInput(
                f"{source} has leaves {shown(raw.get('leafEncoding'))}, not a batch of models",
                source=source,
            )
        siblings = raw.get("proof")
        if not isinstance(siblings, list) or len(siblings) > MAX_SIBLINGS:
            raise InvalidInput(
                f"{source}'s proof is not a list of at most {MAX_SIBLINGS} hashes",
                source=source,
            )
        position = raw.get("position", -1)
        if not isinstance(position, int) or isinstance(position, bool):
            raise InvalidInput(f"{source}'s position {shown(position)} is not an integer")
        leaf: ModelLeaf = normalise(parse_types(MODEL_LEAF_ENCODING), raw.get("leaf"))  # type: ignore[assignment]
        request_of(leaf)  # a leaf is a record: accuracy range, no zero digests
        root = raw.get("root")
        if not isinstance(root, str) or not verify_proof(root, leaf, siblings):
            raise InvalidInput(
                f"the proof in {source} does not lead from checkpoint "
                f"{Digest.from_bytes(leaf[0]).short} to root {shown(root)}: it was altered, or "
                "belongs to another batch",
                source=source,
                root=root if isinstance(root, str) else shown(root),
            )
        manifest_digest = raw.get("manifest_digest")
        return cls(
            bytes.fromhex(root[2:]),
            leaf,
            tuple(bytes.fromhex(node[2:]) for node in siblings),
            position,
            Digest.parse(manifest_digest) if manifest_digest is not None else None,
        )
