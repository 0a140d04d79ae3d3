"""Batch registration on eth-tester: one Merkle root anchors many records.

Leaves and proofs come from registry.core.merkle_batch (cross-checked against OpenZeppelin's own
library), so a leaf the contract accepts is one OpenZeppelin's tooling would prove too. Every
revert is checked by class and fields, every state change by its event.
"""

from __future__ import annotations

import pytest
from chainkit import CARD, TEST_SET, ZERO32, digest, request

from registry.chain import reverts
from registry.core.batches import build_tree, leaf_of
from registry.core.digest import digest_bytes
from registry.core.records import RevocationReason, Role

MANIFEST = digest_bytes(b"manifest")
# 21 000 + one fresh slot (22 100) + calldata + the event; the same whatever the batch's size.
BATCH_GAS_CEILING = 50_000


def batch(labels: list[str]):
    return build_tree([request(label) for label in labels])


def anchor(client, tree, manifest=MANIFEST) -> dict:
    return client.transact("registerBatch", tree.root, len(tree), manifest.raw)


def test_register_batch_emits_batch_registered_and_stores_one_slot(memory) -> None:
    tree = batch(["a", "b", "c"])
    receipt = anchor(memory.client, tree)
    when = memory.timestamp(receipt["transactionHash"])
    assert memory.events(receipt["transactionHash"]) == [
        (
            "BatchRegistered",
            {
                "root": tree.root,
                "registrant": memory.admin,
                "count": 3,
                "manifestDigest": MANIFEST.raw,
                "registeredAt": when,
            },
        )
    ]
    stored, _, chain_id = memory.client.call("lookupBatch", tree.root)
    assert stored == (memory.admin.lower(), when, receipt["blockNumber"], 0)
    assert chain_id == memory.client.chain_id
    assert receipt["gasUsed"] <= BATCH_GAS_CEILING


def test_register_batch_costs_the_same_for_2_and_1024_leaves(memory) -> None:
    small = anchor(memory.client, batch(["x", "y"]))
    large = anchor(memory.client, batch([f"m{i}" for i in range(1024)]))
    # The count's calldata bytes are the only difference.
    assert abs(large["gasUsed"] - small["gasUsed"]) <= 64


def test_register_batch_reverts_when_caller_is_not_registrar(memory) -> None:
    with pytest.raises(reverts.MissingRole) as caught:
        anchor(memory.other(1, Role.REVOKER), batch(["a"]))
    assert caught.value.account == memory.address(1)
    assert caught.value.role == "registrar"


def test_register_batch_reverts_when_empty(memory) -> None:
    with pytest.raises(reverts.EmptyBatch):
        memory.client.transact("registerBatch", batch(["a"]).root, 0, MANIFEST.raw)


@pytest.mark.parametrize("which", ["root", "manifest"])
def test_register_batch_reverts_with_a_zero_root_or_manifest(memory, which: str) -> None:
    root = ZERO32 if which == "root" else batch(["a"]).root
    manifest = ZERO32 if which == "manifest" else MANIFEST.raw
    with pytest.raises(reverts.ZeroDigest):
        memory.client.transact("registerBatch", root, 1, manifest)


def test_register_batch_reverts_when_the_root_is_already_anchored(memory) -> None:
    tree = batch(["a", "b"])
    anchor(memory.client, tree)
    with pytest.raises(reverts.BatchAlreadyRegistered) as caught:
        anchor(memory.other(1, Role.REGISTRAR), tree)
    assert caught.value.root == "0x" + tree.root.hex()
    assert caught.value.registrant == memory.admin


def test_every_leaf_is_valid_in_its_batch_and_in_no_other(memory) -> None:
    tree, other = batch(["a", "b", "c", "d", "e"]), batch(["a", "f"])
    anchor(memory.client, tree)
    anchor(memory.client, other, digest_bytes(b"other manifest"))
    for i, leaf in enumerate(tree.values):
        assert memory.client.is_valid_in_batch(tree.root, leaf, tree.proof(i))
    # The same leaf "a", with its proof from another batch, does not verify under this root.
    a = tree.values[0]
    assert memory.client.is_valid_in_batch(other.root, a, other.proof(a))
    assert not memory.client.is_valid_in_batch(tree.root, a, other.proof(a))


def test_a_forged_proof_or_altered_leaf_is_not_valid(memory) -> None:
    tree = batch(["a", "b", "c"])
    anchor(memory.client, tree)
    leaf, proof = tree.values[1], tree.proof(1)
    forged = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert not memory.client.is_valid_in_batch(tree.root, leaf, forged)
    higher = (leaf[0], 10_000, *leaf[2:])
    assert not memory.client.is_valid_in_batch(tree.root, higher, proof)
    assert not memory.client.is_valid_in_batch(digest("no batch").raw, leaf, proof)


def test_a_leaf_out_of_range_is_not_valid_even_with_a_right_proof(memory) -> None:
    from registry.core.merkle_batch import MODEL_LEAF_ENCODING, StandardMerkleTree

    leaf = (digest("a").raw, 10_001, TEST_SET.raw, CARD.raw, ZERO32)
    tree = StandardMerkleTree.of([leaf, leaf_of(request("b"))], MODEL_LEAF_ENCODING)
    anchor(memory.client, tree)
    assert not memory.client.is_valid_in_batch(tree.root, leaf, tree.proof(0))
    assert memory.client.is_valid_in_batch(tree.root, tree.values[1], tree.proof(1))


def test_a_single_registration_wins_over_a_batched_leaf(memory) -> None:
    tree = batch(["a", "b"])
    anchor(memory.client, tree)
    memory.client.register(request("a"))
    assert not memory.client.is_valid_in_batch(tree.root, tree.values[0], tree.proof(0))
    assert memory.client.is_valid_in_batch(tree.root, tree.values[1], tree.proof(1))
    assert memory.client.is_valid(digest("a"))


def revoke_leaf(client, tree, i: int, reason: int = int(RevocationReason.SAFETY_ISSUE)) -> dict:
    return client.transact("revokeLeaf", tree.root, tree.values[i], tree.proof(i), reason)


def test_revoke_leaf_by_a_revoker_emits_and_invalidates_that_leaf_only(memory) -> None:
    tree = batch(["a", "b", "c"])
    anchor(memory.client, tree)
    revoker = memory.other(1, Role.REVOKER)
    receipt = revoke_leaf(revoker, tree, 1)
    assert memory.events(receipt["transactionHash"]) == [
        (
            "BatchLeafRevoked",
            {
                "root": tree.root,
                "digest": tree.values[1][0],
                "revoker": memory.address(1),
                "reason": int(RevocationReason.SAFETY_ISSUE),
                "revokedAt": memory.timestamp(receipt["transactionHash"]),
            },
        )
    ]
    assert not memory.client.is_valid_in_batch(tree.root, tree.values[1], tree.proof(1))
    assert memory.client.is_valid_in_batch(tree.root, tree.values[0], tree.proof(0))
    assert memory.client.leaf_revocation(digest("b")) == (
        RevocationReason.SAFETY_ISSUE,
        memory.timestamp(receipt["transactionHash"]),
    )


def test_a_leaf_revoked_in_one_batch_is_invalid_in_every_batch_and_cannot_be_registered(
    memory,
) -> None:
    tree, other = batch(["a", "b"]), batch(["b", "c"])
    anchor(memory.client, tree)
    anchor(memory.client, other, digest_bytes(b"other manifest"))
    receipt = revoke_leaf(memory.client, tree, 1)
    b = tree.values[1]
    assert not memory.client.is_valid_in_batch(other.root, b, other.proof(b))
    with pytest.raises(reverts.AlreadyRevoked) as caught:
        memory.client.register(request("b"))
    assert caught.value.digest == digest("b")
    assert caught.value.revoked_at == memory.timestamp(receipt["transactionHash"])
    assert not memory.client.is_valid(digest("b"))
    assert memory.client.get(digest("b")) is None
    assert memory.client.call("isRegistered", digest("b").raw) == (False,)


def test_revoke_leaf_by_the_batch_registrant_without_revoker_role(memory) -> None:
    registrar = memory.other(2, Role.REGISTRAR)
    tree = batch(["a", "b"])
    anchor(registrar, tree)
    revoke_leaf(registrar, tree, 0)
    assert not memory.client.is_valid_in_batch(tree.root, tree.values[0], tree.proof(0))


def test_revoke_leaf_reverts_for_anyone_else(memory) -> None:
    tree = batch(["a", "b"])
    anchor(memory.client, tree)
    other_registrar = memory.other(3, Role.REGISTRAR)
    with pytest.raises(reverts.NotAllowedToRevokeBatch) as caught:
        revoke_leaf(other_registrar, tree, 0)
    assert caught.value.account == memory.address(3)
    assert caught.value.root == "0x" + tree.root.hex()
    assert memory.client.is_valid_in_batch(tree.root, tree.values[0], tree.proof(0))


def test_revoke_leaf_reverts_with_invalid_proof_unknown_batch_and_second_revocation(
    memory,
) -> None:
    tree, other = batch(["a", "b", "c"]), batch(["a", "d"])
    anchor(memory.client, tree)
    with pytest.raises(reverts.InvalidProof) as caught:
        memory.client.transact(
            "revokeLeaf", tree.root, tree.values[0], other.proof(0), int(RevocationReason.OTHER)
        )
    assert caught.value.root == "0x" + tree.root.hex()
    assert caught.value.digest == digest("a")
    with pytest.raises(reverts.UnknownBatch) as unknown:
        revoke_leaf(memory.client, other, 0)
    assert unknown.value.root == "0x" + other.root.hex()
    first = revoke_leaf(memory.client, tree, 2)
    with pytest.raises(reverts.AlreadyRevoked) as again:
        revoke_leaf(memory.client, tree, 2)
    assert again.value.revoked_at == memory.timestamp(first["transactionHash"])
    with pytest.raises(reverts.InvalidReason) as bad:
        revoke_leaf(memory.client, tree, 1, reason=9)
    assert bad.value.reason == 9


def test_revoke_leaf_refuses_a_digest_with_a_single_record(memory) -> None:
    tree = batch(["a", "b"])
    anchor(memory.client, tree)
    registrar = memory.other(4, Role.REGISTRAR)
    registrar.register(request("a"))
    # The batch's registrant cannot withdraw another registrant's single record this way.
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        revoke_leaf(memory.client, tree, 0)
    assert caught.value.registrant == memory.address(4)
    assert memory.client.is_valid(digest("a"))


def test_revoke_batch_emits_and_invalidates_every_leaf(memory) -> None:
    tree = batch(["a", "b", "c"])
    anchor(memory.client, tree)
    receipt = memory.client.transact("revokeBatch", tree.root, int(RevocationReason.DATA_PROBLEM))
    assert memory.events(receipt["transactionHash"]) == [
        (
            "BatchRevoked",
            {
                "root": tree.root,
                "revoker": memory.admin,
                "reason": int(RevocationReason.DATA_PROBLEM),
                "revokedAt": memory.timestamp(receipt["transactionHash"]),
            },
        )
    ]
    for i, leaf in enumerate(tree.values):
        assert not memory.client.is_valid_in_batch(tree.root, leaf, tree.proof(i))
    record, _ = memory.client.batch(tree.root)
    assert record is not None and record.revocation_reason is RevocationReason.DATA_PROBLEM
    with pytest.raises(reverts.BatchRevoked) as caught:
        memory.client.revoke_batch(tree.root, RevocationReason.OTHER)
    assert caught.value.reason == int(RevocationReason.DATA_PROBLEM)


def test_revoke_batch_reverts_for_a_stranger_an_unknown_batch_or_a_bad_reason(memory) -> None:
    tree = batch(["a"])
    with pytest.raises(reverts.UnknownBatch):
        memory.client.revoke_batch(tree.root, RevocationReason.OTHER)
    anchor(memory.client, tree)
    with pytest.raises(reverts.NotAllowedToRevokeBatch) as caught:
        memory.other(1, Role.REGISTRAR).revoke_batch(tree.root, RevocationReason.OTHER)
    assert caught.value.account == memory.address(1)
    with pytest.raises(reverts.InvalidReason):
        memory.client.transact("revokeBatch", tree.root, 0)
    revoker = memory.other(2, Role.REVOKER)
    revoker.revoke_batch(tree.root, RevocationReason.REGULATORY)
    assert not memory.client.is_valid_in_batch(tree.root, tree.values[0], tree.proof(0))
