"""A prediction's receipt and its inclusion proof: read strictly, checked without the log.

A receipt (in every ``/predict`` answer) says where the answer's audit entry sits in the log's
Merkle tree (``audit_tree``): its global index and leaf hash, the model and the verdict's block.
An auditor with the receipt, a proof from ``GET /audit/proof/{index}`` and the chain checks:

1. the proof's entry is the receipt's: same index, its line hashes to the receipt's leaf, and the
   line itself (the very bytes hashed) is a ``predict`` entry that ``predicted`` with the
   receipt's model digest and verdict block, so a receipt cannot claim another model than the
   entry records;
2. the model is the one asked about (``--model``), when one is;
3. the audit path leads from that leaf to the root the *pinned* service anchored on chain for
   the proof's size (``merkle_log.verify_inclusion``: ``O(log n)`` hashes). The receipt names
   its service too, but a verifier never takes it from there: a receipt naming another service
   is refused, never followed.

"No" is data: ``ReceiptCheck(verified=False, reason, message)``. Input that is not a receipt or
a proof at all (not JSON, a field missing or mistyped, a hash that is not 64 hex) raises
``InvalidInput``: the command line's exit 2.

``check_anchors`` is the other direction: every root a service anchored, checked against the
local log's own tree at that size, and consecutive anchors against each other with a
consistency proof, so a log rewritten after an anchor is caught even when its hash chain was
recomputed with the key. It hashes the local log once into its perfect subtrees
(``merkle_log.perfect_levels``); each anchor's root and proof then cost ``O(log n)``, not a pass
over the log per anchor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelformat import strictjson
from registry.core import merkle_log
from registry.core.address import parse_address
from registry.core.audit_chain import parse_line
from registry.core.audit_tree import log_files
from registry.core.digest import HEX64, Digest
from registry.errors import AuditLogCorrupt, InvalidInput

__all__ = [
    "AnchorCheck",
    "InclusionProof",
    "Receipt",
    "ReceiptCheck",
    "check_anchors",
    "check_entry",
    "check_inclusion",
    "load_json",
]


def load_json(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from ``raw`` (strict: no duplicate keys, no NaN), or ``InvalidInput``."""
    try:
        value = strictjson.loads(raw)
    except (strictjson.StrictJSONError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"the {what} is not JSON ({exc}); give the file as saved", what=what
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the {what} is not a JSON object; give the file as saved", what=what)
    return value


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput(
            f"the {what} has no valid {name!r} (found {strictjson.short(value)}); give the "
            f"{what} as the service returned it",
            what=what,
            field=name,
        )
    if isinstance(value, int) and value < 0:
        raise InvalidInput(f"the {what}'s {name!r} is negative", what=what, field=name)
    return value


def _hash(value: object, what: str, name: str) -> bytes:
    if not isinstance(value, str) or HEX64.fullmatch(value.lower()) is None:
        raise InvalidInput(
            f"the {what}'s {name} {strictjson.short(value)} is not a SHA-256 hash (64 hex "
            "digits); the file was damaged or edited",
            what=what,
            field=name,
        )
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Receipt:
    log_index: int
    leaf_hash: bytes
    model_digest: Digest
    verdict_block: int
    service: str | None
    chain_id: int
    contract: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Receipt:
        """A receipt object, or a whole ``/predict`` answer holding one."""
        if isinstance(data.get("receipt"), dict):
            data = data["receipt"]
        what = "receipt"
        service = data.get("service")
        return cls(
            log_index=_field(data, "log_index", int, what),
            leaf_hash=_hash(data.get("leaf_hash"), what, "leaf_hash"),
            model_digest=Digest.parse(_field(data, "model_digest", str, what)),
            verdict_block=_field(data, "verdict_block", int, what),
            service=None if service is None else parse_address(str(service), "receipt service"),
            chain_id=_field(data, "chain_id", int, what),
            contract=parse_address(_field(data, "contract", str, what), "receipt contract"),
        )


@dataclass(frozen=True)
class InclusionProof:
    """What ``GET /audit/proof/{index}`` returns: the entry's line, its index, the tree size and
    the audit path (the root in it is the service's word; the verifier reads the chain's)."""

    log_index: int
    size: int
    entry: bytes
    path: tuple[bytes, ...]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> InclusionProof:
        what = "proof"
        path = data.get("proof")
        if not isinstance(path, list) or len(path) > 64:
            raise InvalidInput(
                "the proof has no valid 'proof' list of hashes; give the proof as the service "
                "returned it",
                what=what,
                field="proof",
            )
        entry = _field(data, "entry", str, what)
        try:
            line = entry.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidInput("the proof's entry is not an audit line (not ASCII)") from None
        return cls(
            log_index=_field(data, "log_index", int, what),
            size=_field(data, "size", int, what),
            entry=line,
            path=tuple(_hash(h, what, f"proof[{i}]") for i, h in enumerate(path)),
        )


@dataclass(frozen=True)
class ReceiptCheck:
    """The answer: ``reason`` is ``verified`` or names the first check that failed."""

    verified: bool
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "reason": self.reason, "message": self.message}


def _no(reason: str, message: str) -> ReceiptCheck:
    return ReceiptCheck(False, reason, message)


def check_entry(
    receipt: Receipt, proof: InclusionProof, *, service: str, model: Digest | None = None
) -> ReceiptCheck | None:
    """The checks that need no chain (1 and 2 of the module docstring, and the pinned service):
    a refusal, or None when the receipt may go on to the chain."""
    if receipt.service != service:
        return _no(
            "other_service",
            f"the receipt names the anchoring service {receipt.service}, not {service} (the "
            "one you pinned); a receipt never chooses whose anchors it is checked against",
        )
    if model is not None and receipt.model_digest != model:
        return _no(
            "other_model",
            f"the receipt is for model {receipt.model_digest}, not {model}",
        )
    if proof.log_index != receipt.log_index:
        return _no(
            "other_entry",
            f"the proof is for entry {proof.log_index}, the receipt names entry "
            f"{receipt.log_index}; fetch GET /audit/proof/{receipt.log_index}",
        )
    if merkle_log.leaf_hash(proof.entry) != receipt.leaf_hash:
        return _no(
            "entry_mismatch",
            f"the proof's entry does not hash to the receipt's leaf {receipt.leaf_hash.hex()[:12]}…",
        )
    try:
        line = parse_line(proof.entry)
    except ValueError as exc:
        return _no("entry_mismatch", f"the proof's entry is not an audit line ({exc})")
    recorded = (line.get("event"), line.get("outcome"), line.get("digest"), line.get("block"))
    expected = ("predict", "predicted", str(receipt.model_digest), receipt.verdict_block)
    if recorded != expected:
        return _no(
            "entry_mismatch",
            f"the entry records {recorded[0]!r} with outcome {recorded[1]!r}, model "
            f"{recorded[2]} and block {recorded[3]}; the receipt claims a prediction by "
            f"{receipt.model_digest} at block {receipt.verdict_block}",
        )
    return None


def check_inclusion(
    receipt: Receipt, proof: InclusionProof, anchored_root: bytes | None, *, service: str
) -> ReceiptCheck:
    """Check 3: the audit path from the receipt's leaf to ``anchored_root`` (None: the service
    anchored no root at the proof's size)."""
    if anchored_root is None:
        return _no(
            "not_anchored",
            f"{service} anchored no audit root for {proof.size} entries on this chain; fetch a "
            "proof at an anchored size (GET /audit/proof/{index} picks the latest)",
        )
    if not merkle_log.verify_inclusion(
        receipt.leaf_hash, receipt.log_index, proof.size, list(proof.path), anchored_root
    ):
        return _no(
            "proof_invalid",
            f"the proof does not lead from entry {receipt.log_index} to the root {service} "
            f"anchored for {proof.size} entries ({anchored_root.hex()[:12]}…): it was forged, "
            "cut short or belongs to another log",
        )
    return ReceiptCheck(
        True,
        "verified",
        f"entry {receipt.log_index} (a prediction by {receipt.model_digest} at block "
        f"{receipt.verdict_block}) is in the audit log {service} anchored at {proof.size} "
        "entries",
    )


@dataclass(frozen=True)
class AnchorCheck:
    """An anchor of the service, compared with the local log: ``problem`` None when it holds."""

    size: int
    root: bytes
    block: int
    local_root: bytes | None
    consistent_with_previous: bool | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "block": self.block,
            "local_root": self.local_root.hex() if self.local_root else None,
            "consistent_with_previous": self.consistent_with_previous,
            "problem": self.problem,
        }


def _local_leaves(log: Path) -> list[bytes]:
    """The leaf hash of every line of every file of the log, oldest first (a sealed file up to
    its sealed entries)."""
    leaves: list[bytes] = []
    for log_file in log_files(log):
        with log_file.path.open("rb") as f:
            for number, raw in enumerate(f):
                if log_file.entries is not None and number >= log_file.entries:
                    break
                if not raw.endswith(b"\n"):
                    raise AuditLogCorrupt(str(log_file.path), number + 1, "incomplete last line")
                leaves.append(merkle_log.leaf_hash(raw[:-1]))
    return leaves


def check_anchors(log: Path, anchors: Iterable[tuple[int, bytes, int]]) -> list[AnchorCheck]:
    """Each anchor ``(size, root, block)`` against the local log's root at that size, and each
    against the one before it with a consistency proof built from the local leaves."""
    leaves = _local_leaves(log)
    levels = merkle_log.perfect_levels(leaves)

    def node(level: int, index: int) -> bytes:
        return levels[level][index]

    ordered = sorted(anchors)
    checks: list[AnchorCheck] = []
    previous: tuple[int, bytes] | None = None
    for size, root, block in ordered:
        local = merkle_log.root_from_nodes(node, size) if size <= len(leaves) else None
        consistent = _consistent(node, len(leaves), previous, size, root)
        if local is None:
            problem = (
                f"the chain holds an anchor of {size} entries, but the local log has only "
                f"{len(leaves)}: entries were removed from the log after they were anchored"
            )
        elif local != root:
            problem = (
                f"the local log's first {size} entries hash to {local.hex()[:12]}…, not to the "
                f"anchored {root.hex()[:12]}…: the log was rewritten after block {block}"
            )
        elif consistent is False:
            problem = "this anchor is not an extension of the one before it"
        else:
            problem = None
        checks.append(AnchorCheck(size, root, block, local, consistent, problem))
        previous = (size, root)
    return checks


def _consistent(
    node: merkle_log.NodeReader,
    held: int,
    previous: tuple[int, bytes] | None,
    size: int,
    root: bytes,
) -> bool | None:
    """Whether the anchor before (size, root) is a prefix of it, proved from the local log's
    ``held`` leaves; None for the first anchor, or when the local log is too short for it."""
    if previous is None or size > held:
        return None
    old_size, old_root = previous
    proof, _, _ = merkle_log.consistency_proof_from_nodes(node, size, old_size)
    return merkle_log.verify_consistency(old_size, size, proof, old_root, root)
