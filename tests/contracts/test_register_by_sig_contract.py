"""Signed registrations on eth-tester: ``registerBySig``, ``cancelNonce``, ``nonces``, ``eip712Domain``.

A registrar signs a record offline as EIP-712 typed data (with eth_account, the way a wallet
would); anyone sends it. The domain comes from the contract's own ERC-5267 answer. Every refusal
is checked by its error class and fields, and by the nonce and the record reading as before.
A contract registrar answers through ERC-1271: the wallet under tests/contracts is compiled
here with the solc-js build the artifact comes from.
"""

from __future__ import annotations

from typing import Any

import pytest
from chainkit import CARD, TEST_SET, ZERO32, ZERO_ADDRESS, digest, request
from contractkit import deploy_wallet, eip712_domain, registration_message, send, wallet_code
from contractkit import later as later_than_latest
from contractkit import relay as relay_from
from eth_abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3.exceptions import ContractCustomError

from registry.chain import reverts
from registry.chain.abi import to_hex
from registry.core.records import Role

# secp256k1's group order: s and n - s sign the same message.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
REGISTRAR, RELAYER, OTHER, BYSTANDER = 1, 2, 3, 4
# _nonces, the tenth slot of the storage layout written in ModelRegistry.sol.
SLOT_NONCES = 9


# --------------------------------------------------------------------------------------------
# Building and signing requests
# --------------------------------------------------------------------------------------------


def leaf(label: str, accuracy: int = 9_731, parent: bytes = ZERO32) -> tuple:
    return (digest(label).raw, accuracy, TEST_SET.raw, CARD.raw, parent)


def domain(memory) -> dict[str, Any]:
    """The signing domain, as the contract itself names it (ERC-5267)."""
    return eip712_domain(memory.client)


def signed(
    memory,
    record: tuple,
    nonce: int = 0,
    *,
    deadline: int | None = None,
    key_index: int = REGISTRAR,
    registrar: str | None = None,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A request for ``record`` by ``registrar`` (account REGISTRAR), signed by ``key_index``."""
    registrar = registrar or memory.address(REGISTRAR)
    deadline = later(memory) if deadline is None else deadline
    signable = registration_message(record, registrar, nonce, deadline, where or domain(memory))
    signature = Account.sign_message(signable, memory.keys[key_index]).signature
    return {
        "record": record,
        "registrar": registrar,
        "nonce": nonce,
        "deadline": deadline,
        "signature": bytes(signature),
    }


def later(memory) -> int:
    return later_than_latest(memory.client)


def relay(memory, signed_request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Send ``signed_request`` (with ``changes``) from the relayer, an account with no role."""
    return relay_from(memory.other(RELAYER), {**signed_request, **changes})


def recovered_by_the_contract(memory, r: dict[str, Any]) -> str:
    """Whom the signature recovers to over the typed data the contract hashes."""
    signable = registration_message(
        r["record"], r["registrar"], r["nonce"], r["deadline"], domain(memory)
    )
    return Account.recover_message(signable, signature=r["signature"])


def eip712_hash(signable: SignableMessage) -> bytes:
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def nonce_of(memory, registrar: str, lane: int = 0) -> int:
    (value,) = memory.client.call("nonces", registrar, lane)
    return int(value)


def raw_lane(memory, account: str, lane: int) -> int:
    """The stored word of ``account``'s ``lane``: 0 never touched, else its next sequence + 1."""
    outer = keccak(encode(["address", "uint256"], [account, SLOT_NONCES]))
    slot = keccak(encode(["uint192", "bytes32"], [lane, outer]))
    client = memory.client
    word = client.w3.eth.get_storage_at(client.address, int.from_bytes(slot, "big"))
    return int.from_bytes(word, "big")


def registrant_of(memory, label: str) -> str:
    record, _, _, _ = memory.client.call("lookup", digest(label).raw)
    return to_checksum_address(record[0])


@pytest.fixture
def registrar(memory) -> str:
    """Account REGISTRAR, holding the Registrar role; it never sends a transaction itself."""
    address = memory.address(REGISTRAR)
    memory.client.grant_role(Role.REGISTRAR, address)
    return address


def assert_unchanged(memory, registrar: str, label: str, lane: int = 0, nonce: int = 0) -> None:
    assert nonce_of(memory, registrar, lane) == (lane << 64) | nonce
    assert registrant_of(memory, label) == ZERO_ADDRESS


# --------------------------------------------------------------------------------------------
# The domain and an accepted request
# --------------------------------------------------------------------------------------------


def test_eip712_domain_names_this_contract_on_this_chain(memory) -> None:
    assert domain(memory) == {
        "name": "ModelRegistry",
        "version": "1",
        "chainId": memory.client.chain_id,
        "verifyingContract": memory.client.address,
    }


def test_register_by_sig_sent_by_anyone_registers_for_the_registrar(memory, registrar) -> None:
    req = signed(memory, leaf("v1"))
    receipt = relay(memory, req)
    assert memory.events(receipt["transactionHash"]) == [
        (
            "ModelRegistered",
            {
                "digest": digest("v1").raw,
                "registrant": registrar,
                "parent": ZERO32,
                "accuracyBps": 9_731,
                "testSetDigest": TEST_SET.raw,
                "cardDigest": CARD.raw,
                "registeredAt": memory.timestamp(receipt["transactionHash"]),
            },
        )
    ]
    assert registrant_of(memory, "v1") == registrar
    assert nonce_of(memory, registrar) == 1
    # The relayer holds no role and is named nowhere.
    assert not memory.client.has_role(Role.REGISTRAR, memory.address(RELAYER))


def test_a_signed_record_is_checked_as_register_checks_it(memory, registrar) -> None:
    memory.client.register(request("v1"))  # the admin's
    req = signed(memory, leaf("v1", accuracy=9_000))
    with pytest.raises(reverts.AlreadyRegistered) as caught:
        relay(memory, req)
    assert caught.value.registrant == memory.admin
    child = signed(memory, leaf("v2", parent=digest("unknown parent").raw))
    with pytest.raises(reverts.InvalidParent) as caught_parent:
        relay(memory, child)
    assert caught_parent.value.parent == digest("unknown parent")
    assert_unchanged(memory, registrar, "v2")


def test_register_by_sig_reverts_when_the_signer_is_not_a_registrar(memory) -> None:
    req = signed(memory, leaf("v1"))
    with pytest.raises(reverts.MissingRole) as caught:
        relay(memory, req)
    assert caught.value.account == memory.address(REGISTRAR)
    assert caught.value.role == "registrar"
    assert_unchanged(memory, memory.address(REGISTRAR), "v1")


# --------------------------------------------------------------------------------------------
# Nonces: lanes, order, replay, cancellation
# --------------------------------------------------------------------------------------------


def test_lanes_are_used_in_any_order_and_a_lane_in_sequence(memory, registrar) -> None:
    lane = 7
    assert nonce_of(memory, registrar, lane) == lane << 64
    in_lane = [signed(memory, leaf(f"lane {i}"), (lane << 64) | i) for i in range(2)]
    first_lane = signed(memory, leaf("lane zero"), 0)
    # The second of lane 7 cannot go before the first.
    with pytest.raises(reverts.InvalidNonce) as caught:
        relay(memory, in_lane[1])
    assert (caught.value.registrar, caught.value.nonce, caught.value.expected) == (
        registrar,
        (lane << 64) | 1,
        lane << 64,
    )
    assert_unchanged(memory, registrar, "lane 1", lane=lane)
    relay(memory, in_lane[0])
    relay(memory, first_lane)  # lane 0 after lane 7: lanes are independent
    relay(memory, in_lane[1])
    assert nonce_of(memory, registrar, lane) == (lane << 64) | 2
    assert nonce_of(memory, registrar, 0) == 1
    labels = ["lane 0", "lane 1", "lane zero"]
    assert [registrant_of(memory, label) for label in labels] == [registrar] * 3


def test_a_replayed_request_reverts_with_the_next_nonce(memory, registrar) -> None:
    req = signed(memory, leaf("v1"))
    relay(memory, req)
    with pytest.raises(reverts.InvalidNonce) as caught:
        relay(memory, req)
    assert (caught.value.registrar, caught.value.nonce, caught.value.expected) == (registrar, 0, 1)
    assert nonce_of(memory, registrar) == 1


def test_cancel_nonce_emits_and_voids_a_signed_request(memory, registrar) -> None:
    req = signed(memory, leaf("v1"), (3 << 64) | 0)
    owner = memory.other(REGISTRAR)
    receipt = send(owner, "cancelNonce", 3 << 64)
    assert memory.events(receipt["transactionHash"]) == [
        ("NonceCancelled", {"registrar": registrar, "nonce": 3 << 64})
    ]
    assert nonce_of(memory, registrar, 3) == (3 << 64) | 1
    with pytest.raises(reverts.InvalidNonce) as caught:
        relay(memory, req)
    assert caught.value.expected == (3 << 64) | 1
    assert_unchanged(memory, registrar, "v1", lane=3, nonce=1)


def test_cancel_nonce_reverts_unless_it_is_the_callers_next(memory, registrar) -> None:
    owner = memory.other(REGISTRAR)
    for nonce in (1, (2 << 64) | 5):
        with pytest.raises(reverts.InvalidNonce) as caught:
            send(owner, "cancelNonce", nonce)
        assert (caught.value.registrar, caught.value.nonce) == (registrar, nonce)
        assert caught.value.expected == (nonce >> 64) << 64
    assert nonce_of(memory, registrar, 0) == 0
    assert nonce_of(memory, registrar, 2) == 2 << 64
    # Another account's cancellation is its own lane space, not the registrar's.
    send(memory.other(OTHER), "cancelNonce", 0)
    assert nonce_of(memory, registrar) == 0
    assert nonce_of(memory, memory.address(OTHER)) == 1


def test_an_expired_request_reverts_with_its_deadline_and_the_chains_time(
    memory, registrar
) -> None:
    now = int(memory.client.w3.eth.get_block("latest")["timestamp"])
    req = signed(memory, leaf("v1"), deadline=now - 1)
    with pytest.raises(reverts.ExpiredSignature) as caught:
        relay(memory, req)
    assert caught.value.deadline == now - 1
    assert caught.value.now >= now
    assert_unchanged(memory, registrar, "v1")


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    ["chain id", "verifying contract", "name", "other accuracy", "other nonce", "other key"],
)
def test_a_signature_over_anything_else_reverts_naming_whom_it_recovers_to(
    memory, registrar, change: str
) -> None:
    where = domain(memory)
    record = leaf("v1")
    if change == "chain id":
        req = signed(memory, record, where={**where, "chainId": where["chainId"] + 1})
    elif change == "verifying contract":
        elsewhere = to_checksum_address("0x" + "11" * 20)
        req = signed(memory, record, where={**where, "verifyingContract": elsewhere})
    elif change == "name":
        req = signed(memory, record, where={**where, "name": "ModelRegistry2"})
    elif change == "other accuracy":
        req = {**signed(memory, leaf("v1", accuracy=9_000)), "record": record}
    elif change == "other nonce":
        req = {**signed(memory, record, 1 << 64), "nonce": 0}
    else:
        req = signed(memory, record, key_index=OTHER)
    recovered = recovered_by_the_contract(memory, req)
    assert recovered != registrar
    if change == "other key":
        assert recovered == memory.address(OTHER)
    with pytest.raises(reverts.InvalidSigner) as caught:
        relay(memory, req)
    assert (caught.value.registrar, caught.value.recovered) == (registrar, recovered)
    assert_unchanged(memory, registrar, "v1")


def test_the_high_s_twin_of_a_valid_signature_reverts(memory, registrar) -> None:
    req = signed(memory, leaf("v1"))
    sig = req["signature"]
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    twin = r + (N - s).to_bytes(32, "big") + bytes([55 - v])
    # The twin does recover the registrar: only the low-s rule refuses it.
    assert recovered_by_the_contract(memory, {**req, "signature": twin}) == registrar
    with pytest.raises(reverts.InvalidSigner) as caught:
        relay(memory, req, signature=twin)
    assert (caught.value.registrar, caught.value.recovered) == (registrar, ZERO_ADDRESS)
    assert_unchanged(memory, registrar, "v1")
    relay(memory, req)  # the low-s original still goes through
    assert registrant_of(memory, "v1") == registrar


def compact(sig: bytes) -> bytes:
    """EIP-2098's 64-byte form (r, yParity and s in one word), which the contract refuses."""
    s = int.from_bytes(sig[32:64], "big") | ((sig[64] - 27) << 255)
    return sig[:32] + s.to_bytes(32, "big")


@pytest.mark.parametrize(
    "malform",
    [
        pytest.param(lambda sig: b"", id="empty"),
        pytest.param(compact, id="64 bytes (EIP-2098)"),
        pytest.param(lambda sig: sig + b"\x00", id="66 bytes"),
        pytest.param(lambda sig: sig[:64] + bytes([sig[64] - 27]), id="v 0 or 1"),
        pytest.param(lambda sig: sig[:64] + bytes([29]), id="v 29"),
        pytest.param(lambda sig: bytes(32) + sig[32:], id="r zero"),
    ],
)
def test_a_malformed_signature_reverts_naming_no_signer(memory, registrar, malform) -> None:
    req = signed(memory, leaf("v1"))
    with pytest.raises(reverts.InvalidSigner) as caught:
        relay(memory, req, signature=malform(req["signature"]))
    assert (caught.value.registrar, caught.value.recovered) == (registrar, ZERO_ADDRESS)
    assert_unchanged(memory, registrar, "v1")


# --------------------------------------------------------------------------------------------
# ERC-1271: a contract registrar
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wallet_build() -> bytes:
    """The test wallet's creation code, compiled by the compiler the artifact comes from."""
    return wallet_code()


def wallet_call(client, wallet: str, signature: str, *args: Any) -> dict[str, Any]:
    types = signature[signature.index("(") + 1 : -1].split(",")
    data = function_signature_to_4byte_selector(signature) + encode(types, list(args))
    receipt: dict[str, Any] = client.transactions.execute(
        {"to": wallet, "data": to_hex(data), "gas": 300_000}
    )
    return receipt


@pytest.fixture
def wallet(memory, wallet_build) -> str:
    """A wallet contract owned by account REGISTRAR's key, holding the Registrar role."""
    return deploy_wallet(memory, REGISTRAR, wallet_build)


def wallet_signed(memory, wallet: str, record: tuple, key_index: int = REGISTRAR) -> dict:
    """A request by ``wallet``: the EIP-712 hash signed as it is by ``key_index``'s key."""
    req = {"record": record, "registrar": wallet, "nonce": 0, "deadline": later(memory)}
    signable = registration_message(record, wallet, 0, req["deadline"], domain(memory))
    signature = Account.unsafe_sign_hash(eip712_hash(signable), memory.keys[key_index]).signature
    return {**req, "signature": bytes(signature)}


def test_a_contract_registrar_is_accepted_when_its_wallet_says_so(memory, wallet) -> None:
    receipt = relay(memory, wallet_signed(memory, wallet, leaf("v1")))
    ((name, fields),) = memory.events(receipt["transactionHash"])
    assert (name, fields["registrant"]) == ("ModelRegistered", wallet)
    assert registrant_of(memory, "v1") == wallet
    assert nonce_of(memory, wallet) == 1


def test_a_contract_registrar_cancels_its_own_nonce(memory, wallet) -> None:
    req = wallet_signed(memory, wallet, leaf("v1"))
    owner = memory.other(REGISTRAR)
    cancel = memory.client.abi.encode_call("cancelNonce", 0)
    wallet_call(owner, wallet, "execute(address,bytes)", memory.client.address, cancel)
    with pytest.raises(reverts.InvalidNonce) as caught:
        relay(memory, req)
    assert (caught.value.registrar, caught.value.expected) == (wallet, 1)
    assert_unchanged(memory, wallet, "v1", nonce=1)


@pytest.mark.parametrize(
    "mode", [0, 1, 2, 3], ids=["other key", "reverts", "writes storage", "31-byte answer"]
)
def test_a_contract_registrar_is_refused_unless_its_wallet_returns_the_magic_value(
    memory, wallet, mode: int
) -> None:
    # Mode 0 is honest but the signature is not its owner's; mode 2 accepts only when it may
    # write, which a staticcall forbids.
    owner = memory.other(REGISTRAR)
    wallet_call(owner, wallet, "setMode(uint8)", mode)
    req = wallet_signed(memory, wallet, leaf("v1"), key_index=OTHER if mode == 0 else REGISTRAR)
    with pytest.raises(reverts.InvalidSigner) as caught:
        relay(memory, req)
    assert (caught.value.registrar, caught.value.recovered) == (wallet, ZERO_ADDRESS)
    assert_unchanged(memory, wallet, "v1")


def test_an_ecdsa_signature_by_a_wallets_owner_is_not_the_wallets(memory, wallet) -> None:
    # A contract registrar is asked through ERC-1271 only: its owner's typed-data signature of
    # the request is what the wallet checks, never recovered against the wallet's address.
    owner_signed = signed(memory, leaf("v1"), registrar=wallet)
    wallet_call(memory.other(REGISTRAR), wallet, "setMode(uint8)", 1)
    with pytest.raises(reverts.InvalidSigner):
        relay(memory, owner_signed)
    assert_unchanged(memory, wallet, "v1")


# --------------------------------------------------------------------------------------------
# Gas
# --------------------------------------------------------------------------------------------


def test_register_by_sig_costs_at_most_1_25_times_a_direct_registration(memory, registrar) -> None:
    direct = memory.client.register(request("direct")).gas_used
    assert direct is not None
    # The first request of a lane other than 0 also writes the lane's fresh nonce slot (22 100
    # gas); the ones after it rewrite that slot, which is the steady cost of a relayed
    # registration.
    lane = 5 << 64
    relay(memory, signed(memory, leaf("first"), lane))
    used = relay(memory, signed(memory, leaf("second"), lane | 1))["gasUsed"]
    assert used <= 1.25 * direct


def test_the_first_request_in_lane_0_after_a_grant_costs_at_most_1_25_times_a_direct_one(
    memory, registrar
) -> None:
    direct = memory.client.register(request("direct")).gas_used
    assert direct is not None
    # The grant paid for the lane's slot: the first request only updates it.
    used = relay(memory, signed(memory, leaf("first"), 0))["gasUsed"]
    assert used <= 1.25 * direct
    assert nonce_of(memory, registrar) == 1


# --------------------------------------------------------------------------------------------
# Granting the Registrar role initialises lane 0; nonces() reads as if it had not
# --------------------------------------------------------------------------------------------


def test_granting_the_registrar_role_initialises_lane_0_and_no_other_lane(memory) -> None:
    account = memory.address(REGISTRAR)
    receipt = send(memory.client, "grantRole", int(Role.REGISTRAR), account)
    assert memory.events(receipt["transactionHash"]) == [
        ("RoleGranted", {"role": int(Role.REGISTRAR), "account": account, "sender": memory.admin})
    ]
    assert [raw_lane(memory, account, lane) for lane in (0, 1)] == [1, 0]
    assert [nonce_of(memory, account, lane) for lane in (0, 1)] == [0, 1 << 64]
    # Another role has no signed registrations to prepare for.
    bystander = memory.address(BYSTANDER)
    memory.client.grant_role(Role.REVOKER, bystander)
    memory.client.grant_role(Role.EVALUATOR, bystander)
    assert raw_lane(memory, bystander, 0) == 0


def test_lane_1_is_first_used_after_a_grant_with_its_own_fresh_slot(memory, registrar) -> None:
    relay(memory, signed(memory, leaf("lane one"), 1 << 64))
    assert (raw_lane(memory, registrar, 1), nonce_of(memory, registrar, 1)) == (2, 1 << 64 | 1)
    send(memory.other(REGISTRAR), "cancelNonce", 1 << 64 | 1)
    assert nonce_of(memory, registrar, 1) == 1 << 64 | 2
    # Lane 0 is as the grant left it, and its first request goes through.
    assert (raw_lane(memory, registrar, 0), nonce_of(memory, registrar, 0)) == (1, 0)
    relay(memory, signed(memory, leaf("lane zero"), 0))
    assert nonce_of(memory, registrar, 0) == 1
    assert [registrant_of(memory, label) for label in ("lane one", "lane zero")] == [registrar] * 2


@pytest.mark.parametrize("how", ["removed by the admin", "renounced"])
def test_losing_and_regaining_the_role_never_makes_a_used_nonce_valid_again(
    memory, registrar, how: str
) -> None:
    owner = memory.other(REGISTRAR)
    relay(memory, signed(memory, leaf("v1"), 0))
    send(owner, "cancelNonce", 1)
    relay(memory, signed(memory, leaf("lane one"), 1 << 64))
    if how == "renounced":
        owner.renounce_role(Role.REGISTRAR)
    else:
        memory.client.remove_role(Role.REGISTRAR, registrar)
    assert not memory.client.has_role(Role.REGISTRAR, registrar)
    memory.client.grant_role(Role.REGISTRAR, registrar)
    assert nonce_of(memory, registrar, 0) == 2
    assert nonce_of(memory, registrar, 1) == 1 << 64 | 1
    # Sequences 0 (used) and 1 (cancelled) stay spent, in lane 0 and in lane 1.
    for nonce, expected in ((0, 2), (1, 2), (1 << 64, 1 << 64 | 1)):
        with pytest.raises(reverts.InvalidNonce) as caught:
            relay(memory, signed(memory, leaf("v2"), nonce))
        assert (caught.value.registrar, caught.value.nonce) == (registrar, nonce)
        assert caught.value.expected == expected
        assert registrant_of(memory, "v2") == ZERO_ADDRESS
    relay(memory, signed(memory, leaf("v2"), 2))
    assert (registrant_of(memory, "v2"), nonce_of(memory, registrar, 0)) == (registrar, 3)


def test_a_grant_keeps_the_sequence_of_nonces_cancelled_before_it(memory) -> None:
    account = memory.address(REGISTRAR)
    send(memory.other(REGISTRAR), "cancelNonce", 0)
    assert raw_lane(memory, account, 0) == 2
    memory.client.grant_role(Role.REGISTRAR, account)
    assert (raw_lane(memory, account, 0), nonce_of(memory, account, 0)) == (2, 1)
    with pytest.raises(reverts.InvalidNonce) as caught:
        relay(memory, signed(memory, leaf("v1"), 0))
    assert (caught.value.nonce, caught.value.expected) == (0, 1)
    assert_unchanged(memory, account, "v1", nonce=1)
    relay(memory, signed(memory, leaf("v1"), 1))
    assert registrant_of(memory, "v1") == account


def test_nonces_count_those_used_or_cancelled_in_a_lane_whatever_the_grants(memory) -> None:
    account = memory.address(REGISTRAR)
    owner = memory.other(REGISTRAR)
    spent = {0: 0, 1: 0, 2: 0}

    def cancel(lane: int) -> None:
        send(owner, "cancelNonce", lane << 64 | spent[lane])
        spent[lane] += 1

    def register(lane: int) -> None:
        relay(memory, signed(memory, leaf(f"{lane}/{spent[lane]}"), lane << 64 | spent[lane]))
        spent[lane] += 1

    steps = [
        lambda: cancel(2),  # a fresh slot, before any grant
        lambda: memory.client.grant_role(Role.REGISTRAR, account),
        lambda: register(0),  # the slot the grant initialised
        lambda: cancel(0),
        lambda: register(1),  # a fresh slot, after the grant
        lambda: register(2),
        lambda: memory.client.remove_role(Role.REGISTRAR, account),
        lambda: cancel(1),
        lambda: cancel(0),
        lambda: memory.client.grant_role(Role.REGISTRAR, account),
        lambda: register(0),
        lambda: register(1),
    ]
    for step in [lambda: None, *steps]:
        step()
        assert [nonce_of(memory, account, lane) for lane in spent] == [
            lane << 64 | count for lane, count in spent.items()
        ]
    assert spent == {0: 4, 1: 3, 2: 2}


# --------------------------------------------------------------------------------------------
# A fork that takes another chain id (anvil can change its chain id; eth-tester cannot)
# --------------------------------------------------------------------------------------------


def raw_relay(anvil, r: dict[str, Any], chain_id: int) -> tuple[int, bytes]:
    """Send ``r`` as the relayer, signed for ``chain_id``, past the client (whose identity check
    refuses a chain that changed its id): the receipt's status and, if it failed, the revert."""
    w3 = anvil.client.w3
    relayer = anvil.account(RELAYER)
    data = anvil.client.abi.encode_call(
        "registerBySig", r["record"], r["registrar"], r["nonce"], r["deadline"], r["signature"]
    )
    tx = {"to": anvil.client.address, "data": data, "from": relayer.address}
    revert = b""
    try:
        w3.eth.call(tx)  # type: ignore[arg-type]
    except ContractCustomError as exc:
        revert = bytes.fromhex(str(exc.data)[2:])
    block = w3.eth.get_block("latest")
    signed_tx = relayer.sign_transaction(
        {
            **tx,
            "gas": 300_000,
            "nonce": w3.eth.get_transaction_count(relayer.address),
            "chainId": chain_id,
            "maxFeePerGas": 2 * int(block["baseFeePerGas"]) + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(signed_tx.raw_transaction)
    return int(w3.eth.wait_for_transaction_receipt(tx_hash)["status"]), revert


@pytest.mark.anvil
def test_a_request_signed_before_a_chain_id_change_is_refused_after_it(anvil) -> None:
    registrar = anvil.address(REGISTRAR)
    anvil.client.grant_role(Role.REGISTRAR, registrar)
    before = domain(anvil)
    old_chain = signed(anvil, leaf("v1"), where=before)
    after = {**before, "chainId": before["chainId"] + 1}
    new_chain = signed(anvil, leaf("v1"), where=after)
    anvil.node.rpc("anvil_setChainId", [after["chainId"]])
    try:
        # The contract names the new chain in its domain at once: nothing was cached.
        fn = anvil.client.abi.function("eip712Domain")
        raw = anvil.client.w3.eth.call({"to": anvil.client.address, "data": fn.encode()})
        assert fn.decode(raw)[3] == after["chainId"]
        status, revert = raw_relay(anvil, old_chain, after["chainId"])
        assert status == 0
        error = reverts.RevertDecoder(anvil.client.artifact.abi).decode(revert)
        assert isinstance(error, reverts.InvalidSigner)
        signable = registration_message(
            old_chain["record"], registrar, 0, old_chain["deadline"], after
        )
        recovered = Account.recover_message(signable, signature=old_chain["signature"])
        assert (error.registrar, error.recovered) == (registrar, recovered)
        assert raw_relay(anvil, new_chain, after["chainId"]) == (1, b"")
    finally:
        anvil.node.rpc("anvil_setChainId", [before["chainId"]])
    assert registrant_of(anvil, "v1") == registrar
