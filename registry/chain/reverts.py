"""One Python exception per custom error of the contract, and the decoder from revert bytes.

Revert data arrives in different shapes (eth-tester puts the bytes in an exception message, a real
node returns them in the JSON-RPC error's ``data``); ``rpc.py`` gets the bytes (from eth-tester's
message with ``eth_tester_revert_data``) and ``RevertDecoder`` turns them into these typed
exceptions with their arguments as fields.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterable
from typing import Any, ClassVar

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from registry.chain.abi import abi_type
from registry.core.digest import Digest
from registry.core.times import iso_utc
from registry.errors import ContractRevert


def _role_name(role: int) -> str:
    return {0: "none", 1: "registrar", 2: "revoker", 3: "evaluator"}.get(role, f"role {role}")


class RegistryContractError(ContractRevert):
    """Base of the decoded custom errors; ``solidity_name`` is the error's name in the ABI."""

    solidity_name: ClassVar[str] = ""


class MissingRole(RegistryContractError):
    code = "missing_role"
    solidity_name = "ModelRegistryMissingRole"

    def __init__(self, account: str, role: int) -> None:
        self.account, self.role = account, _role_name(role)
        super().__init__(
            f"{account} does not hold the {self.role} role; ask the registry admin to grant it "
            f"(`registry roles grant {self.role} {account}`)",
            account=account,
            role=self.role,
        )


class NotAdmin(RegistryContractError):
    code = "not_admin"
    solidity_name = "ModelRegistryNotAdmin"

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(
            f"{account} is not the registry admin; only the admin manages roles",
            account=account,
        )


class NotPendingAdmin(RegistryContractError):
    code = "not_pending_admin"
    solidity_name = "ModelRegistryNotPendingAdmin"

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(
            f"{account} is not the proposed admin; the current admin must propose it first",
            account=account,
        )


class ZeroAddress(RegistryContractError):
    code = "zero_address"
    solidity_name = "ModelRegistryZeroAddress"

    def __init__(self) -> None:
        super().__init__("the zero address cannot hold a role or be admin; give a real address")


class ZeroDigest(RegistryContractError):
    code = "zero_digest"
    solidity_name = "ModelRegistryZeroDigest"

    def __init__(self) -> None:
        super().__init__("the zero digest identifies no checkpoint; hash the checkpoint file")


class AlreadyRegistered(RegistryContractError):
    code = "already_registered"
    solidity_name = "ModelRegistryAlreadyRegistered"

    def __init__(self, digest: bytes, registrant: str) -> None:
        self.digest, self.registrant = Digest.from_bytes(digest), registrant
        super().__init__(
            f"checkpoint {self.digest.short} is already registered by {registrant}; register "
            "the new checkpoint's digest, or revoke this one first",
            digest=str(self.digest),
            registrant=registrant,
        )


class UnknownModel(RegistryContractError):
    code = "unknown_model"
    solidity_name = "ModelRegistryUnknownModel"

    def __init__(self, digest: bytes) -> None:
        self.digest = Digest.from_bytes(digest)
        super().__init__(
            f"no checkpoint {self.digest.short} is registered; check the digest "
            "(`registry hash FILE`)",
            digest=str(self.digest),
        )


class AccuracyOutOfRange(RegistryContractError):
    code = "accuracy_out_of_range"
    solidity_name = "ModelRegistryAccuracyOutOfRange"

    def __init__(self, accuracy_bps: int) -> None:
        self.accuracy_bps = accuracy_bps
        super().__init__(
            f"accuracy {accuracy_bps} basis points is above 10000 (100 %)",
            accuracy_bps=accuracy_bps,
        )


class ZeroTestSetDigest(RegistryContractError):
    code = "zero_test_set_digest"
    solidity_name = "ModelRegistryZeroTestSetDigest"

    def __init__(self) -> None:
        super().__init__(
            "an accuracy needs the digest of the test set it was measured on; it was zero"
        )


class ZeroCardDigest(RegistryContractError):
    code = "zero_card_digest"
    solidity_name = "ModelRegistryZeroCardDigest"

    def __init__(self) -> None:
        super().__init__("the model card digest was zero; anchor the card's canonical digest")


class InvalidParent(RegistryContractError):
    code = "invalid_parent"
    solidity_name = "ModelRegistryInvalidParent"

    def __init__(self, digest: bytes, parent: bytes) -> None:
        self.digest, self.parent = Digest.from_bytes(digest), Digest.from_bytes(parent)
        super().__init__(
            f"parent {self.parent.short} of {self.digest.short} is not a registered checkpoint "
            "(or is the checkpoint itself); register the parent first or omit it",
            digest=str(self.digest),
            parent=str(self.parent),
        )


class AlreadyRevoked(RegistryContractError):
    code = "already_revoked"
    solidity_name = "ModelRegistryAlreadyRevoked"

    def __init__(self, digest: bytes, revoked_at: int) -> None:
        self.digest, self.revoked_at = Digest.from_bytes(digest), revoked_at
        when = iso_utc(revoked_at)
        super().__init__(
            f"checkpoint {self.digest.short} was already revoked at {when}; revocation is one-way",
            digest=str(self.digest),
            revoked_at=revoked_at,
        )


class InvalidReason(RegistryContractError):
    code = "invalid_reason"
    solidity_name = "ModelRegistryInvalidReason"

    def __init__(self, reason: int) -> None:
        self.reason = reason
        super().__init__(
            f"revocation reason code {reason} is not known; use 1-7 or 255 (other)",
            reason=reason,
        )


class InvalidReplacement(RegistryContractError):
    code = "invalid_replacement"
    solidity_name = "ModelRegistryInvalidReplacement"

    def __init__(self, digest: bytes, replacement: bytes) -> None:
        self.digest = Digest.from_bytes(digest)
        self.replacement = Digest.from_bytes(replacement)
        super().__init__(
            f"replacement {self.replacement.short} for {self.digest.short} is not a registered, "
            "unrevoked checkpoint other than the one revoked; register it first or omit it",
            digest=str(self.digest),
            replacement=str(self.replacement),
        )


class NotAllowedToRevoke(RegistryContractError):
    code = "not_allowed_to_revoke"
    solidity_name = "ModelRegistryNotAllowedToRevoke"

    def __init__(self, account: str, digest: bytes) -> None:
        self.account, self.digest = account, Digest.from_bytes(digest)
        super().__init__(
            f"{account} may not revoke {self.digest.short}: only a revoker or its registrant may",
            account=account,
            digest=str(self.digest),
        )


def _root_hex(root: bytes) -> str:
    return "0x" + bytes(root).hex()


class EmptyBatch(RegistryContractError):
    code = "empty_batch"
    solidity_name = "ModelRegistryEmptyBatch"

    def __init__(self) -> None:
        super().__init__("a batch of 0 checkpoints anchors nothing; give at least one checkpoint")


class UnknownBatch(RegistryContractError):
    code = "unknown_batch"
    solidity_name = "ModelRegistryUnknownBatch"

    def __init__(self, root: bytes) -> None:
        self.root = _root_hex(root)
        super().__init__(
            f"no batch with root {self.root} is registered; check the manifest's root",
            root=self.root,
        )


class BatchAlreadyRegistered(RegistryContractError):
    code = "batch_already_registered"
    solidity_name = "ModelRegistryBatchAlreadyRegistered"

    def __init__(self, root: bytes, registrant: str) -> None:
        self.root, self.registrant = _root_hex(root), registrant
        super().__init__(
            f"batch {self.root} is already registered by {registrant}; a batch is anchored once",
            root=self.root,
            registrant=registrant,
        )


class InvalidProof(RegistryContractError):
    code = "invalid_proof"
    solidity_name = "ModelRegistryInvalidProof"

    def __init__(self, root: bytes, digest: bytes) -> None:
        self.root, self.digest = _root_hex(root), Digest.from_bytes(digest)
        super().__init__(
            f"the proof does not show checkpoint {self.digest.short} under batch {self.root}; "
            "take the proof and the leaf from that batch's manifest",
            root=self.root,
            digest=str(self.digest),
        )


class BatchRevoked(RegistryContractError):
    code = "batch_revoked"
    solidity_name = "ModelRegistryBatchRevoked"

    def __init__(self, root: bytes, reason: int) -> None:
        self.root, self.reason = _root_hex(root), reason
        super().__init__(
            f"batch {self.root} was already revoked (reason code {reason}); revocation is one-way",
            root=self.root,
            reason=reason,
        )


class NotAllowedToRevokeBatch(RegistryContractError):
    code = "not_allowed_to_revoke_batch"
    solidity_name = "ModelRegistryNotAllowedToRevokeBatch"

    def __init__(self, account: str, root: bytes) -> None:
        self.account, self.root = account, _root_hex(root)
        super().__init__(
            f"{account} may not revoke batch {self.root} or its checkpoints: only a revoker or "
            "the batch's registrant may",
            account=account,
            root=self.root,
        )


class ExpiredSignature(RegistryContractError):
    code = "signature_expired"
    solidity_name = "ModelRegistryExpiredSignature"

    def __init__(self, deadline: int, now: int) -> None:
        self.deadline, self.now = deadline, now
        super().__init__(
            f"the signed registration expired at {iso_utc(deadline)} and the chain's time is "
            f"{iso_utc(now)}; the registrar signs a new request with a later --deadline",
            deadline=deadline,
            now=now,
        )


class InvalidNonce(RegistryContractError):
    code = "invalid_nonce"
    solidity_name = "ModelRegistryInvalidNonce"

    def __init__(self, registrar: str, nonce: int, expected: int) -> None:
        self.registrar, self.nonce, self.expected = registrar, nonce, expected
        lane, sequence, wanted = nonce >> 64, nonce & (2**64 - 1), expected & (2**64 - 1)
        super().__init__(
            f"nonce {nonce} (lane {lane}, sequence {sequence}) is not {registrar}'s next one in "
            f"its lane, which is sequence {wanted}: the request was already submitted, "
            "cancelled, or an earlier one of its lane must go first",
            registrar=registrar,
            nonce=str(nonce),
            expected=str(expected),
        )


class InvalidSigner(RegistryContractError):
    code = "invalid_signer"
    solidity_name = "ModelRegistryInvalidSigner"

    def __init__(self, registrar: str, recovered: str) -> None:
        self.registrar, self.recovered = registrar, recovered
        who = (
            "is malformed, or the registrar's ERC-1271 wallet refused it"
            if int(recovered, 16) == 0
            else f"was made by {recovered}"
        )
        super().__init__(
            f"the signature {who}, not by the registrar {registrar}, over this registration, "
            "chain, contract and nonce; the registrar signs the request again",
            registrar=registrar,
            recovered=recovered,
        )


class SelfAttestation(RegistryContractError):
    code = "self_attestation"
    solidity_name = "ModelRegistrySelfAttestation"

    def __init__(self, digest: bytes, evaluator: str) -> None:
        self.digest, self.evaluator = Digest.from_bytes(digest), evaluator
        super().__init__(
            f"{evaluator} registered checkpoint {self.digest.short} and cannot attest it; an "
            "evaluator other than its registrant must",
            digest=str(self.digest),
            evaluator=evaluator,
        )


class AlreadyAttested(RegistryContractError):
    code = "already_attested"
    solidity_name = "ModelRegistryAlreadyAttested"

    def __init__(self, digest: bytes, evaluator: str, attested_at: int) -> None:
        self.digest, self.evaluator = Digest.from_bytes(digest), evaluator
        self.attested_at = attested_at
        super().__init__(
            f"{evaluator} already attested checkpoint {self.digest.short} at "
            f"{iso_utc(attested_at)}; withdraw that attestation first to replace it",
            digest=str(self.digest),
            evaluator=evaluator,
            attested_at=attested_at,
        )


class NoAttestation(RegistryContractError):
    code = "no_attestation"
    solidity_name = "ModelRegistryNoAttestation"

    def __init__(self, digest: bytes, evaluator: str) -> None:
        self.digest, self.evaluator = Digest.from_bytes(digest), evaluator
        super().__init__(
            f"{evaluator} has no standing attestation of checkpoint {self.digest.short}; only "
            "the evaluator who made one may withdraw it, once",
            digest=str(self.digest),
            evaluator=evaluator,
        )


class RevokedModel(RegistryContractError):
    code = "revoked_model"
    solidity_name = "ModelRegistryRevokedModel"

    def __init__(self, digest: bytes, revoked_at: int) -> None:
        self.digest, self.revoked_at = Digest.from_bytes(digest), revoked_at
        super().__init__(
            f"checkpoint {self.digest.short} was revoked at {iso_utc(revoked_at)} and cannot be "
            "attested; attest its replacement instead",
            digest=str(self.digest),
            revoked_at=revoked_at,
        )


class AuditLogNotGrowing(RegistryContractError):
    code = "audit_log_not_growing"
    solidity_name = "ModelRegistryAuditLogNotGrowing"

    def __init__(self, service: str, size: int, anchored_size: int) -> None:
        self.service, self.size, self.anchored_size = service, size, anchored_size
        super().__init__(
            f"{service} already anchored its audit log at {anchored_size} entries; an anchor of "
            f"{size} must be larger: anchor once the log has grown",
            service=service,
            size=size,
            anchored_size=anchored_size,
        )


class UndecodedRevert(ContractRevert):
    """A revert whose data matches no custom error of the contract (e.g. out of gas)."""

    code = "contract_revert"

    def __init__(self, data: bytes) -> None:
        self.data = data
        super().__init__(
            f"the contract reverted with unrecognised data 0x{data.hex()[:80]}",
            data="0x" + data.hex(),
        )


def eth_tester_revert_data(exc: Exception) -> bytes | None:
    """The revert bytes of eth-tester's ``TransactionFailed`` (None for any other exception).

    eth-tester raises ``TransactionFailed('execution reverted: b"..."')``, the bytes' repr in its
    message (or, from some paths, the bytes themselves as the argument); a revert without data
    gives ``b""``.
    """
    if exc.__class__.__name__ != "TransactionFailed":
        return None
    for arg in exc.args:
        if isinstance(arg, bytes | bytearray):
            return bytes(arg)
        if isinstance(arg, str) and ": b" in arg:
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(arg.split(": ", 1)[1])
                if isinstance(value, bytes):
                    return value
    return b""


class RevertDecoder:
    """Maps 4-byte selectors of the ABI's custom errors to the classes above."""

    def __init__(self, abi: Iterable[dict[str, Any]]) -> None:
        by_name = {cls.solidity_name: cls for cls in RegistryContractError.__subclasses__()}
        self._by_selector: dict[bytes, tuple[type[RegistryContractError], list[str]]] = {}
        self.unmapped: list[str] = []
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = [abi_type(i) for i in entry["inputs"]]
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            cls = by_name.get(entry["name"])
            if cls is None:
                self.unmapped.append(entry["name"])
                continue
            self._by_selector[selector] = (cls, types)

    def decode(self, data: bytes) -> ContractRevert:
        found = self._by_selector.get(data[:4])
        if found is None:
            return UndecodedRevert(data)
        cls, types = found
        try:
            values = abi_decode(types, data[4:])
        except Exception:
            return UndecodedRevert(data)
        args = [
            to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, values, strict=True)
        ]
        return cls(*args)
