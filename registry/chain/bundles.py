"""Checking a proof bundle with no node: trusted block hash → header → state root → the registry's
account → its storage slots → the record.

Each step is a hash the next one must match, so a bundle proves a record only if every byte of
the path from the trusted hash down to the slot is the one the chain has: a header edited by one
bit hashes to something else, an account proof for another address or a storage proof for another
slot leads to another key, a proof node dropped or moved breaks the chain of hashes (checked node
by node here, in order, before the ``trie`` package walks the proof). What a bundle *cannot*
show is said with every answer (``CANNOT_SHOW``): anything after its block, above all a
revocation, and the registration event's digests, which live in a log, not in storage.

The storage layout is the one documented at the top of contracts/ModelRegistry.sol: ``_entries``
is the mapping at slot 3, ``_revocations`` (two slots per record) the one at slot 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from registry.core.bundles import ProofBundle
from registry.core.digest import Digest
from registry.core.records import ModelRecord, Revocation, RevocationReason
from registry.errors import BundleRejected, ConfigurationError

ENTRIES_SLOT = 3
REVOCATIONS_SLOT = 4
_HEADER_FIELDS = 15  # up to the nonce: every header since Frontier has at least these
_MASK40 = (1 << 40) - 1
_MASK160 = (1 << 160) - 1

CANNOT_SHOW = (
    "a revocation made after the bundle's block (ask the chain, or get a newer bundle)",
    "the test-set, card and parent digests and the registration transaction: they are in the "
    "registration event, which the bundle carries but does not prove",
    "a checkpoint anchored only in a batch (it has no record slot of its own)",
)


def mapping_slot(key: bytes, position: int) -> bytes:
    """Where Solidity keeps ``mapping[key]`` for a mapping declared at slot ``position``."""
    return keccak(key + position.to_bytes(32, "big"))


def record_slots(digest: Digest) -> tuple[bytes, bytes, bytes]:
    """The record's entry slot and its revocation's two slots, in the order a bundle holds them."""
    revocation = mapping_slot(digest.raw, REVOCATIONS_SLOT)
    after = (int.from_bytes(revocation, "big") + 1).to_bytes(32, "big")
    return mapping_slot(digest.raw, ENTRIES_SLOT), revocation, after


def code_hash(runtime_code: bytes) -> bytes:
    """The account's ``codeHash`` a contract with this runtime code has."""
    return keccak(runtime_code)


@dataclass(frozen=True, slots=True)
class CheckedBundle:
    """What a bundle proved: the record as its block's state holds it (None: not registered)."""

    bundle: ProofBundle
    block_number: int
    block_hash: bytes
    block_timestamp: int
    record: ModelRecord | None

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.block_timestamp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_number": self.block_number,
            "block_hash": "0x" + self.block_hash.hex(),
            "block_timestamp": self.block_timestamp,
            "chain_id": self.bundle.chain_id,
            "contract": self.bundle.contract,
            "cannot_show": list(CANNOT_SHOW),
        }


def _trie() -> Any:
    try:
        from trie import HexaryTrie
    except ImportError as exc:  # a base dependency: only a broken install lacks it
        raise ConfigurationError(
            f"checking a proof bundle needs the 'trie' package ({exc}), a dependency of this "
            "package: reinstall it (`pip install medical-model-registry`) or `pip install trie`"
        ) from exc
    return HexaryTrie


def _children(node: Any) -> list[bytes]:
    """The hashes a decoded trie node names as its children (branch slots, extension target)."""
    if not isinstance(node, list):
        return []
    return [item for item in node if isinstance(item, bytes) and len(item) == 32]


def _prove(root: bytes, key: bytes, nodes: tuple[bytes, ...], what: str) -> bytes:
    """The value under ``key`` (b"" when absent) that ``nodes`` prove against ``root``."""
    from trie.exceptions import BadTrieProof, ValidationError

    decoded = []
    expected = [root]
    for i, node in enumerate(nodes):
        if keccak(node) not in expected:
            raise BundleRejected(
                f"{what}: node {i} is not one its parent names (the proof is truncated, "
                "reordered or altered)",
                proof=what,
                node=i,
            )
        try:
            decoded.append(rlp.decode(node))
        except rlp.DecodingError:
            raise BundleRejected(f"{what}: node {i} is not RLP", proof=what, node=i) from None
        expected = _children(decoded[-1])
    try:
        value: bytes = _trie().get_from_proof(root, keccak(key), decoded)
    except (BadTrieProof, ValidationError) as exc:
        raise BundleRejected(
            f"{what}: the proof does not reach its key ({exc.__class__.__name__}): it is "
            "truncated, or a proof of another key",
            proof=what,
        ) from None
    return value


def _header_fields(bundle: ProofBundle) -> list[bytes]:
    try:
        fields = rlp.decode(bundle.header)
    except rlp.DecodingError:
        raise BundleRejected("the block header is not RLP", block=bundle.block_number) from None
    if (
        not isinstance(fields, list)
        or len(fields) < _HEADER_FIELDS
        or not all(isinstance(f, bytes) for f in fields)
    ):
        raise BundleRejected("the block header is not a list of header fields")
    return fields


def _word(value: bytes, what: str) -> int:
    """A storage value as the trie holds it: RLP of the big-endian integer, b"" for zero."""
    if value == b"":
        return 0
    try:
        raw = rlp.decode(value)
    except rlp.DecodingError:
        raise BundleRejected(f"{what}: the proven value is not RLP") from None
    if not isinstance(raw, bytes) or len(raw) > 32 or raw[:1] == b"\x00":
        raise BundleRejected(f"{what}: the proven value is not a storage word")
    return int.from_bytes(raw, "big")


def check_bundle(
    bundle: ProofBundle,
    *,
    trusted_hash: bytes,
    contract: str,
    runtime_code: bytes,
    chain_id: int | None,
) -> CheckedBundle:
    """The record ``bundle`` proves under ``trusted_hash``, or BundleRejected naming the step
    that failed. ``contract`` and ``chain_id`` are the registry the caller trusts (never the
    bundle's own say), ``runtime_code`` its build's code."""
    if chain_id is not None and bundle.chain_id != chain_id:
        raise BundleRejected(
            f"it is from chain {bundle.chain_id}, not the trusted chain {chain_id}",
            chain_id=bundle.chain_id,
            expected=chain_id,
        )
    if to_checksum_address(bundle.contract) != to_checksum_address(contract):
        raise BundleRejected(
            f"it proves contract {bundle.contract}, not the trusted registry {contract}",
            contract=bundle.contract,
            expected=contract,
        )
    header_hash = keccak(bundle.header)
    if header_hash != trusted_hash:
        raise BundleRejected(
            f"its block header hashes to 0x{header_hash.hex()}, not the trusted block hash "
            f"0x{trusted_hash.hex()} (another block, or an altered header)",
            header_hash="0x" + header_hash.hex(),
            trusted_hash="0x" + trusted_hash.hex(),
        )
    if bundle.block_hash != header_hash:
        raise BundleRejected("its block hash is not the hash of its header")
    fields = _header_fields(bundle)
    state_root, number, timestamp = fields[3], int.from_bytes(fields[8], "big"), fields[11]
    if number != bundle.block_number:
        raise BundleRejected(
            f"its header is of block {number}, the bundle says block {bundle.block_number}"
        )
    expected_code = code_hash(runtime_code)
    if bundle.code_hash != expected_code:
        raise BundleRejected(
            f"the code hash it names 0x{bundle.code_hash.hex()} is not this ModelRegistry "
            f"build's 0x{expected_code.hex()}"
        )
    address = bytes.fromhex(bundle.contract[2:])
    account_rlp = _prove(state_root, address, bundle.account_proof, "account proof")
    if not account_rlp:
        raise BundleRejected(f"contract {bundle.contract} has no account at block {number}")
    try:
        account = rlp.decode(account_rlp)
    except rlp.DecodingError:
        raise BundleRejected("the proven account is not RLP") from None
    if not isinstance(account, list) or len(account) != 4:
        raise BundleRejected("the proven account is not [nonce, balance, storage, code]")
    storage_root, account_code = account[2], account[3]
    if account_code != expected_code:
        raise BundleRejected(
            f"the account at {bundle.contract} holds code other than this ModelRegistry build "
            f"at block {number}"
        )
    wanted = record_slots(bundle.digest)
    slots = tuple(s.slot for s in bundle.storage)
    if slots != wanted:
        raise BundleRejected(
            f"its storage proofs are of slots other than checkpoint {bundle.digest.short}'s "
            "record and revocation (a proof of another record)",
        )
    words = []
    for proof, name in zip(bundle.storage, ("entry", "revocation", "replacement"), strict=True):
        word = _word(_prove(storage_root, proof.slot, proof.nodes, f"{name} slot proof"), name)
        if word != proof.value:
            raise BundleRejected(
                f"the {name} slot holds {hex(word)}, the bundle says {hex(proof.value)}"
            )
        words.append(word)
    return CheckedBundle(
        bundle=bundle,
        block_number=number,
        block_hash=header_hash,
        block_timestamp=int.from_bytes(timestamp, "big"),
        record=_record(bundle, *words),
    )


def _record(
    bundle: ProofBundle, entry: int, revocation: int, replacement: int
) -> ModelRecord | None:
    registrant = entry & _MASK160
    if registrant == 0:  # never registered, or a batched leaf's tombstone
        return None
    event = bundle.event
    if event is None:
        raise BundleRejected(
            f"checkpoint {bundle.digest.short} is registered at block {bundle.block_number} but "
            "the bundle carries no registration event"
        )
    revoked = None
    reason = (revocation >> 80) & 0xFF
    if reason:
        try:
            code = RevocationReason(reason)
        except ValueError:
            raise BundleRejected(f"the proven revocation has reason code {reason}") from None
        revoked = Revocation(
            revoked_at=revocation & _MASK40,
            block_number=(revocation >> 40) & _MASK40,
            reason=code,
            replacement=Digest.from_bytes(replacement.to_bytes(32, "big")) if replacement else None,
        )
    return ModelRecord(
        digest=bundle.digest,
        registrant=to_checksum_address(registrant.to_bytes(20, "big")),
        registered_at=(entry >> 160) & _MASK40,
        registered_block=(entry >> 200) & _MASK40,
        accuracy_bps=entry >> 240,
        test_set_digest=event.test_set_digest,
        card_digest=event.card_digest,
        parent=event.parent,
        registration_tx=event.registration_tx,
        revocation=revoked,
    )
