"""Custom errors decoded on a real node (anvil), where they arrive as JSON-RPC error data.

eth-tester hands revert bytes over inside an exception message; a node returns them in the error
object's ``data`` and web3 raises ``ContractCustomError``. This is the representative set of
``test_registry_contract.py`` run through that second path, for calls and for mined transactions.
"""

from __future__ import annotations

import pytest
from chainkit import CARD, TEST_SET, ZERO32, digest, request
from web3.exceptions import ContractCustomError

from registry.chain import reverts
from registry.core.records import RevocationReason, Role

pytestmark = pytest.mark.anvil


def assert_mined_and_failed(anvil, error) -> None:
    """A write's error names its transaction, which the node mined with status 0."""
    receipt = anvil.client.w3.eth.get_transaction_receipt(error.details["tx_hash"])
    assert receipt["status"] == 0


def test_register_reverts_with_already_registered_and_its_fields(anvil) -> None:
    anvil.client.register(request("v1", accuracy=9_000))
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        anvil.client.register(request("v1", accuracy=9_500))
    assert caught.value.digest == digest("v1")
    assert caught.value.registrant == anvil.admin
    assert_mined_and_failed(anvil, caught.value)


def test_node_revert_arrives_as_contract_custom_error_with_the_data(anvil) -> None:
    with pytest.raises(reverts.UnknownModel) as caught:
        anvil.client.call("getRecord", digest("ghost").raw)
    cause = caught.value.__cause__
    assert isinstance(cause, ContractCustomError)
    assert cause.data == "0x" + (bytes.fromhex("a32d8b99") + digest("ghost").raw).hex()


def test_get_record_of_unknown_digest_reverts_with_unknown_model(anvil) -> None:
    with pytest.raises(reverts.UnknownModel) as caught:
        anvil.client.call("getRecord", digest("ghost").raw)
    assert caught.value.digest == digest("ghost")


def test_revoke_of_unknown_digest_reverts_with_unknown_model(anvil) -> None:
    with pytest.raises(reverts.UnknownModel) as caught:
        anvil.client.revoke(digest("ghost"), RevocationReason.OTHER)
    assert caught.value.digest == digest("ghost")
    assert_mined_and_failed(anvil, caught.value)


def test_register_reverts_with_missing_role_when_caller_is_not_registrar(anvil) -> None:
    stranger = anvil.other(1)
    with pytest.raises(reverts.MissingRole) as caught:
        stranger.register(request("v1"))
    assert (caught.value.account, caught.value.role) == (anvil.address(1), "registrar")
    assert anvil.client.get(digest("v1")) is None


@pytest.mark.parametrize(
    ("replacement", "revoked_first"),
    [("ghost", False), ("v1", False), ("v2", True)],
    ids=["unregistered", "self", "revoked"],
)
def test_revoke_reverts_with_invalid_replacement(anvil, replacement, revoked_first) -> None:
    anvil.client.register(request("v1"))
    anvil.client.register(request("v2"))
    if revoked_first:
        anvil.client.revoke(digest("v2"), RevocationReason.SAFETY_ISSUE)
    with pytest.raises(reverts.InvalidReplacement) as caught:
        anvil.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest(replacement))
    assert (caught.value.digest, caught.value.replacement) == (digest("v1"), digest(replacement))
    assert_mined_and_failed(anvil, caught.value)
    assert anvil.client.is_valid(digest("v1"))


def test_revoke_reverts_with_already_revoked_and_the_first_time(anvil) -> None:
    anvil.client.register(request("v1"))
    first = anvil.client.revoke(digest("v1"), RevocationReason.SUPERSEDED).revocation
    with pytest.raises(reverts.AlreadyRevoked) as caught:
        anvil.client.revoke(digest("v1"), RevocationReason.OTHER)
    assert (caught.value.digest, caught.value.revoked_at) == (digest("v1"), first.revoked_at)


def test_revoke_reverts_with_not_allowed_to_revoke(anvil) -> None:
    anvil.client.register(request("v1"))
    other = anvil.other(1, Role.REGISTRAR)
    with pytest.raises(reverts.NotAllowedToRevoke) as caught:
        other.revoke(digest("v1"), RevocationReason.OTHER)
    assert (caught.value.account, caught.value.digest) == (anvil.address(1), digest("v1"))


@pytest.mark.parametrize("reason", [0, 8, 254])
def test_revoke_reverts_with_invalid_reason(anvil, reason: int) -> None:
    anvil.client.register(request("v1"))
    with pytest.raises(reverts.InvalidReason) as caught:
        anvil.client.transact("revoke", digest("v1").raw, reason, ZERO32)
    assert caught.value.reason == reason


def test_register_reverts_with_accuracy_out_of_range(anvil) -> None:
    with pytest.raises(reverts.AccuracyOutOfRange) as caught:
        anvil.client.transact("register", digest("v1").raw, 10_001, TEST_SET.raw, CARD.raw, ZERO32)
    assert caught.value.accuracy_bps == 10_001


def test_register_reverts_with_zero_digest(anvil) -> None:
    with pytest.raises(reverts.ZeroDigest):
        anvil.client.transact("register", ZERO32, 1, TEST_SET.raw, CARD.raw, ZERO32)


def test_register_reverts_with_invalid_parent(anvil) -> None:
    with pytest.raises(reverts.InvalidParent) as caught:
        anvil.client.register(request("v2", parent=digest("ghost")))
    assert (caught.value.digest, caught.value.parent) == (digest("v2"), digest("ghost"))


def test_role_and_admin_errors_decode_with_their_accounts(anvil) -> None:
    other = anvil.other(1)
    with pytest.raises(reverts.NotAdmin) as not_admin:
        other.grant_role(Role.REGISTRAR, anvil.address(1))
    assert not_admin.value.account == anvil.address(1)
    with pytest.raises(reverts.NotPendingAdmin) as not_pending:
        other.accept_admin()
    assert not_pending.value.account == anvil.address(1)
    with pytest.raises(reverts.ZeroAddress):
        anvil.client.grant_role(Role.REVOKER, "0x" + "00" * 20)


def test_register_on_anvil_emits_model_registered_within_the_gas_ceiling(anvil) -> None:
    anvil.client.register(request("v1"))
    result = anvil.client.register(request("v2", parent=digest("v1")))
    assert result.gas_used is not None and result.gas_used <= 62_000
    assert anvil.events(result.tx_hash) == [
        (
            "ModelRegistered",
            {
                "digest": digest("v2").raw,
                "registrant": anvil.admin,
                "parent": digest("v1").raw,
                "accuracyBps": 9_731,
                "testSetDigest": TEST_SET.raw,
                "cardDigest": CARD.raw,
                "registeredAt": anvil.timestamp(result.tx_hash),
            },
        )
    ]


def test_batch_errors_decode_from_a_node_with_their_fields(anvil) -> None:
    from registry.core.batches import build_tree
    from registry.core.digest import digest_bytes

    tree = build_tree([request("b1"), request("b2"), request("b3")])
    anvil.client.register_batch(tree.root, len(tree), digest_bytes(b"manifest"))
    with pytest.raises(reverts.BatchAlreadyRegistered) as again:
        anvil.client.register_batch(tree.root, len(tree), digest_bytes(b"manifest"))
    assert again.value.registrant == anvil.admin
    assert_mined_and_failed(anvil, again.value)
    leaf, proof = tree.values[0], tree.proof(0)
    assert anvil.client.is_valid_in_batch(tree.root, leaf, proof)
    with pytest.raises(reverts.InvalidProof) as forged:
        anvil.client.revoke_leaf(tree.root, leaf, tree.proof(1), RevocationReason.OTHER)
    assert forged.value.digest == digest("b1")
    with pytest.raises(reverts.UnknownBatch):
        anvil.client.call("revokeBatch", digest("no batch").raw, 1)
    anvil.client.revoke_leaf(tree.root, leaf, proof, RevocationReason.SAFETY_ISSUE)
    assert not anvil.client.is_valid_in_batch(tree.root, leaf, proof)
