"""The ModelRegistry contract on eth-tester, driven through RegistryClient.

Every custom error is triggered and checked with its fields; every state change is checked by the
events in its receipt (decoded straight from the ABI, not through the client under test). Raw
``transact`` calls bypass RegisterRequest's own validation so the contract's checks are reached.
"""

from __future__ import annotations

import pytest
from chainkit import CARD, TEST_SET, ZERO32, ZERO_ADDRESS, digest, raw_register, request
from eth_utils import to_checksum_address

from registry.chain import reverts
from registry.core.digest import Digest
from registry.core.records import RevocationReason, Role

REGISTER_GAS_CEILING = 62_000
# What a registration with a parent cost before attestations, audit anchors and signed
# registrations joined the contract; their extra dispatch may add at most 2 %.
REGISTER_GAS_BEFORE_SIGNED_WRITES = 55_065


def registered_event(
    chain,
    tx_hash: str,
    d: Digest,
    registrant: str,
    parent: Digest | None = None,
    accuracy: int = 9_731,
) -> tuple[str, dict]:
    return (
        "ModelRegistered",
        {
            "digest": d.raw,
            "registrant": registrant,
            "parent": parent.raw if parent else ZERO32,
            "accuracyBps": accuracy,
            "testSetDigest": TEST_SET.raw,
            "cardDigest": CARD.raw,
            "registeredAt": chain.timestamp(tx_hash),
        },
    )


def revoked_event(
    chain, tx_hash: str, d: Digest, revoker: str, reason: int, replacement: Digest | None = None
) -> tuple[str, dict]:
    return (
        "ModelRevoked",
        {
            "digest": d.raw,
            "revoker": revoker,
            "replacement": replacement.raw if replacement else ZERO32,
            "reason": reason,
            "revokedAt": chain.timestamp(tx_hash),
        },
    )


def call(client, name: str, *args):
    return client.call(name, *args)


def admin_state(client) -> tuple[str, str | None]:
    """(admin, pending admin or None), checksummed, read with raw calls."""
    (admin,) = call(client, "admin")
    (pending,) = call(client, "pendingAdmin")
    return to_checksum_address(admin), None if pending == ZERO_ADDRESS else to_checksum_address(
        pending
    )


# --------------------------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------------------------


def test_deploy_emits_admin_transferred_from_zero_and_grants_no_role(memory) -> None:
    client = memory.client
    logs = client.w3.eth.get_logs(
        {
            "address": client.address,
            "fromBlock": client.deployment_block,
            "toBlock": client.deployment_block,
        }
    )
    assert len(logs) == 1
    assert memory.events(logs[0]["transactionHash"]) == [
        ("AdminTransferred", {"previousAdmin": ZERO_ADDRESS, "newAdmin": memory.admin})
    ]
    assert admin_state(client) == (memory.admin, None)
    fresh = memory.address(5)
    assert not client.has_role(Role.REGISTRAR, fresh)
    assert not client.has_role(Role.REVOKER, fresh)


def test_deployed_runtime_code_is_the_committed_build(memory) -> None:
    client = memory.client
    assert bytes(client.w3.eth.get_code(client.address)) == client.artifact.deployed_bytecode


def test_deploy_reverts_with_zero_address_when_admin_is_zero(memory) -> None:
    # The constructor's revert, replayed as a call of the creation code, decodes like any other.
    from eth_abi import encode

    client = memory.client
    data = client.artifact.bytecode + encode(["address"], [ZERO_ADDRESS])
    with pytest.raises(reverts.ZeroAddress) as caught:
        client.rpc.eth_call({"from": memory.admin, "data": "0x" + data.hex()})
    assert caught.value.details == {}


# --------------------------------------------------------------------------------------------
# register
# --------------------------------------------------------------------------------------------


def test_register_emits_model_registered_with_every_field(memory) -> None:
    parent = memory.client.register(request("v1")).record.digest
    result = memory.client.register(request("v2", accuracy=9_800, parent=parent))
    assert memory.events(result.tx_hash) == [
        registered_event(
            memory, result.tx_hash, digest("v2"), memory.admin, parent=parent, accuracy=9_800
        )
    ]


def test_register_stores_the_record_in_one_slot_readable_by_get_record(memory) -> None:
    result = memory.client.register(request("v1", accuracy=9_731))
    block = memory.client.w3.eth.get_block(result.block_number)
    (stored,) = call(memory.client, "getRecord", digest("v1").raw)
    assert stored == (
        memory.admin.lower(),
        block["timestamp"],
        result.block_number,
        9_731,
        0,
        0,
        0,
        ZERO32,
    )


def test_register_with_parent_uses_at_most_62000_gas(memory) -> None:
    parent = memory.client.register(request("v1")).record.digest
    result = memory.client.register(request("v2", parent=parent))
    assert result.gas_used is not None
    assert result.gas_used <= REGISTER_GAS_CEILING
    assert result.gas_used <= 1.02 * REGISTER_GAS_BEFORE_SIGNED_WRITES
    receipt = memory.client.w3.eth.get_transaction_receipt(result.tx_hash)
    assert receipt["gasUsed"] == result.gas_used


def test_register_reverts_when_caller_is_not_registrar(memory) -> None:
    stranger = memory.other(1)
    with pytest.raises(reverts.MissingRole) as caught:
        stranger.register(request("v1"))
    assert caught.value.account == memory.address(1)
    assert caught.value.role == "registrar"
    assert not memory.client.is_valid(digest("v1"))


def test_register_reverts_when_caller_only_holds_revoker(memory) -> None:
    revoker = memory.other(1, Role.REVOKER)
    with pytest.raises(reverts.MissingRole) as caught:
        revoker.register(request("v1"))
    assert (caught.value.account, caught.value.role) == (memory.address(1), "registrar")


def test_register_reverts_with_zero_digest(memory) -> None:
    with pytest.raises(reverts.ZeroDigest) as caught:
        raw_register(memory.client, ZERO32)
    assert caught.value.details["tx_hash"].startswith("0x")


@pytest.mark.parametrize("accuracy", [0, 1, 9_999, 10_000])
def test_register_accepts_accuracy_from_0_to_10000(memory, accuracy: int) -> None:
    result = memory.client.register(request("v1", accuracy=accuracy))
    assert result.record.accuracy_bps == accuracy
    assert memory.events(result.tx_hash) == [
        registered_event(memory, result.tx_hash, digest("v1"), memory.admin, accuracy=accuracy)
    ]


@pytest.mark.parametrize("accuracy", [10_001, 65_535])
def test_register_reverts_when_accuracy_is_above_10000(memory, accuracy: int) -> None:
    with pytest.raises(reverts.AccuracyOutOfRange) as caught:
        raw_register(memory.client, digest("v1").raw, accuracy=accuracy)
    assert caught.value.accuracy_bps == accuracy
    assert not memory.client.is_valid(digest("v1"))


def test_register_reverts_with_zero_test_set_digest(memory) -> None:
    with pytest.raises(reverts.ZeroTestSetDigest):
        raw_register(memory.client, digest("v1").raw, test_set=ZERO32)
    assert memory.client.get(digest("v1")) is None


def test_register_reverts_with_zero_card_digest(memory) -> None:
    with pytest.raises(reverts.ZeroCardDigest):
        raw_register(memory.client, digest("v1").raw, card=ZERO32)
    assert memory.client.get(digest("v1")) is None


def test_register_reverts_when_digest_is_already_registered(memory) -> None:
    memory.client.register(request("v1", accuracy=9_000))
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        memory.client.register(request("v1", accuracy=9_500))
    assert caught.value.digest == digest("v1")
    assert caught.value.registrant == memory.admin
    assert memory.client.get(digest("v1")).accuracy_bps == 9_000


def test_register_reverts_with_first_registrant_when_another_registrar_repeats_it(memory) -> None:
    memory.client.register(request("v1"))
    second = memory.other(1, Role.REGISTRAR)
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        second.register(request("v1"))  # identical fields, but not the same registrant
    assert (caught.value.digest, caught.value.registrant) == (digest("v1"), memory.admin)


def test_register_reverts_when_parent_is_unknown(memory) -> None:
    with pytest.raises(reverts.InvalidParent) as caught:
        memory.client.register(request("v2", parent=digest("never registered")))
    assert caught.value.digest == digest("v2")
    assert caught.value.parent == digest("never registered")


def test_register_reverts_when_parent_is_the_checkpoint_itself(memory) -> None:
    d = digest("v1").raw
    with pytest.raises(reverts.InvalidParent) as caught:
        raw_register(memory.client, d, parent=d)
    assert caught.value.digest == caught.value.parent == digest("v1")


def test_register_of_a_registered_digest_naming_itself_as_parent_reverts_already_registered(
    memory,
) -> None:
    # The duplicate check runs before the parent check: the caller learns the real problem.
    memory.client.register(request("v1"))
    with pytest.raises(reverts.AlreadyRegistered):
        raw_register(memory.client, digest("v1").raw, parent=digest("v1").raw)


# --------------------------------------------------------------------------------------------
# revoke
# --------------------------------------------------------------------------------------------


def test_revoke_emits_model_revoked_and_stores_reason_and_replacement(memory) -> None:
    client = memory.client
    client.register(request("v1"))
    client.register(request("v2"))
    record = client.revoke(digest("v1"), RevocationReason.SAFETY_ISSUE, digest("v2"))
    revocation = record.revocation
    assert memory.events(revocation.tx_hash) == [
        revoked_event(memory, revocation.tx_hash, digest("v1"), memory.admin, 2, digest("v2"))
    ]
    block = client.w3.eth.get_block(revocation.block_number)
    (stored,) = call(client, "getRecord", digest("v1").raw)
    assert stored[4:] == (block["timestamp"], revocation.block_number, 2, digest("v2").raw)


def test_revoke_without_replacement_emits_zero_replacement(memory) -> None:
    memory.client.register(request("v1"))
    record = memory.client.revoke(digest("v1"), RevocationReason.OTHER)
    assert memory.events(record.revocation.tx_hash) == [
        revoked_event(memory, record.revocation.tx_hash, digest("v1"), memory.admin, 255)
    ]


@pytest.mark.parametrize("reason", [1, 7, 255])
def test_revoke_accepts_coded_reasons_and_other(memory, reason: int) -> None:
    memory.client.register(request("v1"))
    receipt = memory.client.transact("revoke", digest("v1").raw, reason, ZERO32)
    assert memory.events(receipt["transactionHash"])[0][1]["reason"] == reason
    assert not memory.client.is_valid(digest("v1"))


@pytest.mark.parametrize("reason", [0, 8, 254])
def test_revoke_reverts_with_invalid_reason(memory, reason: int) -> None:
    memory.client.register(request("v1"))
    with pytest.raises(reverts.InvalidReason) as caught:
        memory.client.transact("revoke", digest("v1").raw, reason, ZERO32)
    assert caught.value.reason == reason
    assert memory.client.is_valid(digest("v1"))


def test_revoke_reverts_when_model_is_unknown(memory) -> None:
    with pytest.raises(reverts.UnknownModel) as caught:
        memory.client.revoke(digest("nothing"), RevocationReason.SUPERSEDED)
    assert caught.value.digest == digest("nothing")


def test_revoke_reverts_when_already_revoked_with_first_revocation_time(memory) -> None:
    memory.client.register(request("v1"))
    first = memory.client.revoke(digest("v1"), RevocationReason.SUPERSEDED).revocation
    with pytest.raises(reverts.AlreadyRevoked) as caught:
        memory.client.revoke(digest("v1"), RevocationReason.SAFETY_ISSUE)
    assert caught.value.digest == digest("v1")
    assert caught.value.revoked_at == first.revoked_at
    assert memory.client.get(digest("v1")).revocation.reason is RevocationReason.SUPERSEDED


def test_revoke_reverts_when_replacement_is_unregistered(memory) -> None:
    memory.client.register(request("v1"))
    with pytest.raises(reverts.InvalidReplacement) as caught:
        memory.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("ghost"))
    assert (caught.value.digest, caught.value.replacement) == (digest("v1"), digest("ghost"))
    assert memory.client.is_valid(digest("v1"))


def test_revoke_reverts_when_replacement_is_the_model_itself(memory) -> None:
    memory.client.register(request("v1"))
    with pytest.raises(reverts.InvalidReplacement) as caught:
        memory.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v1"))
    assert (caught.value.digest, caught.value.replacement) == (digest("v1"), digest("v1"))


def test_revoke_reverts_when_replacement_is_revoked(memory) -> None:
    memory.client.register(request("v1"))
    memory.client.register(request("v2"))
    memory.client.revoke(digest("v2"), RevocationReason.SAFETY_ISSUE)
    with pytest.raises(reverts.InvalidReplacement) as caught:
        memory.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    assert (caught.value.digest, caught.value.replacement) == (digest("v1"), digest("v2"))
    assert memory.client.is_valid(digest("v1"))


def test_revoke_reverts_when_caller_is_neither_revoker_nor_registrant(memory) -> None:
    memory.client.register(request("v1"))
    other_registrar = memory.other(1, Role.REGISTRAR)
    with pytest.raises(reverts.NotAllowedToRevoke) as caught:
        other_registrar.revoke(digest("v1"), RevocationReason.SAFETY_ISSUE)
    assert caught.value.account == memory.address(1)
    assert caught.value.digest == digest("v1")
    assert memory.client.is_valid(digest("v1"))


def test_registrant_may_revoke_own_model_without_revoker_role(memory) -> None:
    registrar = memory.other(1, Role.REGISTRAR)
    registrar.register(request("v1"))
    assert not registrar.has_role(Role.REVOKER, memory.address(1))
    record = registrar.revoke(digest("v1"), RevocationReason.REGISTERED_IN_ERROR)
    assert memory.events(record.revocation.tx_hash) == [
        revoked_event(memory, record.revocation.tx_hash, digest("v1"), memory.address(1), 7)
    ]


def test_registrant_keeps_revoking_own_model_after_losing_registrar_role(memory) -> None:
    registrar = memory.other(1, Role.REGISTRAR)
    registrar.register(request("v1"))
    memory.client.remove_role(Role.REGISTRAR, memory.address(1))
    record = registrar.revoke(digest("v1"), RevocationReason.DATA_PROBLEM)
    assert record.revocation.revoker == memory.address(1)


def test_revoker_may_revoke_another_registrants_model(memory) -> None:
    memory.client.register(request("v1"))
    revoker = memory.other(2, Role.REVOKER)
    record = revoker.revoke(digest("v1"), RevocationReason.SECURITY_COMPROMISE)
    assert memory.events(record.revocation.tx_hash) == [
        revoked_event(memory, record.revocation.tx_hash, digest("v1"), memory.address(2), 5)
    ]


# --------------------------------------------------------------------------------------------
# roles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.REVOKER])
def test_grant_role_emits_role_granted_and_gives_the_role(memory, role: Role) -> None:
    account = memory.address(3)
    tx = memory.client.grant_role(role, account)
    assert memory.events(tx) == [
        ("RoleGranted", {"role": int(role), "account": account, "sender": memory.admin})
    ]
    assert memory.client.has_role(role, account)
    assert not memory.client.has_role(Role(3 - role), account)


def test_grant_role_already_held_emits_no_second_event(memory) -> None:
    account = memory.address(3)
    memory.client.grant_role(Role.REGISTRAR, account)
    tx = memory.client.grant_role(Role.REGISTRAR, account)
    assert memory.events(tx) == []
    assert memory.client.has_role(Role.REGISTRAR, account)


def test_grant_role_reverts_when_caller_is_not_admin(memory) -> None:
    registrar = memory.other(1, Role.REGISTRAR, Role.REVOKER)
    with pytest.raises(reverts.NotAdmin) as caught:
        registrar.grant_role(Role.REGISTRAR, memory.address(4))
    assert caught.value.account == memory.address(1)
    assert not memory.client.has_role(Role.REGISTRAR, memory.address(4))


def test_grant_role_reverts_for_the_zero_address(memory) -> None:
    with pytest.raises(reverts.ZeroAddress) as caught:
        memory.client.grant_role(Role.REGISTRAR, ZERO_ADDRESS)
    assert set(caught.value.details) == {"tx_hash"}


def test_grant_role_reverts_for_role_none_with_missing_role(memory) -> None:
    account = memory.address(3)
    with pytest.raises(reverts.MissingRole) as caught:
        memory.client.transact("grantRole", 0, account)
    assert (caught.value.account, caught.value.role) == (account, "none")


def test_remove_role_emits_role_removed_and_takes_the_role(memory) -> None:
    registrar = memory.other(1, Role.REGISTRAR)
    tx = memory.client.remove_role(Role.REGISTRAR, memory.address(1))
    assert memory.events(tx) == [
        ("RoleRemoved", {"role": 1, "account": memory.address(1), "sender": memory.admin})
    ]
    with pytest.raises(reverts.MissingRole) as caught:
        registrar.register(request("v1"))
    assert caught.value.account == memory.address(1)


def test_remove_role_not_held_emits_no_event(memory) -> None:
    tx = memory.client.remove_role(Role.REVOKER, memory.address(3))
    assert memory.events(tx) == []


def test_remove_role_reverts_when_caller_is_not_admin(memory) -> None:
    memory.other(2, Role.REVOKER)
    registrar = memory.other(1, Role.REGISTRAR)
    with pytest.raises(reverts.NotAdmin) as caught:
        registrar.remove_role(Role.REVOKER, memory.address(2))
    assert caught.value.account == memory.address(1)
    assert memory.client.has_role(Role.REVOKER, memory.address(2))


def test_renounce_role_emits_role_removed_by_the_account_itself(memory) -> None:
    revoker = memory.other(2, Role.REVOKER)
    receipt = revoker.transact("renounceRole", int(Role.REVOKER))
    assert memory.events(receipt["transactionHash"]) == [
        ("RoleRemoved", {"role": 2, "account": memory.address(2), "sender": memory.address(2)})
    ]
    assert not memory.client.has_role(Role.REVOKER, memory.address(2))


def test_renounce_role_not_held_emits_no_event(memory) -> None:
    stranger = memory.other(4)
    receipt = stranger.transact("renounceRole", int(Role.REGISTRAR))
    assert memory.events(receipt["transactionHash"]) == []


# --------------------------------------------------------------------------------------------
# admin transfer
# --------------------------------------------------------------------------------------------


def test_transfer_admin_emits_started_and_leaves_admin_until_accepted(memory) -> None:
    successor = memory.address(1)
    tx = memory.client.transfer_admin(successor)
    assert memory.events(tx) == [
        ("AdminTransferStarted", {"admin": memory.admin, "pendingAdmin": successor})
    ]
    assert admin_state(memory.client) == (memory.admin, successor)
    memory.client.grant_role(Role.REVOKER, memory.address(5))  # still the admin


def test_accept_admin_by_pending_admin_emits_transferred_and_moves_powers(memory) -> None:
    successor = memory.other(1)
    memory.client.transfer_admin(memory.address(1))
    tx = successor.accept_admin()
    assert memory.events(tx) == [
        ("AdminTransferred", {"previousAdmin": memory.admin, "newAdmin": memory.address(1)})
    ]
    assert admin_state(memory.client) == (memory.address(1), None)
    with pytest.raises(reverts.NotAdmin) as caught:
        memory.client.grant_role(Role.REGISTRAR, memory.address(5))
    assert caught.value.account == memory.admin
    tx = successor.grant_role(Role.REGISTRAR, memory.address(5))
    assert memory.events(tx) == [
        ("RoleGranted", {"role": 1, "account": memory.address(5), "sender": memory.address(1)})
    ]


def test_old_admin_keeps_roles_it_held_but_cannot_manage_roles(memory) -> None:
    memory.client.transfer_admin(memory.address(1))
    memory.other(1).accept_admin()
    with pytest.raises(reverts.NotAdmin):
        memory.client.remove_role(Role.REGISTRAR, memory.admin)
    with pytest.raises(reverts.NotAdmin):
        memory.client.transfer_admin(memory.admin)
    assert memory.client.register(request("v1")).record.registrant == memory.admin


def test_accept_admin_reverts_when_caller_is_not_pending_admin(memory) -> None:
    memory.client.transfer_admin(memory.address(1))
    intruder = memory.other(2)
    with pytest.raises(reverts.NotPendingAdmin) as caught:
        intruder.accept_admin()
    assert caught.value.account == memory.address(2)
    assert admin_state(memory.client) == (memory.admin, memory.address(1))


def test_accept_admin_reverts_when_no_transfer_is_pending(memory) -> None:
    with pytest.raises(reverts.NotPendingAdmin) as caught:
        memory.client.accept_admin()
    assert caught.value.account == memory.admin


def test_transfer_admin_to_zero_cancels_the_pending_transfer(memory) -> None:
    memory.client.transfer_admin(memory.address(1))
    tx = memory.client.transfer_admin(ZERO_ADDRESS)
    assert memory.events(tx) == [
        ("AdminTransferStarted", {"admin": memory.admin, "pendingAdmin": ZERO_ADDRESS})
    ]
    assert admin_state(memory.client) == (memory.admin, None)
    with pytest.raises(reverts.NotPendingAdmin) as caught:
        memory.other(1).accept_admin()
    assert caught.value.account == memory.address(1)


def test_transfer_admin_reverts_when_caller_is_not_admin(memory) -> None:
    with pytest.raises(reverts.NotAdmin) as caught:
        memory.other(1).transfer_admin(memory.address(1))
    assert caught.value.account == memory.address(1)
    assert admin_state(memory.client) == (memory.admin, None)


def test_a_second_proposal_replaces_the_first(memory) -> None:
    memory.client.transfer_admin(memory.address(1))
    memory.client.transfer_admin(memory.address(2))
    with pytest.raises(reverts.NotPendingAdmin):
        memory.other(1).accept_admin()
    memory.other(2).accept_admin()
    assert admin_state(memory.client) == (memory.address(2), None)


# --------------------------------------------------------------------------------------------
# views
# --------------------------------------------------------------------------------------------


def test_views_of_an_unknown_digest(memory) -> None:
    client = memory.client
    d = digest("unknown").raw
    assert call(client, "isRegistered", d) == (False,)
    assert call(client, "isValid", d) == (False,)
    with pytest.raises(reverts.UnknownModel) as caught:
        call(client, "getRecord", d)
    assert caught.value.digest == digest("unknown")


def test_lookup_of_unknown_digest_returns_zero_record_current_block_and_chain_id(memory) -> None:
    memory.mine(3)
    head = memory.client.w3.eth.block_number
    record, block, chain_id, block_hash = call(memory.client, "lookup", digest("unknown").raw)
    assert record == (ZERO_ADDRESS.lower(), 0, 0, 0, 0, 0, 0, ZERO32)
    assert block == head
    assert chain_id == memory.client.w3.eth.chain_id
    assert block_hash == ZERO32


def test_lookup_returns_the_hash_of_the_registration_block_while_the_evm_can_see_it(
    memory,
) -> None:
    client = memory.client
    d = digest("hashed").raw
    result = client.register(request("hashed"))
    assert call(client, "lookup", d)[3] == ZERO32  # the answering block itself: not visible
    memory.mine(1)
    expected = bytes(client.w3.eth.get_block(result.block_number)["hash"])
    assert call(client, "lookup", d)[3] == expected
    memory.mine(255)  # the registration is now exactly 256 blocks back: the last one visible
    assert call(client, "lookup", d)[3] == expected
    memory.mine(1)
    assert call(client, "lookup", d)[3] == ZERO32


def test_views_of_a_registered_then_revoked_digest(memory) -> None:
    client = memory.client
    d = digest("v1").raw
    result = client.register(request("v1"))
    assert call(client, "isRegistered", d) == (True,)
    assert call(client, "isValid", d) == (True,)
    record, block, _, _ = call(client, "lookup", d)
    assert record == call(client, "getRecord", d)[0]
    assert record[2] == result.block_number
    assert block == client.w3.eth.block_number
    client.revoke(digest("v1"), RevocationReason.REGULATORY)
    assert call(client, "isRegistered", d) == (True,)
    assert call(client, "isValid", d) == (False,)
    record, _, _, _ = call(client, "lookup", d)
    assert record[6] == 6


def test_has_role_admin_and_pending_admin_views(memory) -> None:
    assert call(memory.client, "admin") == (memory.admin.lower(),)
    assert call(memory.client, "pendingAdmin") == (ZERO_ADDRESS,)
    assert call(memory.client, "hasRole", 1, memory.admin) == (True,)
    assert call(memory.client, "hasRole", 2, memory.admin) == (True,)
    assert call(memory.client, "hasRole", 0, memory.admin) == (False,)
