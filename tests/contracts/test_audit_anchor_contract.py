"""Audit-log anchors on eth-tester: ``anchorAuditLog``, ``latestAuditAnchor`` and ``auditRoot``.

Any account anchors the RFC 9162 root of its own log; verifiers pin the account, so each one is
its own namespace. Every refusal is checked by its error class and fields and by the anchors
reading as before; every anchor by its event.
"""

from __future__ import annotations

import pytest
from chainkit import request
from contractkit import send

from registry.chain import reverts
from registry.core.digest import digest_bytes

NO_ANCHOR = (0, 0, 0, bytes(32))


def root(label: str) -> bytes:
    return digest_bytes(label.encode()).raw


def anchor(client, size: int, value: bytes) -> dict:
    return send(client, "anchorAuditLog", size, value)


def latest(memory, service: str) -> tuple[int, int, int, bytes]:
    found, block, chain_id = memory.client.call("latestAuditAnchor", service)
    assert block == memory.client.w3.eth.block_number
    assert chain_id == memory.client.chain_id
    return tuple(found)


def audit_root(memory, service: str, size: int) -> bytes:
    (found,) = memory.client.call("auditRoot", service, size)
    return bytes(found)


def test_anchor_emits_audit_log_anchored_and_is_the_latest(memory) -> None:
    service = memory.other(1)  # no role needed
    receipt = anchor(service, 10, root("ten"))
    when = memory.timestamp(receipt["transactionHash"])
    assert memory.events(receipt["transactionHash"]) == [
        (
            "AuditLogAnchored",
            {"service": memory.address(1), "size": 10, "root": root("ten"), "anchoredAt": when},
        )
    ]
    assert latest(memory, memory.address(1)) == (10, when, receipt["blockNumber"], root("ten"))
    assert audit_root(memory, memory.address(1), 10) == root("ten")


def test_each_account_anchors_in_its_own_namespace(memory) -> None:
    first, second = memory.other(1), memory.other(2)
    anchor(first, 100, root("first at 100"))
    # The second service may anchor a smaller size: the first's log is not its own.
    anchor(second, 5, root("second at 5"))
    assert latest(memory, memory.address(1))[0::3] == (100, root("first at 100"))
    assert latest(memory, memory.address(2))[0::3] == (5, root("second at 5"))
    assert audit_root(memory, memory.address(1), 5) == bytes(32)
    assert audit_root(memory, memory.address(2), 100) == bytes(32)
    assert latest(memory, memory.admin) == NO_ANCHOR


def test_earlier_roots_stay_readable_after_the_log_grows(memory) -> None:
    service = memory.other(1)
    anchor(service, 3, root("three"))
    anchor(service, 8, root("eight"))
    last = anchor(service, 21, root("twenty-one"))
    assert latest(memory, memory.address(1)) == (
        21,
        memory.timestamp(last["transactionHash"]),
        last["blockNumber"],
        root("twenty-one"),
    )
    assert [audit_root(memory, memory.address(1), n) for n in (3, 8, 21, 4, 0)] == [
        root("three"),
        root("eight"),
        root("twenty-one"),
        bytes(32),
        bytes(32),
    ]


@pytest.mark.parametrize("size", [7, 6, 1])
def test_anchor_reverts_when_the_log_does_not_grow(memory, size: int) -> None:
    service = memory.other(1)
    anchor(service, 7, root("seven"))
    before = latest(memory, memory.address(1))
    with pytest.raises(reverts.AuditLogNotGrowing) as caught:
        anchor(service, size, root("rewritten history"))
    assert caught.value.service == memory.address(1)
    assert caught.value.size == size
    assert caught.value.anchored_size == 7
    assert latest(memory, memory.address(1)) == before
    assert audit_root(memory, memory.address(1), size) == (
        root("seven") if size == 7 else bytes(32)
    )


def test_a_first_anchor_of_an_empty_log_reverts(memory) -> None:
    service = memory.other(1)
    with pytest.raises(reverts.AuditLogNotGrowing) as caught:
        anchor(service, 0, root("empty"))
    assert (caught.value.service, caught.value.size, caught.value.anchored_size) == (
        memory.address(1),
        0,
        0,
    )
    assert latest(memory, memory.address(1)) == NO_ANCHOR


def test_anchor_reverts_with_a_zero_root(memory) -> None:
    service = memory.other(1)
    anchor(service, 2, root("two"))
    before = latest(memory, memory.address(1))
    with pytest.raises(reverts.ZeroDigest):
        anchor(service, 3, bytes(32))
    assert latest(memory, memory.address(1)) == before
    assert audit_root(memory, memory.address(1), 3) == bytes(32)


def test_anchor_takes_the_largest_size_a_uint64_holds(memory) -> None:
    service = memory.other(1)
    anchor(service, 2**64 - 1, root("max"))
    assert latest(memory, memory.address(1))[0::3] == (2**64 - 1, root("max"))
    with pytest.raises(reverts.AuditLogNotGrowing) as caught:
        anchor(service, 2**64 - 1, root("max again"))
    assert caught.value.anchored_size == 2**64 - 1


def test_a_next_anchor_costs_less_than_a_first_and_both_less_than_a_registration(memory) -> None:
    # A first anchor writes two fresh slots (head and root), a next one one fresh slot and
    # rewrites the head: the cost an anchoring service pays on every interval.
    registration = memory.client.register(request("v1"))
    service = memory.other(1)
    first = anchor(service, 10, root("ten"))["gasUsed"]
    following = anchor(service, 20, root("twenty"))["gasUsed"]
    assert registration.gas_used is not None
    assert following < first
    assert following <= registration.gas_used
