"""Checkpoint bytes + chain → Verdict: the only place a hash meets the chain.

"No" is data (``Verdict(verified=False, reason=...)``); "can't tell" is an exception raised by the
client (chain unavailable, wrong chain, wrong contract), and every caller treats it as "no".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from registry.chain.attestations import Attestations
from registry.chain.client import RegistryClient
from registry.core.batch_proof import BatchProof
from registry.core.batches import BatchPosition, Manifest, leaf_of, request_of
from registry.core.digest import Digest
from registry.core.merkle_batch import verify as verify_proof
from registry.core.policy import AttestationCount, Policy
from registry.core.records import ModelRecord, Verdict
from registry.core.times import human_utc
from registry.errors import ChainError, InvalidInput


def verdict_maker(
    digest: Digest,
    chain_id: int,
    contract: str,
    block: int,
    record: ModelRecord | None,
    *,
    batch: dict[str, Any] | None = None,
    where: str = "",
) -> Callable[..., Verdict]:
    """A maker of one lookup's verdicts: what was asked, of which chain and contract, at which
    block (through which batch, for a batched checkpoint), and ``where`` the answer came from
    when that is not a live chain (appended to every detail)."""

    def verdict(
        verified: bool, reason: str, detail: str, failures: tuple[str, ...] = ()
    ) -> Verdict:
        return Verdict(
            verified=verified,
            reason=reason,  # type: ignore[arg-type]
            digest=digest,
            chain_id=chain_id,
            contract=contract,
            checked_block=block,
            record=record,
            detail=f"{detail}; {where}" if where else detail,
            policy_failures=failures,
            batch=batch,
        )

    return verdict


def verify_digest(client: RegistryClient, digest: Digest, policy: Policy | None = None) -> Verdict:
    policy = policy or Policy()
    identity = client.check_identity()
    record, block = client.lookup(digest)

    verdict = verdict_maker(digest, identity.chain_id, identity.address, block, record)

    if record is None:
        return verdict(
            False,
            "unknown",
            f"no checkpoint with digest {digest.short} is registered on chain {identity.chain_id}; "
            "the file may have been modified, or was never released",
        )
    if record.revocation is not None:
        r = record.revocation
        detail = f"revoked on {human_utc(r.revoked_at)} (reason: {r.reason.label})"
        if r.replacement is not None:
            detail += f"; the registry names {r.replacement} as its replacement"
        return verdict(False, "revoked", detail)
    confirmed_at = record.registered_block + client.confirmations - 1
    if confirmed_at > block:
        return verdict(
            False,
            "unconfirmed",
            f"registered in block {record.registered_block} but the policy needs "
            f"{client.confirmations} confirmations (at block {confirmed_at}; chain is at {block})",
        )
    attested = _attestations_counted(client, record, policy)
    failures = policy.failures(record)
    unmet = attested.failure() if attested is not None else None
    if unmet is not None:
        failures += (unmet,)
    if failures:
        return verdict(False, "policy", "; ".join(failures), failures)
    detail = (
        f"registered by {record.registrant} on {human_utc(record.registered_at)} with accuracy "
        f"{record.accuracy_bps / 100:.2f} % on test set {record.test_set_digest.short}"
    )
    if attested is not None:
        detail += f"; attested by {', '.join(attested.counted)}"
    return verdict(True, "verified", detail)


def _attestations_counted(
    client: RegistryClient, record: ModelRecord, policy: Policy
) -> AttestationCount | None:
    """The attestation condition, read from the chain only when the clinic requires it (None
    otherwise): the trusted evaluators' attestations in one call, a chain that cannot answer
    raises."""
    if not policy.needs_attestations:
        return None
    found = Attestations(client).of(record.digest, policy.trusted_evaluators)
    return policy.count_attestations(record, found)


def verify_in_manifest(
    client: RegistryClient, digest: Digest, manifest: Manifest, policy: Policy | None = None
) -> tuple[Verdict, BatchPosition]:
    """A checkpoint's verdict through its batch's manifest.

    The manifest must be the one anchored (its SHA-256 is the batch's ``manifestDigest``): any
    other is bad input and nothing is verified. A checkpoint that is not in it is bad input too.
    """
    position = manifest.position(digest)
    if position is None:
        raise InvalidInput(
            f"checkpoint {digest.short} is not in the manifest of batch 0x{manifest.root.hex()}; "
            "give the manifest of the batch that anchored it",
            digest=str(digest),
            root="0x" + manifest.root.hex(),
        )
    leaf = manifest.tree.values[position]
    return verify_in_batch(
        client,
        digest,
        manifest.root,
        leaf,
        manifest.tree.proof(position),
        policy,
        position,
        manifest_digest=manifest.digest,
    )


def verify_in_batch(
    client: RegistryClient,
    digest: Digest,
    root: bytes,
    leaf: Sequence[Any],
    proof: Sequence[bytes],
    policy: Policy | None = None,
    position: int = -1,
    *,
    manifest_digest: Digest | None = None,
) -> tuple[Verdict, BatchPosition]:
    """A checkpoint's verdict through batch ``root``, given its leaf and inclusion proof.

    A proof that does not lead from this leaf of this digest to ``root`` (forged, or another
    batch's) is bad input; so is ``manifest_digest``, the SHA-256 of the manifest the proof was
    taken from, when it is not the one anchored with the batch. A digest registered on its own
    is judged by that record: a single registration always wins over a batched leaf.
    """
    request = request_of(leaf)
    if request.digest != digest or not verify_proof(root, leaf_of(request), proof):
        raise InvalidInput(
            f"the proof does not show checkpoint {digest.short} in batch 0x{root.hex()}; take "
            "the leaf and proof from that batch's manifest",
            digest=str(digest),
            root="0x" + root.hex(),
        )
    policy = policy or Policy()
    identity = client.check_identity()
    # The contract's own answer beside the batch, in one round trip: true only for an anchored,
    # unrevoked batch, a proof that holds, and a digest neither revoked nor registered on its
    # own. So a valid leaf costs what a single lookup does; only a "no" is explained call by call.
    batch, block, valid = client.batch_and_validity(root, leaf_of(request), proof)
    if (
        batch is not None
        and manifest_digest is not None
        and batch.manifest_digest != manifest_digest
    ):
        raise InvalidInput(
            f"the manifest's SHA-256 {manifest_digest.short} is not the one anchored for batch "
            f"0x{root.hex()} ({batch.manifest_digest.short}); it is not the published "
            "manifest, so none of its proofs is used",
            manifest_digest=str(manifest_digest),
            anchored=str(batch.manifest_digest),
        )
    valid = valid and batch is not None and batch.revocation_reason is None
    if not valid and client.get(digest) is not None:
        single = verify_digest(client, digest, policy)
        return single, BatchPosition(root, position, None)
    record = None
    if batch is not None:
        record = ModelRecord(
            digest=digest,
            registrant=batch.registrant,
            registered_at=batch.registered_at,
            registered_block=batch.registered_block,
            accuracy_bps=request.accuracy_bps,
            test_set_digest=request.test_set_digest,
            card_digest=request.card_digest,
            parent=request.parent,
            registration_tx=batch.registration_tx,
        )
    place = BatchPosition(root, position, batch)
    where = f"in batch 0x{root.hex()[:12]}… at position {position}"

    verdict = verdict_maker(
        digest, identity.chain_id, identity.address, block, record, batch=place.to_dict()
    )

    if batch is None or record is None:
        return verdict(
            False,
            "unknown",
            f"no batch with root 0x{root.hex()} is registered on chain {identity.chain_id}",
        ), place
    if batch.revocation_reason is not None:
        return verdict(
            False, "revoked", f"its batch was revoked (reason: {batch.revocation_reason.label})"
        ), place
    if not valid:
        leaf_revoked = client.leaf_revocation(digest)
        if leaf_revoked is not None:
            reason, revoked_at = leaf_revoked
            return verdict(
                False,
                "revoked",
                f"revoked on {human_utc(revoked_at)} (reason: {reason.label}) {where}",
            ), place
        # Every check passed but the contract says no: something changed under us.
        raise ChainError(f"the contract does not confirm {digest.short} {where}; try again")
    confirmed_at = batch.registered_block + client.confirmations - 1
    if confirmed_at > block:
        return verdict(
            False,
            "unconfirmed",
            f"anchored {where} in block {batch.registered_block} but the policy needs "
            f"{client.confirmations} confirmations (at block {confirmed_at}; chain is at {block})",
        ), place
    # The contract attests single registrations only: a batched leaf can never meet k.
    failures = policy.failures(record) + policy.attestations_unreadable(
        "a checkpoint registered in a batch cannot be attested"
    )
    if failures:
        return verdict(False, "policy", "; ".join(failures), failures), place
    return verdict(
        True,
        "verified",
        f"registered {where} by {record.registrant} on {human_utc(record.registered_at)} with "
        f"accuracy {record.accuracy_bps / 100:.2f} % on test set {record.test_set_digest.short}",
    ), place


def verify_located(
    client: RegistryClient,
    digest: Digest,
    proofs: Iterable[BatchProof],
    policy: Policy | None = None,
) -> Verdict:
    """``digest``'s verdict from its own record, else through the batches ``proofs`` place it in.

    A single registration always answers when there is one (it wins over any batch leaf). A
    digest in batches is tried in each: the first "verified" answers, else the last batch's
    "no" (a revoked batch is still a reason worth naming), else its own lookup's. The proofs
    come from stored manifests or a caller, so none is trusted: each is checked against its
    root and the chain as ``verify_in_batch`` checks it.
    """
    verdict = None
    for proof in proofs:
        batched, place = verify_in_batch(
            client, digest, proof.root, proof.leaf, proof.proof, policy, proof.position
        )
        if place.batch is None and batched.reason != "unknown":
            return batched  # its own record answered (or the batch is unknown and it has one)
        if batched.verified:
            return batched
        if batched.reason != "unknown":
            verdict = batched
    return verdict if verdict is not None else verify_digest(client, digest, policy)
