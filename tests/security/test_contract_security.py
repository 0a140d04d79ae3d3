"""Adversarial cases against the ModelRegistry contract: who may call what, the admin hand-over,
hostile inputs at every boundary, front-running a registration, and the immutability of records.

``tests/contracts/`` triggers each custom error once; this file walks the boundaries as an attacker
would: every write function against every kind of caller, errors raised in the order a caller can
rely on, the edges of each fixed-width field, and raw storage compared before and after every write
so that no function can quietly edit a record it was not asked about. Reverts are checked by error
class and fields, successes by the events in their receipt (decoded straight from the ABI).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from chainkit import CARD, TEST_SET, ZERO32, ZERO_ADDRESS, digest, request
from chainkit import raw_register as register_raw
from contractkit import relay, send, sign_registration
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from registry.chain import reverts
from registry.core.batches import build_tree
from registry.core.digest import Digest, digest_bytes
from registry.core.policy import Policy
from registry.core.records import RevocationReason, Role
from registry.errors import ContractRevert
from registry.verify import verify_digest

UINT40_MAX = 2**40 - 1
ACCEPTED_REASONS = {1, 2, 3, 4, 5, 6, 7, 255}
# Storage slots in declaration order (see the layout comment in ModelRegistry.sol).
SLOT_ADMIN, SLOT_PENDING_ADMIN, SLOT_ROLES, SLOT_ENTRIES, SLOT_REVOCATIONS = range(5)


def calldata(chain, name: str, *args: Any) -> str:
    return "0x" + chain.client.abi.encode_call(name, *args).hex()


def call_as(chain, sender: str, name: str, *args: Any) -> bytes:
    """``eth_call`` of a write function from ``sender``: its verdict without a transaction."""
    client = chain.client
    tx = {"from": sender, "to": client.address, "data": calldata(chain, name, *args)}
    return client.rpc.eth_call(tx)


def events_of(chain, receipt: dict) -> list[tuple[str, dict]]:
    return chain.events(receipt["transactionHash"])


def fields(error: Exception, *names: str) -> tuple:
    return tuple(getattr(error, n) for n in names)


def admin_state(chain) -> tuple[str, str | None]:
    return chain.client.admin()


def entry_slot(d: Digest) -> int:
    return int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [d.raw, SLOT_ENTRIES])), "big")


def revocation_slot(d: Digest) -> int:
    return int.from_bytes(
        keccak(abi_encode(["bytes32", "uint256"], [d.raw, SLOT_REVOCATIONS])), "big"
    )


def raw_storage(chain, d: Digest) -> tuple[bytes, bytes, bytes]:
    """The three storage slots that hold everything the contract keeps about ``d``."""
    w3, address = chain.client.w3, chain.client.address
    return (
        bytes(w3.eth.get_storage_at(address, entry_slot(d))),
        bytes(w3.eth.get_storage_at(address, revocation_slot(d))),
        bytes(w3.eth.get_storage_at(address, revocation_slot(d) + 1)),
    )


def send_raw(chain, index: int, to: str, data: str = "0x", value: int = 0) -> dict:
    """Sign and send a transaction the client would never build (e.g. with ETH attached)."""
    w3 = chain.client.w3
    account = chain.account(index)
    fees = chain.client.transactions.fee_fields()
    tx = {
        "to": to,
        "data": data,
        "value": value,
        "gas": 150_000,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
        **fees,
    }
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    return dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30))


# --------------------------------------------------------------------------------------------
# Every write function against every kind of caller
# --------------------------------------------------------------------------------------------


# A batch the owner anchors in every cast, and one nobody has anchored yet.
BATCH = build_tree([request("batched-0"), request("batched-1")])
FRESH_BATCH = build_tree([request("fresh-batched")])
MANIFEST = digest_bytes(b"manifest")


@dataclass
class Cast:
    """Accounts in each position an attacker can occupy, on one chain."""

    chain: Any
    callers: dict[str, Any]  # caller kind -> RegistryClient signing as that account
    owner: Any  # registrar that registered ``target``
    target: Digest
    fresh_account: str  # holds nothing, touched by nobody

    def address(self, kind: str) -> str:
        return self.callers[kind].account.address

    def fingerprint(self) -> tuple:
        """Everything a refused call must leave as it was."""
        client = self.chain.client
        accounts = [c.account.address for c in self.callers.values()]
        accounts += [self.owner.account.address, self.fresh_account]
        roles = tuple(client.has_role(role, a) for a in accounts for role in Role)
        return (
            admin_state(self.chain),
            roles,
            raw_storage(self.chain, self.target),
            raw_storage(self.chain, digest("fresh")),
            client.call("lookupBatch", BATCH.root)[0],
            client.call("lookupBatch", FRESH_BATCH.root)[0],
            client.call("lookup", digest("batched-0").raw)[0],
            client.call("attestations", self.target.raw, accounts)[0],
        )


CALLERS = (
    "stranger",
    "registrar-only",
    "revoker-only",
    "admin-without-roles",
    "registrant-of-another-model",
    "removed-registrar",
    "renounced-roles",
    "evaluator-only",
)


def make_cast(chain) -> Cast:
    owner = chain.other(1, Role.REGISTRAR)
    owner.register(request("target"))
    owner.register_batch(BATCH.root, len(BATCH), MANIFEST)
    other_registrant = chain.other(5, Role.REGISTRAR)
    other_registrant.register(request("theirs"))
    removed = chain.other(6, Role.REGISTRAR)
    removed.register(request("old"))
    chain.client.remove_role(Role.REGISTRAR, removed.account.address)
    renounced = chain.other(7, Role.REGISTRAR, Role.REVOKER)
    renounced.renounce_role(Role.REGISTRAR)
    renounced.renounce_role(Role.REVOKER)
    # The deployer's client holds admin, registrar and revoker: strip it down to the admin alone.
    chain.client.remove_role(Role.REGISTRAR, chain.admin)
    chain.client.remove_role(Role.REVOKER, chain.admin)
    callers = {
        "stranger": chain.other(2),
        "registrar-only": chain.other(3, Role.REGISTRAR),
        "revoker-only": chain.other(4, Role.REVOKER),
        "admin-without-roles": chain.client,
        "registrant-of-another-model": other_registrant,
        "removed-registrar": removed,
        "renounced-roles": renounced,
        "evaluator-only": chain.other(9, Role.EVALUATOR),
    }
    return Cast(chain, callers, owner, digest("target"), chain.address(8))


@dataclass(frozen=True)
class WriteCase:
    """One write function: how to call it, who may, what a refusal and a success look like."""

    act: Callable[[Cast, Any], dict]
    allowed: frozenset[str]
    # (cast, caller address) -> the error class and the fields it must carry
    refusal: Callable[[Cast, str], tuple[type[ContractRevert], dict[str, Any]]]
    # (cast, caller address, receipt) -> the events a permitted call emits
    events: Callable[[Cast, str, dict], list[tuple[str, dict]]]
    # (cast, caller address) -> whether the permitted call took effect
    effect: Callable[[Cast, str], bool]


REGISTRARS = frozenset({"registrar-only", "registrant-of-another-model"})


def _registered(cast: Cast, who: str, receipt: dict) -> list[tuple[str, dict]]:
    at = cast.chain.timestamp(receipt["transactionHash"])
    return [
        (
            "ModelRegistered",
            {
                "digest": digest("fresh").raw,
                "registrant": who,
                "parent": ZERO32,
                "accuracyBps": 9_000,
                "testSetDigest": TEST_SET.raw,
                "cardDigest": CARD.raw,
                "registeredAt": at,
            },
        )
    ]


def _revoked(cast: Cast, who: str, receipt: dict) -> list[tuple[str, dict]]:
    at = cast.chain.timestamp(receipt["transactionHash"])
    return [
        (
            "ModelRevoked",
            {
                "digest": cast.target.raw,
                "revoker": who,
                "replacement": ZERO32,
                "reason": 2,
                "revokedAt": at,
            },
        )
    ]


def _renounced(cast: Cast, who: str, receipt: dict) -> list[tuple[str, dict]]:
    held = who in {cast.address(kind) for kind in REGISTRARS}
    return [("RoleRemoved", {"role": 1, "account": who, "sender": who})] if held else []


def _batch_refusal(cast: Cast, who: str) -> tuple[type[ContractRevert], dict[str, Any]]:
    return reverts.NotAllowedToRevokeBatch, {"account": who, "root": "0x" + BATCH.root.hex()}


AUDIT_ROOT = digest_bytes(b"audit log of 5 entries").raw
SIGNED = (digest("signed").raw, 9_100, TEST_SET.raw, CARD.raw, ZERO32)


def _relayed(cast: Cast, c) -> dict:
    """The owner signs a registration; the caller, whoever it is, sends it."""
    return relay(c, sign_registration(cast.chain.client, cast.owner.account, SIGNED))


def _attested(cast: Cast, who: str, receipt: dict) -> list[tuple[str, dict]]:
    return [
        (
            "AttestationMade",
            {
                "digest": cast.target.raw,
                "evaluator": who,
                "accuracyBps": 9_000,
                "testSetDigest": TEST_SET.raw,
                "reportDigest": ZERO32,
                "attestedAt": cast.chain.timestamp(receipt["transactionHash"]),
            },
        )
    ]


WRITES: dict[str, WriteCase] = {
    "registerBatch": WriteCase(
        act=lambda cast, c: c.transact("registerBatch", FRESH_BATCH.root, 1, MANIFEST.raw),
        allowed=REGISTRARS,
        refusal=lambda cast, who: (reverts.MissingRole, {"account": who, "role": "registrar"}),
        events=lambda cast, who, receipt: [
            (
                "BatchRegistered",
                {
                    "root": FRESH_BATCH.root,
                    "registrant": who,
                    "count": 1,
                    "manifestDigest": MANIFEST.raw,
                    "registeredAt": cast.chain.timestamp(receipt["transactionHash"]),
                },
            )
        ],
        effect=lambda cast, who: cast.chain.client.batch(FRESH_BATCH.root)[0].registrant == who,
    ),
    "revokeBatch": WriteCase(
        act=lambda cast, c: c.transact("revokeBatch", BATCH.root, 2),
        allowed=frozenset({"revoker-only"}),
        refusal=_batch_refusal,
        events=lambda cast, who, receipt: [
            (
                "BatchRevoked",
                {
                    "root": BATCH.root,
                    "revoker": who,
                    "reason": 2,
                    "revokedAt": cast.chain.timestamp(receipt["transactionHash"]),
                },
            )
        ],
        effect=lambda cast, who: not cast.chain.client.batch(BATCH.root)[0].valid,
    ),
    "revokeLeaf": WriteCase(
        act=lambda cast, c: c.transact(
            "revokeLeaf", BATCH.root, BATCH.values[0], BATCH.proof(0), 2
        ),
        allowed=frozenset({"revoker-only"}),
        refusal=_batch_refusal,
        events=lambda cast, who, receipt: [
            (
                "BatchLeafRevoked",
                {
                    "root": BATCH.root,
                    "digest": digest("batched-0").raw,
                    "revoker": who,
                    "reason": 2,
                    "revokedAt": cast.chain.timestamp(receipt["transactionHash"]),
                },
            )
        ],
        effect=lambda cast, who: (
            not cast.chain.client.is_valid_in_batch(BATCH.root, BATCH.values[0], BATCH.proof(0))
        ),
    ),
    "register": WriteCase(
        act=lambda cast, c: register_raw(c, digest("fresh").raw, accuracy=9_000),
        allowed=REGISTRARS,
        refusal=lambda cast, who: (reverts.MissingRole, {"account": who, "role": "registrar"}),
        events=_registered,
        effect=lambda cast, who: cast.chain.client.get(digest("fresh")).registrant == who,
    ),
    "revoke": WriteCase(
        act=lambda cast, c: c.transact("revoke", cast.target.raw, 2, ZERO32),
        allowed=frozenset({"revoker-only"}),
        refusal=lambda cast, who: (
            reverts.NotAllowedToRevoke,
            {"account": who, "digest": cast.target},
        ),
        events=_revoked,
        effect=lambda cast, who: not cast.chain.client.is_valid(cast.target),
    ),
    "grantRole": WriteCase(
        act=lambda cast, c: c.transact("grantRole", int(Role.REGISTRAR), cast.fresh_account),
        allowed=frozenset({"admin-without-roles"}),
        refusal=lambda cast, who: (reverts.NotAdmin, {"account": who}),
        events=lambda cast, who, receipt: [
            ("RoleGranted", {"role": 1, "account": cast.fresh_account, "sender": who})
        ],
        effect=lambda cast, who: cast.chain.client.has_role(Role.REGISTRAR, cast.fresh_account),
    ),
    "removeRole": WriteCase(
        act=lambda cast, c: c.transact(
            "removeRole", int(Role.REGISTRAR), cast.owner.account.address
        ),
        allowed=frozenset({"admin-without-roles"}),
        refusal=lambda cast, who: (reverts.NotAdmin, {"account": who}),
        events=lambda cast, who, receipt: [
            ("RoleRemoved", {"role": 1, "account": cast.owner.account.address, "sender": who})
        ],
        effect=lambda cast, who: (
            not cast.chain.client.has_role(Role.REGISTRAR, cast.owner.account.address)
        ),
    ),
    "transferAdmin": WriteCase(
        act=lambda cast, c: c.transact("transferAdmin", cast.fresh_account),
        allowed=frozenset({"admin-without-roles"}),
        refusal=lambda cast, who: (reverts.NotAdmin, {"account": who}),
        events=lambda cast, who, receipt: [
            ("AdminTransferStarted", {"admin": who, "pendingAdmin": cast.fresh_account})
        ],
        effect=lambda cast, who: admin_state(cast.chain) == (who, cast.fresh_account),
    ),
    "acceptAdmin": WriteCase(
        act=lambda cast, c: c.transact("acceptAdmin"),
        allowed=frozenset(),  # nothing is pending: not even the admin may accept
        refusal=lambda cast, who: (reverts.NotPendingAdmin, {"account": who}),
        events=lambda cast, who, receipt: [],
        effect=lambda cast, who: False,
    ),
    "renounceRole": WriteCase(
        act=lambda cast, c: c.transact("renounceRole", int(Role.REGISTRAR)),
        allowed=frozenset(CALLERS),  # anyone, but it only ever touches the caller's own role
        refusal=lambda cast, who: (ContractRevert, {}),
        events=_renounced,
        effect=lambda cast, who: not cast.chain.client.has_role(Role.REGISTRAR, who),
    ),
    "attest": WriteCase(
        act=lambda cast, c: send(c, "attest", cast.target.raw, 9_000, TEST_SET.raw, ZERO32),
        allowed=frozenset({"evaluator-only"}),
        refusal=lambda cast, who: (reverts.MissingRole, {"account": who, "role": "evaluator"}),
        events=_attested,
        effect=lambda cast, who: (
            cast.chain.client.call("attestations", cast.target.raw, [who])[0][0][2] == 9_000
        ),
    ),
    "revokeAttestation": WriteCase(
        act=lambda cast, c: send(c, "revokeAttestation", cast.target.raw),
        allowed=frozenset(),  # nobody has attested the target: not even an evaluator may
        refusal=lambda cast, who: (
            reverts.NoAttestation,
            {"digest": cast.target, "evaluator": who},
        ),
        events=lambda cast, who, receipt: [],
        effect=lambda cast, who: False,
    ),
    "anchorAuditLog": WriteCase(
        act=lambda cast, c: send(c, "anchorAuditLog", 5, AUDIT_ROOT),
        allowed=frozenset(CALLERS),  # anyone, in its own namespace
        refusal=lambda cast, who: (ContractRevert, {}),
        events=lambda cast, who, receipt: [
            (
                "AuditLogAnchored",
                {
                    "service": who,
                    "size": 5,
                    "root": AUDIT_ROOT,
                    "anchoredAt": cast.chain.timestamp(receipt["transactionHash"]),
                },
            )
        ],
        effect=lambda cast, who: (
            cast.chain.client.call("auditRoot", who, 5)[0] == AUDIT_ROOT
            and cast.chain.client.call("auditRoot", cast.owner.account.address, 5)[0] == ZERO32
        ),
    ),
    "cancelNonce": WriteCase(
        act=lambda cast, c: send(c, "cancelNonce", 0),
        allowed=frozenset(CALLERS),  # anyone, but only its own nonces
        refusal=lambda cast, who: (ContractRevert, {}),
        events=lambda cast, who, receipt: [("NonceCancelled", {"registrar": who, "nonce": 0})],
        effect=lambda cast, who: (
            cast.chain.client.call("nonces", who, 0)[0] == 1
            and cast.chain.client.call("nonces", cast.owner.account.address, 0)[0] == 0
        ),
    ),
    "registerBySig": WriteCase(
        act=_relayed,
        allowed=frozenset(CALLERS),  # anyone may send the owner's signed registration
        refusal=lambda cast, who: (ContractRevert, {}),
        events=lambda cast, who, receipt: [
            (
                "ModelRegistered",
                {
                    "digest": digest("signed").raw,
                    "registrant": cast.owner.account.address,
                    "parent": ZERO32,
                    "accuracyBps": 9_100,
                    "testSetDigest": TEST_SET.raw,
                    "cardDigest": CARD.raw,
                    "registeredAt": cast.chain.timestamp(receipt["transactionHash"]),
                },
            )
        ],
        effect=lambda cast, who: (
            cast.chain.client.get(digest("signed")).registrant == cast.owner.account.address
        ),
    ),
}


@pytest.mark.parametrize(
    ("function", "caller"),
    [pytest.param(f, c, id=f"{f}-by-{c}") for f in WRITES for c in CALLERS],
)
def test_write_function_by_each_kind_of_caller(memory, function: str, caller: str) -> None:
    cast = make_cast(memory)
    case = WRITES[function]
    who = cast.address(caller)
    before = cast.fingerprint()
    if caller not in case.allowed:
        cls, expected = case.refusal(cast, who)
        with pytest.raises(cls) as caught:
            case.act(cast, cast.callers[caller])
        assert type(caught.value) is cls
        assert {k: getattr(caught.value, k) for k in expected} == expected
        assert cast.fingerprint() == before
        return
    receipt = case.act(cast, cast.callers[caller])
    assert events_of(memory, receipt) == case.events(cast, who, receipt)
    assert case.effect(cast, who)
    if function == "renounceRole":
        assert cast.fingerprint()[2:] == before[2:]  # the records are untouched


def test_roles_of_one_account_are_independent_of_its_registrations(memory) -> None:
    # A registrar that loses its role keeps its records, and its registrant right to revoke them.
    cast = make_cast(memory)
    removed = cast.callers["removed-registrar"]
    record = memory.client.get(digest("old"))
    assert record is not None and record.registrant == removed.account.address
    assert record.valid
    revoked = removed.revoke(digest("old"), RevocationReason.REGISTERED_IN_ERROR)
    assert revoked.revocation.revoker == removed.account.address


# --------------------------------------------------------------------------------------------
# Two-step admin transfer
# --------------------------------------------------------------------------------------------


def _accept_by_wrong_account(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    with pytest.raises(reverts.NotPendingAdmin) as caught:
        chain.other(2).accept_admin()
    assert caught.value.account == chain.address(2)
    assert admin_state(chain) == (chain.admin, chain.address(1))


def _accept_with_no_pending(chain) -> None:
    for index in (0, 1):  # the admin itself, then anyone else
        client = chain.client if index == 0 else chain.other(index)
        with pytest.raises(reverts.NotPendingAdmin) as caught:
            client.accept_admin()
        assert caught.value.account == chain.address(index)
    assert admin_state(chain) == (chain.admin, None)


def _re_propose_replaces_pending(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    tx = chain.client.transfer_admin(chain.address(2))
    assert chain.events(tx) == [
        ("AdminTransferStarted", {"admin": chain.admin, "pendingAdmin": chain.address(2)})
    ]
    with pytest.raises(reverts.NotPendingAdmin):
        chain.other(1).accept_admin()
    assert admin_state(chain) == (chain.admin, chain.address(2))


def _propose_zero_cancels(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    chain.client.transfer_admin(ZERO_ADDRESS)
    with pytest.raises(reverts.NotPendingAdmin):
        chain.other(1).accept_admin()
    # Nobody can accept "the zero address" either: the admin is still the admin and acts as one.
    with pytest.raises(reverts.NotPendingAdmin):
        chain.client.accept_admin()
    assert admin_state(chain) == (chain.admin, None)
    chain.client.grant_role(Role.REVOKER, chain.address(3))
    assert chain.client.has_role(Role.REVOKER, chain.address(3))


def _old_admin_loses_all_admin_powers(chain) -> None:
    old = chain.client
    chain.client.transfer_admin(chain.address(1))
    chain.other(1).accept_admin()
    refusals = [
        (lambda: old.grant_role(Role.REGISTRAR, chain.address(3)), reverts.NotAdmin),
        (lambda: old.remove_role(Role.REGISTRAR, chain.admin), reverts.NotAdmin),
        (lambda: old.transfer_admin(chain.admin), reverts.NotAdmin),
        (lambda: old.transfer_admin(ZERO_ADDRESS), reverts.NotAdmin),  # cannot even cancel
        (lambda: old.accept_admin(), reverts.NotPendingAdmin),  # nor take it back
    ]
    for act, cls in refusals:
        with pytest.raises(cls) as caught:
            act()
        assert caught.value.account == chain.admin
    assert admin_state(chain) == (chain.address(1), None)


def _pending_admin_cannot_act_before_accepting(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    pending = chain.other(1)
    for act in (
        lambda: pending.grant_role(Role.REGISTRAR, chain.address(1)),
        lambda: pending.remove_role(Role.REGISTRAR, chain.admin),
        lambda: pending.transfer_admin(chain.address(2)),
    ):
        with pytest.raises(reverts.NotAdmin) as caught:
            act()
        assert caught.value.account == chain.address(1)
    assert admin_state(chain) == (chain.admin, chain.address(1))
    assert not chain.client.has_role(Role.REGISTRAR, chain.address(1))


def _transfer_to_self(chain) -> None:
    chain.client.transfer_admin(chain.admin)
    assert admin_state(chain) == (chain.admin, chain.admin)
    tx = chain.client.accept_admin()
    assert chain.events(tx) == [
        ("AdminTransferred", {"previousAdmin": chain.admin, "newAdmin": chain.admin})
    ]
    assert admin_state(chain) == (chain.admin, None)


def _accept_twice(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    successor = chain.other(1)
    successor.accept_admin()
    with pytest.raises(reverts.NotPendingAdmin) as caught:
        successor.accept_admin()
    assert caught.value.account == chain.address(1)
    assert admin_state(chain) == (chain.address(1), None)


def _new_admin_gets_no_role(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    successor = chain.other(1)
    successor.accept_admin()
    assert not chain.client.has_role(Role.REGISTRAR, chain.address(1))
    assert not chain.client.has_role(Role.REVOKER, chain.address(1))
    with pytest.raises(reverts.MissingRole) as caught:
        successor.register(request("v1"))
    assert fields(caught.value, "account", "role") == (chain.address(1), "registrar")


def _proposal_does_not_survive_the_handover(chain) -> None:
    chain.client.transfer_admin(chain.address(1))
    successor = chain.other(1)
    successor.accept_admin()
    successor.transfer_admin(chain.address(2))
    with pytest.raises(reverts.NotPendingAdmin):
        chain.client.accept_admin()
    tx = chain.other(2).accept_admin()
    assert chain.events(tx) == [
        ("AdminTransferred", {"previousAdmin": chain.address(1), "newAdmin": chain.address(2)})
    ]


ADMIN_SCENARIOS = {
    "accept-by-wrong-account": _accept_by_wrong_account,
    "accept-with-no-pending": _accept_with_no_pending,
    "re-propose-replaces-pending": _re_propose_replaces_pending,
    "propose-zero-cancels": _propose_zero_cancels,
    "old-admin-loses-all-admin-powers": _old_admin_loses_all_admin_powers,
    "pending-admin-cannot-act-before-accepting": _pending_admin_cannot_act_before_accepting,
    "transfer-to-self": _transfer_to_self,
    "accept-twice": _accept_twice,
    "new-admin-gets-no-role": _new_admin_gets_no_role,
    "proposal-does-not-survive-the-handover": _proposal_does_not_survive_the_handover,
}


@pytest.mark.parametrize("scenario", list(ADMIN_SCENARIOS), ids=list(ADMIN_SCENARIOS))
def test_admin_transfer_edge_case(backend, scenario: str) -> None:
    ADMIN_SCENARIOS[scenario](backend)


# --------------------------------------------------------------------------------------------
# Hostile inputs: zero digests, error order, fixed-width boundaries
# --------------------------------------------------------------------------------------------


def _zero_register(position: str):
    def act(chain) -> None:
        args = {"digest": digest("v1").raw, "test_set": TEST_SET.raw, "card": CARD.raw}
        if position == "parent":
            receipt = register_raw(chain.client, digest("v1").raw, parent=ZERO32)
            assert events_of(chain, receipt)[0][1]["parent"] == ZERO32
            assert chain.client.get(digest("v1")).parent is None
            return
        args[position] = ZERO32
        expected = {
            "digest": reverts.ZeroDigest,
            "test_set": reverts.ZeroTestSetDigest,
            "card": reverts.ZeroCardDigest,
        }
        with pytest.raises(expected[position]):
            register_raw(chain.client, args["digest"], test_set=args["test_set"], card=args["card"])
        assert not chain.client.is_valid(digest("v1"))

    return act


def _zero_revoke_digest(chain) -> None:
    with pytest.raises(reverts.UnknownModel) as caught:
        chain.client.transact("revoke", ZERO32, 1, ZERO32)
    assert caught.value.digest.raw == ZERO32


def _zero_revoke_replacement(chain) -> None:
    chain.client.register(request("v1"))
    receipt = chain.client.transact("revoke", digest("v1").raw, 1, ZERO32)
    assert events_of(chain, receipt)[0][1]["replacement"] == ZERO32
    assert chain.client.get(digest("v1")).revocation.replacement is None


def _zero_views(chain) -> None:
    assert chain.client.call("isRegistered", ZERO32) == (False,)
    assert chain.client.call("isValid", ZERO32) == (False,)
    with pytest.raises(reverts.UnknownModel):
        chain.client.call("getRecord", ZERO32)


ZERO_POSITIONS = {
    "register-digest": _zero_register("digest"),
    "register-test-set": _zero_register("test_set"),
    "register-card": _zero_register("card"),
    "register-parent-means-first-version": _zero_register("parent"),
    "revoke-digest": _zero_revoke_digest,
    "revoke-replacement-means-none": _zero_revoke_replacement,
    "views-of-zero": _zero_views,
}


@pytest.mark.parametrize("position", list(ZERO_POSITIONS), ids=list(ZERO_POSITIONS))
def test_zero_digest_in_each_position(backend, position: str) -> None:
    ZERO_POSITIONS[position](backend)


# Which check wins when a call breaks several rules: a caller (and the client's error message)
# can rely on this order. The role comes first, so a stranger learns nothing about its inputs.
def _register_breaking(chain, caller: int | None, **overrides: Any) -> None:
    client = chain.client if caller is None else chain.other(caller)
    register_raw(client, **{"d": digest("v1").raw, **overrides})


def _revoke_breaking(chain, caller: int | None, target: str, reason: int, replacement: str):
    """Register v1 (revoked when ``target`` is 'revoked v1'), then break the revoke rules."""
    chain.client.register(request("v1"))
    if target == "revoked v1":
        chain.client.revoke(digest("v1"), RevocationReason.SUPERSEDED)
    label = "v1" if target == "revoked v1" else target
    client = chain.client if caller is None else chain.other(caller)
    client.transact("revoke", digest(label).raw, reason, digest(replacement).raw)


ERROR_ORDER: dict[str, tuple[Callable[[Any], None], type, Callable[[Any], dict]]] = {
    "register-role-before-zero-digest": (
        lambda c: _register_breaking(c, 2, d=ZERO32, accuracy=65_535),
        reverts.MissingRole,
        lambda c: {"account": c.address(2), "role": "registrar"},
    ),
    "register-zero-digest-before-accuracy": (
        lambda c: _register_breaking(c, None, d=ZERO32, accuracy=65_535, test_set=ZERO32),
        reverts.ZeroDigest,
        lambda c: {},
    ),
    "register-accuracy-before-zero-test-set": (
        lambda c: _register_breaking(c, None, accuracy=10_001, test_set=ZERO32, card=ZERO32),
        reverts.AccuracyOutOfRange,
        lambda c: {"accuracy_bps": 10_001},
    ),
    "register-test-set-before-card": (
        lambda c: _register_breaking(c, None, test_set=ZERO32, card=ZERO32, parent=b"\x01" * 32),
        reverts.ZeroTestSetDigest,
        lambda c: {},
    ),
    "register-card-before-parent": (
        lambda c: _register_breaking(c, None, card=ZERO32, parent=b"\x01" * 32),
        reverts.ZeroCardDigest,
        lambda c: {},
    ),
    "revoke-unknown-before-caller": (
        lambda c: _revoke_breaking(c, 2, "ghost", 0, "ghost"),
        reverts.UnknownModel,
        lambda c: {"digest": digest("ghost")},
    ),
    "revoke-caller-before-already-revoked": (
        lambda c: _revoke_breaking(c, 2, "revoked v1", 0, "v1"),
        reverts.NotAllowedToRevoke,
        lambda c: {"account": c.address(2), "digest": digest("v1")},
    ),
    "revoke-already-revoked-before-reason": (
        lambda c: _revoke_breaking(c, None, "revoked v1", 0, "v1"),
        reverts.AlreadyRevoked,
        lambda c: {"digest": digest("v1")},
    ),
    "revoke-reason-before-replacement": (
        lambda c: _revoke_breaking(c, None, "v1", 8, "v1"),
        reverts.InvalidReason,
        lambda c: {"reason": 8},
    ),
}


@pytest.mark.parametrize("case", list(ERROR_ORDER), ids=list(ERROR_ORDER))
def test_the_first_broken_rule_decides_the_error(memory, case: str) -> None:
    act, cls, expected = ERROR_ORDER[case]
    with pytest.raises(cls) as caught:
        act(memory)
    assert type(caught.value) is cls
    assert {k: getattr(caught.value, k) for k in expected(memory)} == expected(memory)


def test_every_reason_code_from_0_to_255(backend) -> None:
    backend.client.register(request("v1"))
    accepted = set()
    for code in range(256):
        try:
            call_as(backend, backend.admin, "revoke", digest("v1").raw, code, ZERO32)
        except reverts.InvalidReason as exc:
            assert exc.reason == code
        else:
            accepted.add(code)
    assert accepted == ACCEPTED_REASONS


@pytest.mark.anvil
@pytest.mark.parametrize(
    ("accuracy", "accepted"),
    [(10_000, True), (10_001, False), (65_535, False)],
    ids=["10000-accepted", "10001-refused", "65535-refused"],
)
def test_accuracy_boundary_on_a_node(anvil, accuracy: int, accepted: bool) -> None:
    if accepted:
        receipt = register_raw(anvil.client, digest("v1").raw, accuracy=accuracy)
        assert events_of(anvil, receipt)[0][1]["accuracyBps"] == accuracy
        assert anvil.client.get(digest("v1")).accuracy_bps == accuracy
        return
    with pytest.raises(reverts.AccuracyOutOfRange) as caught:
        register_raw(anvil.client, digest("v1").raw, accuracy=accuracy)
    assert caught.value.accuracy_bps == accuracy
    assert anvil.client.get(digest("v1")) is None


def _parent_self(chain) -> None:
    with pytest.raises(reverts.InvalidParent) as caught:
        register_raw(chain.client, digest("v1").raw, parent=digest("v1").raw)
    assert fields(caught.value, "digest", "parent") == (digest("v1"), digest("v1"))
    assert chain.client.get(digest("v1")) is None


def _replacement_by_another_registrant(chain) -> None:
    chain.client.register(request("v1"))
    chain.other(1, Role.REGISTRAR).register(request("v2"))
    record = chain.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    assert record.revocation.replacement == digest("v2")


def _replacement_is_own_child(chain) -> None:
    chain.client.register(request("v1"))
    chain.client.register(request("v2", parent=digest("v1")))
    record = chain.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    assert record.revocation.replacement == digest("v2")
    assert chain.client.get(digest("v2")).parent == digest("v1")


def _replacement_registered_after_a_refusal(chain) -> None:
    chain.client.register(request("v1"))
    with pytest.raises(reverts.InvalidReplacement):
        chain.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    chain.client.register(request("v2"))
    chain.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    assert not chain.client.is_valid(digest("v1"))


def _parent_revoked_is_accepted(chain) -> None:
    # Lineage records history: the fix of a withdrawn model names the model it fixes.
    chain.client.register(request("v1"))
    chain.client.revoke(digest("v1"), RevocationReason.SAFETY_ISSUE)
    child = chain.client.register(request("v2", parent=digest("v1"))).record
    assert (child.parent, child.valid) == (digest("v1"), True)


REFERENCES = {
    "parent-self": _parent_self,
    "parent-revoked-accepted": _parent_revoked_is_accepted,
    "replacement-by-another-registrant-accepted": _replacement_by_another_registrant,
    "replacement-is-own-child-accepted": _replacement_is_own_child,
    "replacement-registered-after-a-refusal": _replacement_registered_after_a_refusal,
}


@pytest.mark.parametrize("case", list(REFERENCES), ids=list(REFERENCES))
def test_parent_and_replacement_references(backend, case: str) -> None:
    REFERENCES[case](backend)


def test_revoking_a_replacement_later_leaves_the_earlier_pointer_as_history(memory) -> None:
    memory.client.register(request("v1"))
    memory.client.register(request("v2"))
    memory.client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2"))
    memory.client.revoke(digest("v2"), RevocationReason.SAFETY_ISSUE)
    record = memory.client.get(digest("v1"))
    assert record.revocation.replacement == digest("v2")
    assert not memory.client.is_valid(digest("v2"))


# --------------------------------------------------------------------------------------------
# uint40 timestamps (anvil: eth-tester refuses timestamps past the year 3017)
# --------------------------------------------------------------------------------------------


def _next_block_at(anvil, timestamp: int) -> None:
    # evm_revert after the test restores the node's clock along with its state.
    anvil.node.rpc("evm_setNextBlockTimestamp", [timestamp])


@pytest.mark.anvil
@pytest.mark.parametrize("operation", ["register", "revoke"])
def test_largest_uint40_timestamp_is_stored_exactly(anvil, operation: str) -> None:
    if operation == "revoke":
        anvil.client.register(request("v1"))
    _next_block_at(anvil, UINT40_MAX)
    if operation == "register":
        anvil.client.register(request("v1"))
    else:
        anvil.client.revoke(digest("v1"), RevocationReason.OTHER)
    (stored,) = anvil.client.call("getRecord", digest("v1").raw)
    assert stored[1 if operation == "register" else 4] == UINT40_MAX
    assert anvil.client.is_valid(digest("v1")) is (operation == "register")


@pytest.mark.anvil
def test_registration_past_the_uint40_range_stays_registered(anvil) -> None:
    _next_block_at(anvil, UINT40_MAX + 1)
    register_raw(anvil.client, digest("v1").raw, accuracy=9_000)
    assert anvil.client.call("isRegistered", digest("v1").raw) == (True,)
    with pytest.raises(reverts.AlreadyRegistered):
        register_raw(anvil.other(1, Role.REGISTRAR), digest("v1").raw, accuracy=10_000)


@pytest.mark.anvil
def test_revocation_past_the_uint40_range_stays_revoked(anvil) -> None:
    anvil.client.register(request("v1"))
    _next_block_at(anvil, UINT40_MAX + 1)
    anvil.client.transact("revoke", digest("v1").raw, 2, ZERO32)
    assert anvil.client.call("isValid", digest("v1").raw) == (False,)


# --------------------------------------------------------------------------------------------
# Front-running a registration seen in the mempool
# --------------------------------------------------------------------------------------------


def _pending_transaction(node, sender: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = node.rpc("txpool_content")["pending"]
        for address, by_nonce in pending.items():
            if address.lower() == sender.lower():
                (tx,) = by_nonce.values()
                return dict(tx)
        time.sleep(0.01)
    raise AssertionError(f"no pending transaction from {sender} within {timeout} s")


@pytest.mark.anvil
@pytest.mark.parametrize("copy", ["copied-calldata", "inflated-accuracy"])
def test_front_running_registrar_takes_the_digest_but_a_trusting_clinic_refuses_it(
    anvil, copy: str
) -> None:
    node, w3 = anvil.node, anvil.client.w3
    honest = anvil.other(1, Role.REGISTRAR, tx_timeout_s=30)
    thief = anvil.other(2, Role.REGISTRAR)
    wanted = request("release", accuracy=9_100)
    node.rpc("evm_setAutomine", [False])
    pool = ThreadPoolExecutor(1)
    try:
        honest_call = pool.submit(honest.register, wanted)
        seen = _pending_transaction(node, honest.account.address)
        # The thief reads the digest out of the pending calldata and outbids the honest fee.
        data = seen["input"]
        if copy == "inflated-accuracy":
            stolen = (wanted.digest.raw, 10_000, TEST_SET.raw, CARD.raw, ZERO32)
            data = calldata(anvil, "register", *stolen)
        tip = int(seen["maxPriorityFeePerGas"], 16) * 10
        bid = {
            "to": to_checksum_address(seen["to"]),
            "data": data,
            "gas": 120_000,
            "nonce": w3.eth.get_transaction_count(thief.account.address, "pending"),
            "chainId": w3.eth.chain_id,
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": int(seen["maxFeePerGas"], 16) + tip,
        }
        w3.eth.send_raw_transaction(thief.account.sign_transaction(bid).raw_transaction)
        node.rpc("evm_mine")
        with pytest.raises(reverts.AlreadyRegistered) as caught:
            honest_call.result(timeout=30)
    finally:
        node.rpc("evm_setAutomine", [True])
        node.rpc("evm_mine")  # whatever is still pending, so the honest call returns
        pool.shutdown(wait=True)
    assert caught.value.digest == wanted.digest
    assert caught.value.registrant == thief.account.address
    failed = w3.eth.get_transaction_receipt(caught.value.details["tx_hash"])
    assert failed["status"] == 0
    block = w3.eth.get_block(failed["blockNumber"], full_transactions=True)
    assert [t["from"] for t in block["transactions"]] == [
        thief.account.address,
        honest.account.address,
    ]

    record = anvil.client.get(wanted.digest)
    assert record.registrant == thief.account.address
    # The mitigation: a clinic pins the registrants it trusts, and refuses everyone else's record.
    clinic = anvil.reader()
    trusting = Policy(trusted_registrants=frozenset({honest.account.address.lower()}))
    verdict = verify_digest(clinic, wanted.digest, trusting)
    assert (verdict.verified, verdict.reason) == (False, "policy")
    assert thief.account.address in verdict.detail
    # Without it, a minimum accuracy alone is no defence: the thief's record passes it, and with
    # an inflated accuracy it claims more than the honest team measured.
    open_door = verify_digest(clinic, wanted.digest, Policy(min_accuracy_bps=9_000))
    assert open_door.verified
    assert open_door.record.accuracy_bps == (10_000 if copy == "inflated-accuracy" else 9_100)


def test_a_squatted_digest_can_be_revoked_by_a_revoker_but_never_reclaimed(memory) -> None:
    # What an admin can do after a front-run: the squatter's record can be withdrawn by a revoker
    # (not by the honest registrant), and the digest stays taken: the release needs new bytes.
    honest = memory.other(1, Role.REGISTRAR)
    squatter = memory.other(2, Role.REGISTRAR)
    squatter.register(request("release", accuracy=10_000))
    with pytest.raises(reverts.NotAllowedToRevoke) as caught:
        honest.revoke(digest("release"), RevocationReason.REGISTERED_IN_ERROR)
    assert caught.value.account == memory.address(1)
    memory.client.revoke(digest("release"), RevocationReason.SECURITY_COMPROMISE)
    memory.client.remove_role(Role.REGISTRAR, memory.address(2))
    with pytest.raises(reverts.AlreadyRegistered) as again:
        honest.register(request("release"))
    assert again.value.registrant == memory.address(2)
    verdict = verify_digest(memory.reader(), digest("release"))
    assert (verdict.verified, verdict.reason) == (False, "revoked")


# --------------------------------------------------------------------------------------------
# Records are immutable: raw storage of other digests before and after every write
# --------------------------------------------------------------------------------------------


def test_raw_storage_matches_the_documented_packing(memory) -> None:
    memory.client.register(request("v1"))
    memory.client.register(request("v2", accuracy=10_000))
    memory.client.revoke(digest("v1"), RevocationReason.REGULATORY, digest("v2"))
    entry, revocation, replacement = (
        int.from_bytes(slot, "big") for slot in raw_storage(memory, digest("v1"))
    )
    (stored,) = memory.client.call("getRecord", digest("v1").raw)
    mask40 = 2**40 - 1
    assert to_checksum_address((entry & (2**160 - 1)).to_bytes(20, "big")) == memory.admin
    assert (entry >> 160) & mask40 == stored[1]
    assert (entry >> 200) & mask40 == stored[2]
    assert entry >> 240 == stored[3] == 9_731
    assert revocation & mask40 == stored[4]
    assert (revocation >> 40) & mask40 == stored[5]
    assert revocation >> 80 == stored[6] == 6
    assert replacement.to_bytes(32, "big") == stored[7] == digest("v2").raw
    assert raw_storage(memory, digest("v2"))[1:] == (ZERO32, ZERO32)
    w3, address = memory.client.w3, memory.client.address
    memory.client.transfer_admin(memory.address(1))
    word = abi_encode(["address"], [memory.admin])
    assert bytes(w3.eth.get_storage_at(address, SLOT_ADMIN)) == word
    assert bytes(w3.eth.get_storage_at(address, SLOT_PENDING_ADMIN)) == abi_encode(
        ["address"], [memory.address(1)]
    )
    inner = keccak(abi_encode(["uint8", "uint256"], [int(Role.REVOKER), SLOT_ROLES]))
    held = keccak(abi_encode(["address", "bytes32"], [memory.admin, inner]))
    assert int.from_bytes(w3.eth.get_storage_at(address, held), "big") == 1


@dataclass
class Bystanders:
    """Records that a write about something else must leave bit for bit as they are."""

    owner: Any
    digests: tuple[Digest, ...]

    def snapshot(self, chain) -> dict:
        return {d: (raw_storage(chain, d), chain.client.lookup(d)[0]) for d in self.digests}


def make_bystanders(chain) -> Bystanders:
    owner = chain.other(1, Role.REGISTRAR)
    owner.register(request("root"))
    owner.register(request("kept", parent=digest("root")))
    owner.register(request("gone"))
    chain.client.revoke(digest("gone"), RevocationReason.SAFETY_ISSUE, digest("kept"))
    chain.client.register(request("victim"))
    for valid in ("root", "kept", "victim"):  # naming a replacement must not touch it
        assert raw_storage(chain, digest(valid))[1:] == (ZERO32, ZERO32)
    return Bystanders(owner, (digest("root"), digest("kept"), digest("gone")))


def _raises(cls, act) -> None:
    with pytest.raises(cls):
        act()


def _attest(evaluator, label: str) -> dict:
    return send(evaluator, "attest", digest(label).raw, 9_000, TEST_SET.raw, ZERO32)


KEPT_BATCH = build_tree([request("kept", parent=digest("root")), request("new-batched")])


# Each entry: (function it exercises, action). Failing attempts count: a revert must undo it all.
IMMUTABILITY: dict[str, tuple[str, Callable[[Any, Bystanders], None]]] = {
    "register-new": ("register", lambda c, b: c.client.register(request("new"))),
    "register-child-of-kept": (
        "register",
        lambda c, b: c.other(3, Role.REGISTRAR).register(request("child", parent=digest("kept"))),
    ),
    "register-duplicate-of-kept-by-another-registrar": (
        "register",
        lambda c, b: _raises(
            reverts.AlreadyRegistered,
            lambda: register_raw(c.other(3, Role.REGISTRAR), digest("kept").raw, accuracy=10_000),
        ),
    ),
    "register-duplicate-of-gone-by-its-registrant": (
        "register",
        lambda c, b: _raises(
            reverts.AlreadyRegistered, lambda: register_raw(b.owner, digest("gone").raw)
        ),
    ),
    "revoke-victim-naming-kept": (
        "revoke",
        lambda c, b: c.client.revoke(digest("victim"), RevocationReason.SUPERSEDED, digest("kept")),
    ),
    "revoke-kept-by-another-registrar": (
        "revoke",
        lambda c, b: _raises(
            reverts.NotAllowedToRevoke,
            lambda: c.other(3, Role.REGISTRAR).revoke(digest("kept"), RevocationReason.OTHER),
        ),
    ),
    "revoke-gone-again": (
        "revoke",
        lambda c, b: _raises(
            reverts.AlreadyRevoked, lambda: c.client.revoke(digest("gone"), RevocationReason.OTHER)
        ),
    ),
    "revoke-kept-naming-gone": (
        "revoke",
        lambda c, b: _raises(
            reverts.InvalidReplacement,
            lambda: c.client.revoke(digest("kept"), RevocationReason.OTHER, digest("gone")),
        ),
    ),
    "register-batch-holding-kept": (
        "registerBatch",
        lambda c, b: c.client.register_batch(KEPT_BATCH.root, len(KEPT_BATCH), MANIFEST),
    ),
    "revoke-batch-holding-kept": (
        "revokeBatch",
        lambda c, b: (
            c.client.register_batch(KEPT_BATCH.root, len(KEPT_BATCH), MANIFEST),
            c.client.revoke_batch(KEPT_BATCH.root, RevocationReason.SAFETY_ISSUE),
        ),
    ),
    # A batch's registrant cannot withdraw another registrant's single record through its batch.
    "revoke-leaf-of-kept-through-a-batch": (
        "revokeLeaf",
        lambda c, b: (
            c.client.register_batch(KEPT_BATCH.root, len(KEPT_BATCH), MANIFEST),
            _raises(
                reverts.AlreadyRegistered,
                lambda: c.client.revoke_leaf(
                    KEPT_BATCH.root,
                    KEPT_BATCH.values[0],
                    KEPT_BATCH.proof(0),
                    RevocationReason.SAFETY_ISSUE,
                ),
            ),
        ),
    ),
    "attest-kept": ("attest", lambda c, b: _attest(c.other(4, Role.EVALUATOR), "kept")),
    "attest-gone-refused": (
        "attest",
        lambda c, b: _raises(
            reverts.RevokedModel, lambda: _attest(c.other(4, Role.EVALUATOR), "gone")
        ),
    ),
    "withdraw-an-attestation-of-kept": (
        "revokeAttestation",
        lambda c, b: (
            _attest(c.other(4, Role.EVALUATOR), "kept"),
            send(c.other(4), "revokeAttestation", digest("kept").raw),
        ),
    ),
    "anchor-an-audit-log": (
        "anchorAuditLog",
        lambda c, b: send(b.owner, "anchorAuditLog", 9, AUDIT_ROOT),
    ),
    "relay-a-signed-child-of-kept": (
        "registerBySig",
        lambda c, b: relay(
            c.other(4),
            sign_registration(
                c.client,
                b.owner.account,
                (digest("signed child").raw, 9_000, TEST_SET.raw, CARD.raw, digest("kept").raw),
            ),
        ),
    ),
    "relay-a-signed-duplicate-of-kept-by-another-registrar": (
        "registerBySig",
        lambda c, b: _raises(
            reverts.AlreadyRegistered,
            lambda: relay(
                c.other(4),
                sign_registration(
                    c.client,
                    c.other(3, Role.REGISTRAR).account,
                    (digest("kept").raw, 10_000, TEST_SET.raw, CARD.raw, ZERO32),
                ),
            ),
        ),
    ),
    "cancel-a-nonce": ("cancelNonce", lambda c, b: send(b.owner, "cancelNonce", 0)),
    "grant-role": ("grantRole", lambda c, b: c.client.grant_role(Role.REVOKER, c.address(4))),
    "remove-registrant-role": (
        "removeRole",
        lambda c, b: c.client.remove_role(Role.REGISTRAR, b.owner.account.address),
    ),
    "registrant-renounces": ("renounceRole", lambda c, b: b.owner.renounce_role(Role.REGISTRAR)),
    "transfer-admin": ("transferAdmin", lambda c, b: c.client.transfer_admin(c.address(4))),
    "accept-admin": (
        "acceptAdmin",
        lambda c, b: (c.client.transfer_admin(c.address(4)), c.other(4).accept_admin()),
    ),
}


@pytest.mark.parametrize("operation", list(IMMUTABILITY), ids=list(IMMUTABILITY))
def test_write_leaves_other_records_bit_for_bit(memory, operation: str) -> None:
    bystanders = make_bystanders(memory)
    before = bystanders.snapshot(memory)
    IMMUTABILITY[operation][1](memory, bystanders)
    assert bystanders.snapshot(memory) == before


def test_every_write_function_in_the_abi_is_covered_and_none_is_payable(memory) -> None:
    abi = memory.client.artifact.abi
    writes = {
        e["name"]
        for e in abi
        if e["type"] == "function" and e["stateMutability"] not in ("view", "pure")
    }
    assert writes == {function for function, _ in IMMUTABILITY.values()}
    assert writes == set(WRITES)
    assert not [e for e in abi if e.get("stateMutability") == "payable"]
    assert not [e for e in abi if e["type"] in ("receive", "fallback")]


def test_registering_someone_elses_checkpoint_changes_nothing(backend) -> None:
    original = backend.other(1, Role.REGISTRAR)
    original.register(request("theirs", accuracy=8_800))
    before = raw_storage(backend, digest("theirs"))
    copier = backend.other(2, Role.REGISTRAR)
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        register_raw(copier, digest("theirs").raw, accuracy=10_000, parent=ZERO32)
    assert fields(caught.value, "digest", "registrant") == (digest("theirs"), backend.address(1))
    with pytest.raises(reverts.NotAllowedToRevoke) as refused:
        copier.revoke(digest("theirs"), RevocationReason.REGISTERED_IN_ERROR)
    assert fields(refused.value, "account", "digest") == (backend.address(2), digest("theirs"))
    assert raw_storage(backend, digest("theirs")) == before
    record = backend.client.get(digest("theirs"))
    assert (record.registrant, record.accuracy_bps, record.valid) == (
        backend.address(1),
        8_800,
        True,
    )


# --------------------------------------------------------------------------------------------
# No ETH
# --------------------------------------------------------------------------------------------


NO_ETH = {
    "plain-transfer": lambda chain: "0x",
    "register-with-value": lambda chain: calldata(
        chain, "register", digest("paid").raw, 9_000, TEST_SET.raw, CARD.raw, ZERO32
    ),
    "unknown-selector-with-value": lambda chain: "0xdeadbeef",
}


@pytest.mark.parametrize("payload", list(NO_ETH), ids=list(NO_ETH))
def test_the_contract_refuses_ether(backend, payload: str) -> None:
    w3, address = backend.client.w3, backend.client.address
    receipt = send_raw(backend, 0, address, NO_ETH[payload](backend), value=10**15)
    assert receipt["status"] == 0
    assert w3.eth.get_balance(address) == 0
    assert backend.client.get(digest("paid")) is None
