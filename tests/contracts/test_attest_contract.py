"""Evaluator attestations on eth-tester: ``attest``, ``revokeAttestation`` and ``attestations``.

An evaluator anchors its own measurement of someone else's registered, unrevoked checkpoint. Every
refusal is checked by its error class and fields and by the attestations reading as before; every
state change by its event.
"""

from __future__ import annotations

import pytest
from chainkit import ZERO_ADDRESS, digest, request
from contractkit import EVALUATOR, grant, send
from eth_utils import event_abi_to_log_topic

from registry.chain import reverts
from registry.core.batches import build_tree
from registry.core.digest import Digest, digest_bytes
from registry.core.records import RevocationReason

OWN_TEST_SET = digest_bytes(b"the evaluator's own test split")
REPORT = digest_bytes(b"evaluation report")
NONE = (0, 0, 0, 0)


def evaluator(memory, index: int):
    """A client for funded account ``index`` holding the Evaluator role only."""
    client = memory.other(index)
    grant(memory, EVALUATOR, client.account.address)
    return client


def attest(client, d: Digest, accuracy: int = 9_650, test_set: bytes = OWN_TEST_SET.raw):
    return send(client, "attest", d.raw, accuracy, test_set, REPORT.raw)


def attestations_of(memory, d: Digest, *accounts: str) -> list[tuple[int, int, int, int]]:
    found, block, chain_id = memory.client.call("attestations", d.raw, list(accounts))
    assert block == memory.client.w3.eth.block_number
    assert chain_id == memory.client.chain_id
    return [tuple(a) for a in found]


def made_event(memory, receipt, d: Digest, who: str, accuracy: int = 9_650) -> tuple[str, dict]:
    return (
        "AttestationMade",
        {
            "digest": d.raw,
            "evaluator": who,
            "accuracyBps": accuracy,
            "testSetDigest": OWN_TEST_SET.raw,
            "reportDigest": REPORT.raw,
            "attestedAt": memory.timestamp(receipt["transactionHash"]),
        },
    )


def test_attest_stores_one_slot_and_emits_attestation_made(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    receipt = attest(alice, digest("v1"), accuracy=10_000)
    when = memory.timestamp(receipt["transactionHash"])
    assert memory.events(receipt["transactionHash"]) == [
        made_event(memory, receipt, digest("v1"), memory.address(1), accuracy=10_000)
    ]
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [
        (when, receipt["blockNumber"], 10_000, 0)
    ]


def test_attest_reverts_when_caller_is_not_an_evaluator(memory) -> None:
    # The admin holds Registrar and Revoker; neither lets it attest, nor does no role at all.
    memory.client.register(request("v1"))
    for client, account in ((memory.other(2), memory.address(2)), (memory.client, memory.admin)):
        with pytest.raises(reverts.MissingRole) as caught:
            attest(client, digest("v1"))
        assert caught.value.account == account
        assert caught.value.role == "evaluator"
    assert attestations_of(memory, digest("v1"), memory.address(2), memory.admin) == [NONE, NONE]


def test_attest_reverts_when_the_evaluator_registered_the_checkpoint(memory) -> None:
    memory.client.register(request("v1"))
    grant(memory, EVALUATOR, memory.admin)
    with pytest.raises(reverts.SelfAttestation) as caught:
        attest(memory.client, digest("v1"))
    assert caught.value.digest == digest("v1")
    assert caught.value.evaluator == memory.admin
    assert attestations_of(memory, digest("v1"), memory.admin) == [NONE]


def test_attest_reverts_for_an_unknown_digest(memory) -> None:
    alice = evaluator(memory, 1)
    for d in (digest("never registered"), Digest.from_bytes(bytes(32))):
        with pytest.raises(reverts.UnknownModel) as caught:
            attest(alice, d)
        assert caught.value.digest == d
        assert attestations_of(memory, d, memory.address(1)) == [NONE]


def test_attest_reverts_for_a_revoked_checkpoint_with_its_revocation_time(memory) -> None:
    memory.client.register(request("v1"))
    revocation = send(
        memory.client, "revoke", digest("v1").raw, RevocationReason.SAFETY_ISSUE, bytes(32)
    )
    alice = evaluator(memory, 1)
    with pytest.raises(reverts.RevokedModel) as caught:
        attest(alice, digest("v1"))
    assert caught.value.digest == digest("v1")
    assert caught.value.revoked_at == memory.timestamp(revocation["transactionHash"])
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [NONE]


def test_attest_reverts_for_a_batched_leaf_and_for_its_tombstone(memory) -> None:
    tree = build_tree([request("a"), request("b")])
    memory.client.register_batch(tree.root, len(tree), digest_bytes(b"manifest"))
    alice = evaluator(memory, 1)
    leaf = tree.values[0]
    d = Digest.from_bytes(leaf[0])
    with pytest.raises(reverts.UnknownModel) as caught:
        attest(alice, d)
    assert caught.value.digest == d
    send(memory.client, "revokeLeaf", tree.root, leaf, tree.proof(0), 2)
    with pytest.raises(reverts.UnknownModel) as caught:
        attest(alice, d)
    assert caught.value.digest == d
    assert attestations_of(memory, d, memory.address(1)) == [NONE]


def test_attest_reverts_when_accuracy_exceeds_10000_bps(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    with pytest.raises(reverts.AccuracyOutOfRange) as caught:
        attest(alice, digest("v1"), accuracy=10_001)
    assert caught.value.accuracy_bps == 10_001
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [NONE]


def test_attest_reverts_without_a_test_set_digest(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    with pytest.raises(reverts.ZeroTestSetDigest):
        attest(alice, digest("v1"), test_set=bytes(32))
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [NONE]


def test_a_second_standing_attestation_reverts_with_the_first_ones_time(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    first = attest(alice, digest("v1"))
    before = attestations_of(memory, digest("v1"), memory.address(1))
    with pytest.raises(reverts.AlreadyAttested) as caught:
        attest(alice, digest("v1"), accuracy=9_999)
    assert caught.value.digest == digest("v1")
    assert caught.value.evaluator == memory.address(1)
    assert caught.value.attested_at == memory.timestamp(first["transactionHash"])
    assert attestations_of(memory, digest("v1"), memory.address(1)) == before


def test_revoke_attestation_by_its_evaluator_emits_and_marks_it_withdrawn(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    made = attest(alice, digest("v1"))
    receipt = send(alice, "revokeAttestation", digest("v1").raw)
    when = memory.timestamp(receipt["transactionHash"])
    assert memory.events(receipt["transactionHash"]) == [
        (
            "AttestationRevoked",
            {"digest": digest("v1").raw, "evaluator": memory.address(1), "revokedAt": when},
        )
    ]
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [
        (memory.timestamp(made["transactionHash"]), made["blockNumber"], 9_650, when)
    ]


def test_revoke_attestation_reverts_for_anyone_but_its_evaluator_and_when_withdrawn(
    memory,
) -> None:
    memory.client.register(request("v1"))
    alice, bob = evaluator(memory, 1), evaluator(memory, 2)
    attest(alice, digest("v1"))
    standing = attestations_of(memory, digest("v1"), memory.address(1), memory.address(2))
    # Bob has none to withdraw, and cannot withdraw Alice's; the admin neither.
    for client, account in ((bob, memory.address(2)), (memory.client, memory.admin)):
        with pytest.raises(reverts.NoAttestation) as caught:
            send(client, "revokeAttestation", digest("v1").raw)
        assert caught.value.digest == digest("v1")
        assert caught.value.evaluator == account
    assert attestations_of(memory, digest("v1"), memory.address(1), memory.address(2)) == standing
    send(alice, "revokeAttestation", digest("v1").raw)
    withdrawn = attestations_of(memory, digest("v1"), memory.address(1))
    with pytest.raises(reverts.NoAttestation) as caught:
        send(alice, "revokeAttestation", digest("v1").raw)
    assert caught.value.evaluator == memory.address(1)
    assert attestations_of(memory, digest("v1"), memory.address(1)) == withdrawn


def test_a_withdrawn_attestation_may_be_replaced(memory) -> None:
    memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    attest(alice, digest("v1"), accuracy=9_100)
    send(alice, "revokeAttestation", digest("v1").raw)
    again = attest(alice, digest("v1"), accuracy=9_400)
    assert memory.events(again["transactionHash"]) == [
        made_event(memory, again, digest("v1"), memory.address(1), accuracy=9_400)
    ]
    assert attestations_of(memory, digest("v1"), memory.address(1)) == [
        (memory.timestamp(again["transactionHash"]), again["blockNumber"], 9_400, 0)
    ]


def test_attestations_answers_per_evaluator_in_order_with_zeros_for_none(memory) -> None:
    memory.client.register(request("v1"))
    alice, bob = evaluator(memory, 1), evaluator(memory, 2)
    by_alice = attest(alice, digest("v1"), accuracy=9_100)
    by_bob = attest(bob, digest("v1"), accuracy=9_200)
    found = attestations_of(
        memory, digest("v1"), memory.address(2), memory.address(3), memory.address(1), ZERO_ADDRESS
    )
    assert found == [
        (memory.timestamp(by_bob["transactionHash"]), by_bob["blockNumber"], 9_200, 0),
        NONE,
        (memory.timestamp(by_alice["transactionHash"]), by_alice["blockNumber"], 9_100, 0),
        NONE,
    ]
    assert attestations_of(memory, digest("v1")) == []
    # Another checkpoint's attestations are its own.
    assert attestations_of(memory, digest("v2"), memory.address(1)) == [NONE]


def test_attestation_events_are_found_by_digest_and_by_evaluator(memory) -> None:
    memory.client.register(request("v1"))
    memory.client.register(request("v2"))
    alice, bob = evaluator(memory, 1), evaluator(memory, 2)
    attest(alice, digest("v1"))
    attest(bob, digest("v1"))
    wanted = attest(alice, digest("v2"))
    abi = {e["name"]: e for e in memory.client.artifact.abi if e["type"] == "event"}
    made = "0x" + event_abi_to_log_topic(abi["AttestationMade"]).hex()  # type: ignore[arg-type]
    alice_topic = "0x" + "00" * 12 + memory.address(1)[2:].lower()

    def logs(*topics):
        return memory.client.w3.eth.get_logs(
            {"address": memory.client.address, "fromBlock": 0, "topics": [made, *topics]}
        )

    assert len(logs("0x" + digest("v1").hex)) == 2
    assert len(logs(None, alice_topic)) == 2
    (only,) = logs("0x" + digest("v2").hex, alice_topic)
    assert only["transactionHash"] == wanted["transactionHash"]


def test_attest_costs_at_most_1_2_times_a_single_registration(memory) -> None:
    registration = memory.client.register(request("v1"))
    alice = evaluator(memory, 1)
    receipt = attest(alice, digest("v1"))
    assert registration.gas_used is not None
    assert receipt["gasUsed"] <= 1.2 * registration.gas_used
