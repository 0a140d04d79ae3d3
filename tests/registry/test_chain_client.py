"""RegistryClient against both backends: eth-tester in-process and a real anvil node.

The same scenarios run on both (``backend`` fixture) because errors, logs and receipts arrive in
different shapes; what only a real node can show (threads sending at once, confirmations, a node
that goes away and comes back) runs on anvil alone.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from chainkit import CARD, TEST_SET, digest
from chainkit import request as request_for
from eth_utils import to_checksum_address

from registry.chain.client import RegistryClient
from registry.chain.connection import connect, make_web3
from registry.chain.deploy import deploy_contract
from registry.chain.deployments import save_deployment
from registry.chain.events import BLOCKHASH_WINDOW
from registry.chain.keys import account_from_hex
from registry.chain.reverts import (
    AlreadyRegistered,
    InvalidReason,
    InvalidReplacement,
    UnknownModel,
    ZeroAddress,
)
from registry.config import Settings
from registry.core.digest import Digest
from registry.core.records import RevocationReason, Role
from registry.devnet import DEV_PRIVATE_KEYS, free_port
from registry.errors import (
    ChainError,
    ChainUnavailable,
    ConfigurationError,
    ContractMismatch,
    TransactionFailed,
    WrongChain,
)

# Creation code whose runtime code returns the number 42: "some other contract".
OTHER_CONTRACT = "0x600a600c600039600a6000f3602a60005260206000f3"


def deploy_other_contract(backend) -> str:
    client = backend.client
    sent = client.transactions.send({"to": None, "data": OTHER_CONTRACT, "gas": 100_000})
    receipt = client.transactions.wait_for_receipt(sent.tx_hash)
    assert receipt["status"] == 1
    address = to_checksum_address(receipt["contractAddress"])
    assert bytes(client.w3.eth.get_code(address)) == bytes.fromhex("602a60005260206000f3")
    return address


# --------------------------------------------------------------------------------------------
# The life of a record
# --------------------------------------------------------------------------------------------


def test_register_then_get_lookup_and_is_valid_return_the_record(backend) -> None:
    client = backend.client
    result = client.register(request_for("v1", accuracy=9_731))
    block = client.w3.eth.get_block(result.block_number)
    record = result.record
    assert result.already_registered is False
    assert result.gas_used is not None and result.gas_used > 21_000
    assert (record.digest, record.registrant, record.accuracy_bps) == (
        digest("v1"),
        backend.admin,
        9_731,
    )
    assert (record.test_set_digest, record.card_digest, record.parent) == (TEST_SET, CARD, None)
    assert record.registered_at == block["timestamp"]
    assert record.registered_block == result.block_number
    assert record.registration_tx == result.tx_hash
    assert record.revocation is None and record.valid
    assert client.get(digest("v1")) == record
    assert client.lookup(digest("v1")) == (record, client.w3.eth.block_number)
    assert client.is_valid(digest("v1")) is True
    assert backend.events(result.tx_hash)[0][0] == "ModelRegistered"


def test_a_registration_event_is_reused_only_while_lookup_vouches_for_its_block(
    backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event holding a record's digests is cached; lookup's hash of its block says when the
    cache may answer. The head block's own hash is not visible to the EVM: read it each time."""
    client = backend.client
    client.register(request_for("cached"))
    reads: list[int] = []
    real_logs = client.events.logs
    monkeypatch.setattr(
        client.events, "logs", lambda *a, **k: reads.append(1) or real_logs(*a, **k)
    )

    for _ in range(2):
        assert client.get(digest("cached")).card_digest == CARD
    assert len(reads) == 2  # in the head block: read again every time
    backend.mine(1)
    for _ in range(3):
        assert client.get(digest("cached")).card_digest == CARD
    assert len(reads) == 2  # its block's hash now matches the event's: the cache answers
    backend.mine(BLOCKHASH_WINDOW + 1)
    assert client.get(digest("cached")).card_digest == CARD
    assert len(reads) == 2  # past the window the hash reads zero; no reorg reaches that deep


def test_a_record_naming_a_block_past_the_head_is_refused_as_an_inconsistent_node(
    memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = memory.client
    client.register(request_for("ahead"))
    real_call = client.call

    def state_ahead_of_blocks(name: str, *args: Any) -> Any:
        stored, head, chain_id, block_hash = real_call(name, *args)
        return stored, head - 1, chain_id, block_hash  # storage names the head, blocks end before

    monkeypatch.setattr(client, "call", state_ahead_of_blocks)
    with pytest.raises(ChainError, match="past the chain's head") as caught:
        client.get(digest("ahead"))
    assert "consistent state" in caught.value.message


def test_lookup_of_an_unknown_digest_returns_none_and_the_current_block(backend) -> None:
    backend.mine(2)
    assert backend.client.lookup(digest("unknown")) == (None, backend.client.w3.eth.block_number)
    assert backend.client.get(digest("unknown")) is None
    assert backend.client.is_valid(digest("unknown")) is False


def test_revoke_returns_the_record_with_its_revocation(backend) -> None:
    client = backend.client
    client.register(request_for("v1"))
    client.register(request_for("v2"))
    record = client.revoke(digest("v1"), RevocationReason.SAFETY_ISSUE, digest("v2"))
    revocation = record.revocation
    assert revocation is not None and not record.valid
    assert revocation.reason is RevocationReason.SAFETY_ISSUE
    assert revocation.replacement == digest("v2")
    assert revocation.revoker == backend.admin
    assert revocation.revoked_at == client.w3.eth.get_block(revocation.block_number)["timestamp"]
    assert backend.events(revocation.tx_hash) == [
        (
            "ModelRevoked",
            {
                "digest": digest("v1").raw,
                "revoker": backend.admin,
                "replacement": digest("v2").raw,
                "reason": 2,
                "revokedAt": revocation.revoked_at,
            },
        )
    ]
    assert client.get(digest("v1")) == record
    assert client.is_valid(digest("v1")) is False
    assert client.is_valid(digest("v2")) is True


def test_history_lists_registrations_and_revocations_in_chain_order(backend) -> None:
    client = backend.client
    r1 = client.register(request_for("v1", accuracy=9_000))
    r2 = client.register(request_for("v2", accuracy=9_500, parent=digest("v1")))
    revoked = client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("v2")).revocation
    history = client.history()
    assert [(e.kind, e.digest, e.tx_hash, e.actor) for e in history] == [
        ("registered", digest("v1"), r1.tx_hash, backend.admin),
        ("registered", digest("v2"), r2.tx_hash, backend.admin),
        ("revoked", digest("v1"), revoked.tx_hash, backend.admin),
    ]
    assert [e.block_number for e in history] == [
        r1.block_number,
        r2.block_number,
        revoked.block_number,
    ]
    assert history[1].details == {
        "accuracy_bps": 9_500,
        "test_set_digest": str(TEST_SET),
        "card_digest": str(CARD),
        "parent": str(digest("v1")),
    }
    assert history[2].details == {"reason": "superseded", "replacement": str(digest("v2"))}
    assert [e.timestamp for e in history] == [
        backend.timestamp(r1.tx_hash),
        backend.timestamp(r2.tx_hash),
        revoked.revoked_at,
    ]
    assert [e.kind for e in client.history(digest("v1"))] == ["registered", "revoked"]
    assert [e.kind for e in client.history(digest("v2"))] == ["registered"]
    assert client.history(digest("unknown")) == []


def test_list_models_filters_by_registrant_and_validity(backend) -> None:
    client = backend.client
    other = backend.other(1, Role.REGISTRAR)
    client.register(request_for("v1"))
    client.register(request_for("v2"))
    other.register(request_for("v3"))
    client.revoke(digest("v1"), RevocationReason.DATA_PROBLEM)

    def listed(**filters) -> list[Digest]:
        return [r.digest for r in client.list_models(**filters)]

    assert listed() == [digest("v1"), digest("v2"), digest("v3")]
    assert listed(registrant=backend.address(1)) == [digest("v3")]
    assert listed(registrant=backend.address(1).lower()) == [digest("v3")]
    assert listed(registrant=backend.admin) == [digest("v1"), digest("v2")]
    assert listed(valid=True) == [digest("v2"), digest("v3")]
    assert listed(valid=False) == [digest("v1")]
    assert listed(registrant=backend.admin, valid=True) == [digest("v2")]
    assert listed(registrant=backend.address(4)) == []


def test_children_and_lineage_follow_the_parent_links(backend) -> None:
    client = backend.client
    client.register(request_for("v1"))
    client.register(request_for("v2", parent=digest("v1")))
    client.register(request_for("v2b", parent=digest("v1")))
    client.register(request_for("v3", parent=digest("v2")))
    assert client.children(digest("v1")) == [digest("v2"), digest("v2b")]
    assert client.children(digest("v2")) == [digest("v3")]
    assert client.children(digest("v3")) == []
    assert [r.digest for r in client.lineage(digest("v3"))] == [
        digest("v3"),
        digest("v2"),
        digest("v1"),
    ]
    assert [r.parent for r in client.lineage(digest("v3"))] == [digest("v2"), digest("v1"), None]
    assert client.lineage(digest("unknown")) == []


# --------------------------------------------------------------------------------------------
# Re-registration
# --------------------------------------------------------------------------------------------


def test_register_of_an_identical_record_again_reports_already_registered(backend) -> None:
    client = backend.client
    first = client.register(
        request_for("v2", parent=client.register(request_for("v1")).record.digest)
    )
    again = client.register(request_for("v2", parent=digest("v1")))
    assert again.already_registered is True
    assert again.record == first.record
    assert again.tx_hash == first.tx_hash
    assert again.block_number == first.block_number
    assert again.gas_used is None
    assert [e.kind for e in client.history(digest("v2"))] == ["registered"]


@pytest.mark.parametrize(
    "changed",
    [
        {"accuracy": 9_000},
        {"parent": "v0"},
    ],
    ids=["other-accuracy", "other-parent"],
)
def test_register_of_a_different_record_with_the_same_digest_raises(backend, changed) -> None:
    client = backend.client
    client.register(request_for("v0"))
    original = client.register(request_for("v1")).record
    parent = digest(changed["parent"]) if "parent" in changed else None
    with pytest.raises(AlreadyRegistered) as caught:
        client.register(request_for("v1", accuracy=changed.get("accuracy", 9_731), parent=parent))
    assert caught.value.digest == digest("v1")
    assert caught.value.registrant == backend.admin
    assert caught.value.details["tx_hash"].startswith("0x")
    assert client.get(digest("v1")) == original


def test_register_of_the_same_record_by_another_registrar_raises(backend) -> None:
    backend.client.register(request_for("v1"))
    other = backend.other(1, Role.REGISTRAR)
    with pytest.raises(AlreadyRegistered) as caught:
        other.register(request_for("v1"))
    assert (caught.value.digest, caught.value.registrant) == (digest("v1"), backend.admin)


# --------------------------------------------------------------------------------------------
# Configuration and identity (fail closed)
# --------------------------------------------------------------------------------------------


def test_writes_without_a_signing_key_raise_configuration_error(backend) -> None:
    backend.client.register(request_for("v1"))
    reader = backend.reader()
    head = backend.client.w3.eth.block_number
    for write in (
        lambda: reader.register(request_for("v2")),
        lambda: reader.revoke(digest("v1"), RevocationReason.OTHER),
        lambda: reader.grant_role(Role.REGISTRAR, backend.address(3)),
    ):
        with pytest.raises(ConfigurationError) as caught:
            write()
        assert "REGISTRY_PRIVATE_KEY" in caught.value.message
    assert backend.client.w3.eth.block_number == head
    assert reader.is_valid(digest("v1")) is True  # reading needs no key


def test_client_expecting_another_chain_id_raises_wrong_chain(backend) -> None:
    actual = backend.client.w3.eth.chain_id
    wrong = backend.other(0, expected_chain_id=actual + 1)
    for use in (lambda: wrong.is_valid(digest("v1")), lambda: wrong.register(request_for("v1"))):
        with pytest.raises(WrongChain) as caught:
            use()
        assert (caught.value.expected, caught.value.actual) == (actual + 1, actual)
        assert caught.value.details["endpoint"] == backend.endpoint
    assert backend.client.get(digest("v1")) is None


def test_client_at_an_address_without_code_raises_contract_mismatch(backend) -> None:
    eoa = backend.address(4)
    client = backend.other(0, address=eoa)
    with pytest.raises(ContractMismatch) as caught:
        client.is_valid(digest("v1"))
    assert caught.value.address == eoa
    assert "holds no contract code" in caught.value.details["problem"]
    with pytest.raises(ContractMismatch):
        client.register(request_for("v1"))


def test_client_at_an_address_holding_other_code_raises_contract_mismatch(backend) -> None:
    address = deploy_other_contract(backend)
    client = backend.other(1, address=address)
    for use in (
        lambda: client.lookup(digest("v1")),
        lambda: client.register(request_for("v1")),
        lambda: client.check_identity(force=True),
    ):
        with pytest.raises(ContractMismatch) as caught:
            use()
        assert caught.value.address == address
        assert "not this ModelRegistry build" in caught.value.details["problem"]


def test_client_for_an_endpoint_with_nothing_listening_raises_chain_unavailable() -> None:

    endpoint = f"http://127.0.0.1:{free_port()}"

    client = RegistryClient(make_web3(endpoint, 2.0), address="0x" + "11" * 20, endpoint=endpoint)
    with pytest.raises(ChainUnavailable) as caught:
        client.is_valid(digest("v1"))
    assert caught.value.endpoint == endpoint
    assert caught.value.details["cause"]


def test_a_mined_reverted_transaction_raises_the_typed_error_with_its_tx_hash(backend) -> None:
    client = backend.client
    client.register(request_for("v1"))
    with pytest.raises(InvalidReplacement) as caught:
        client.revoke(digest("v1"), RevocationReason.SUPERSEDED, digest("ghost"))
    assert (caught.value.digest, caught.value.replacement) == (digest("v1"), digest("ghost"))
    tx_hash = caught.value.details["tx_hash"]
    receipt = client.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    assert receipt["to"] == client.address
    # The failed transaction used its nonce; the next write goes through.
    assert client.revoke(digest("v1"), RevocationReason.SUPERSEDED).revocation is not None


def test_a_failed_write_of_unknown_model_carries_its_tx_hash(backend) -> None:
    with pytest.raises(UnknownModel) as caught:
        backend.client.revoke(digest("ghost"), RevocationReason.OTHER)
    assert caught.value.digest == digest("ghost")
    receipt = backend.client.w3.eth.get_transaction_receipt(caught.value.details["tx_hash"])
    assert receipt["status"] == 0


def test_get_record_of_unknown_digest_raises_unknown_model(backend) -> None:
    with pytest.raises(UnknownModel) as caught:
        backend.client.call("getRecord", digest("ghost").raw)
    assert caught.value.digest == digest("ghost")
    assert "tx_hash" not in caught.value.details


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------


@contextmanager
def blocks_mined_every(backend, interval_s: float) -> Iterator[None]:
    """On anvil, turn automine off and mine a block every ``interval_s`` (many txs per block)."""
    if backend.kind != "anvil":
        yield  # eth-tester mines every transaction at once
        return
    stop = threading.Event()

    def miner() -> None:
        while not stop.wait(interval_s):
            backend.node.rpc("evm_mine")

    backend.node.rpc("evm_setAutomine", [False])
    thread = threading.Thread(target=miner, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        backend.node.rpc("evm_setAutomine", [True])


@contextmanager
def manual_mining(backend) -> Iterator[None]:
    """On anvil, nothing is mined until the test calls ``backend.mine``."""
    backend.node.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        backend.node.rpc("evm_setAutomine", [True])


def test_fifty_registrations_from_eight_threads_all_land_with_consecutive_nonces(
    backend,
) -> None:
    client = backend.client
    start_nonce = client.w3.eth.get_transaction_count(backend.admin)
    labels = [f"threaded-{i}" for i in range(50)]
    with blocks_mined_every(backend, 0.02), ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda label: client.register(request_for(label)), labels))
    assert [r.record.digest for r in results] == [digest(label) for label in labels]
    assert all(not r.already_registered for r in results)
    nonces = sorted(client.w3.eth.get_transaction(r.tx_hash)["nonce"] for r in results)
    assert nonces == list(range(start_nonce, start_nonce + 50))
    for label in labels:
        assert client.is_valid(digest(label))
    listed = [r.digest for r in client.list_models()]
    assert sorted(listed, key=str) == sorted((digest(label) for label in labels), key=str)


# --------------------------------------------------------------------------------------------
# A real node: pending transactions, confirmations, outages, deployment records
# --------------------------------------------------------------------------------------------


@pytest.mark.anvil
def test_register_waits_for_a_transaction_that_is_mined_later(anvil) -> None:
    # web3 7+ makes TransactionNotFound a Web3RPCError: translating every Web3RPCError into
    # ChainError would fail every write that is not mined the instant it is sent.
    outcome: dict[str, object] = {}

    def register() -> None:
        try:
            outcome["result"] = anvil.client.register(request_for("v1"))
        except Exception as exc:
            outcome["error"] = exc

    with manual_mining(anvil):
        thread = threading.Thread(target=register)
        thread.start()
        time.sleep(0.5)
        assert "error" not in outcome, outcome.get("error")
        assert thread.is_alive()  # still waiting for the block
        anvil.mine(1)
        thread.join(10)
    assert not thread.is_alive()
    assert outcome["result"].record.digest == digest("v1")


@pytest.mark.anvil
def test_register_not_mined_within_the_timeout_raises_transaction_failed(anvil) -> None:
    impatient = anvil.other(0, tx_timeout_s=0.5)
    with manual_mining(anvil):
        with pytest.raises(TransactionFailed) as caught:
            impatient.register(request_for("v1"))
        assert "not mined" in caught.value.details["problem"]
        anvil.mine(1)
    # The message says it may still land: it does, under the hash it names.
    receipt = anvil.client.w3.eth.get_transaction_receipt(caught.value.tx_hash)
    assert receipt["status"] == 1
    assert anvil.client.get(digest("v1")).registration_tx == caught.value.tx_hash


def test_register_resends_with_a_fresh_nonce_after_another_client_used_the_key(
    backend, request
) -> None:
    twin = backend.other(0)  # the admin's key, with its own nonce counter
    backend.client.register(request_for("v1"))  # both counters now primed
    twin.register(request_for("v2"))
    result = backend.client.register(request_for("v3"))  # its cached nonce is stale now
    assert result.record.digest == digest("v3")
    nonces = [
        backend.client.w3.eth.get_transaction(r.registration_tx)["nonce"]
        for r in backend.client.list_models()
    ]
    assert nonces == sorted(set(nonces))


@pytest.mark.anvil
def test_client_fails_closed_when_the_code_vanishes_within_the_identity_ttl(anvil) -> None:
    client = anvil.client
    client.register(request_for("v1"))
    assert client.is_valid(digest("v1")) is True  # identity checked and cached
    anvil.node.rpc("anvil_setCode", [client.address, "0x"])
    for use in (lambda: client.is_valid(digest("v1")), lambda: client.lookup(digest("v1"))):
        with pytest.raises(ContractMismatch) as caught:
            use()
        assert caught.value.address == client.address


@pytest.mark.anvil
def test_register_with_three_confirmations_returns_only_after_two_more_blocks(anvil) -> None:
    client = anvil.other(0, confirmations=3)
    start = client.w3.eth.block_number
    outcome: dict[str, object] = {}

    def register() -> None:
        try:
            outcome["result"] = client.register(request_for("v1"))
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=register)
    thread.start()
    deadline = time.monotonic() + 10
    while client.w3.eth.block_number == start and time.monotonic() < deadline:
        time.sleep(0.02)  # automine: the registration's own block
    mined_in = client.w3.eth.block_number
    assert mined_in == start + 1
    for _ in range(2):
        time.sleep(0.6)  # longer than the client's longest poll interval
        assert "error" not in outcome, outcome.get("error")
        assert thread.is_alive(), "returned before 3 confirmations"
        anvil.mine(1)
    thread.join(10)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result.block_number == mined_in
    assert client.w3.eth.block_number == mined_in + 2


@pytest.mark.anvil
def test_a_revert_is_explained_by_the_state_the_transaction_ran_against(anvil) -> None:
    """A revocation mined right after the registration, in the same block, fails for its own
    reason (code 0), not for the "unknown model" of the state before that block."""
    revoker = anvil.other(1, Role.REVOKER)
    outcome: dict[str, object] = {}

    def run(name: str, fn) -> threading.Thread:
        def target() -> None:
            try:
                outcome[name] = fn()
            except Exception as exc:
                outcome[name] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    def wait_pending(address: str, nonce: int) -> None:
        deadline = time.monotonic() + 5
        while anvil.client.w3.eth.get_transaction_count(address, "pending") <= nonce:
            assert time.monotonic() < deadline, "transaction never reached the pool"
            time.sleep(0.01)

    with manual_mining(anvil):
        base = anvil.client.w3.eth.get_block("latest")["baseFeePerGas"]
        # A lower tip than the registration's orders the revocation after it in the block.
        revoker.transactions.set_fees(
            {"maxFeePerGas": 2 * base + 1, "maxPriorityFeePerGas": 1}, for_s=3600
        )
        nonces = [anvil.client.w3.eth.get_transaction_count(a) for a in (anvil.admin,
                                                                          anvil.address(1))]  # fmt: skip
        registering = run("register", lambda: anvil.client.register(request_for("v1")))
        wait_pending(anvil.admin, nonces[0])
        revoking = run("revoke", lambda: revoker.transact("revoke", digest("v1").raw, 0, bytes(32)))
        wait_pending(anvil.address(1), nonces[1])
        anvil.mine(1)
        registering.join(10)
        revoking.join(10)
    registered, error = outcome["register"], outcome["revoke"]
    assert not isinstance(registered, Exception), registered
    failed = anvil.client.w3.eth.get_transaction_receipt(error.details["tx_hash"])
    assert failed["status"] == 0
    assert failed["blockNumber"] == registered.block_number
    assert failed["transactionIndex"] > 0  # after the registration
    # When it ran, v1 was registered: the only thing wrong was reason code 0.
    assert isinstance(error, InvalidReason), error
    assert error.reason == 0


@pytest.mark.anvil
def test_client_raises_chain_unavailable_while_the_node_is_down_and_recovers_after(
    make_anvil_node, tmp_path
) -> None:

    node = make_anvil_node(data_dir=tmp_path / "chain", port=free_port())
    w3 = make_web3(node.url, 2.0)
    client, _ = deploy_contract(w3, account_from_hex(DEV_PRIVATE_KEYS[0]), endpoint=node.url)
    client.grant_role(Role.REGISTRAR, client.account.address)
    client.register(request_for("v1"))
    node.stop()
    for use in (
        lambda: client.is_valid(digest("v1")),
        lambda: client.register(request_for("v2")),
    ):
        with pytest.raises(ChainUnavailable) as caught:
            use()
        assert caught.value.endpoint == node.url
    node.start()
    assert client.is_valid(digest("v1")) is True
    assert client.register(request_for("v2")).record.digest == digest("v2")
    assert [r.digest for r in client.list_models()] == [digest("v1"), digest("v2")]


@pytest.mark.anvil
def test_connect_finds_the_contract_from_a_saved_deployment_record(anvil, tmp_path) -> None:

    anvil.client.register(request_for("v1"))
    deployment = anvil.deployment
    save_deployment(tmp_path, deployment)
    settings = Settings(
        rpc_url=anvil.endpoint,
        data_dir=tmp_path,
        contract_address=None,
        chain_id=None,
        private_key=DEV_PRIVATE_KEYS[2],
    )
    client = connect(settings)
    assert client.address == deployment.address
    assert client.deployment_block == deployment.block_number
    assert client.expected_chain_id == deployment.chain_id == anvil.client.w3.eth.chain_id
    assert client.account.address == anvil.address(2)
    assert client.get(digest("v1")) == anvil.client.get(digest("v1"))


@pytest.mark.anvil
def test_connect_refuses_a_node_serving_another_chain_than_the_record(anvil, tmp_path) -> None:
    actual = anvil.client.w3.eth.chain_id
    recorded = dataclasses.replace(anvil.deployment, chain_id=actual + 1)
    save_deployment(tmp_path, recorded)
    settings = Settings(rpc_url=anvil.endpoint, data_dir=tmp_path, chain_id=actual + 1)
    with pytest.raises(WrongChain) as caught:
        connect(settings)
    assert (caught.value.expected, caught.value.actual) == (actual + 1, actual)


@pytest.mark.anvil
def test_connect_to_an_address_without_our_code_raises_contract_mismatch(anvil, tmp_path) -> None:
    settings = Settings(
        rpc_url=anvil.endpoint, data_dir=tmp_path, contract_address=anvil.address(4)
    )
    with pytest.raises(ContractMismatch) as caught:
        connect(settings)
    assert caught.value.address == anvil.address(4)


@pytest.mark.anvil
def test_connect_without_a_deployment_record_raises_configuration_error(anvil, tmp_path) -> None:

    settings = Settings(rpc_url=anvil.endpoint, data_dir=tmp_path, contract_address=None)
    with pytest.raises(ConfigurationError) as caught:
        connect(settings)
    assert caught.value.details == {"chain_id": anvil.client.w3.eth.chain_id}


# --------------------------------------------------------------------------------------------
# Admin view
# --------------------------------------------------------------------------------------------


def test_admin_returns_checksummed_admin_and_pending_admin(memory) -> None:
    memory.client.transfer_admin(memory.address(1))
    assert memory.client.admin() == (memory.admin, memory.address(1))


def test_admin_reports_no_pending_admin_as_none(memory) -> None:
    admin, pending = memory.client.admin()
    assert admin.lower() == memory.admin.lower()
    assert pending is None


# --------------------------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------------------------


def test_deploy_with_zero_admin_raises_zero_address(memory) -> None:
    with pytest.raises(ZeroAddress):
        deploy_contract(
            memory.client.w3, memory.account(3), endpoint="memory", admin="0x" + "00" * 20
        )


def test_deploy_returns_a_client_and_record_for_the_new_contract(memory) -> None:
    account = memory.account(3)
    client, deployment = deploy_contract(memory.client.w3, account, endpoint="memory")
    assert deployment.address == client.address != memory.client.address
    assert deployment.deployer == account.address
    assert deployment.chain_id == memory.client.w3.eth.chain_id
    assert deployment.artifact_digest == client.artifact.digest
    receipt = client.w3.eth.get_transaction_receipt(deployment.tx_hash)
    assert receipt["blockNumber"] == deployment.block_number == client.deployment_block
    assert client.admin()[0].lower() == account.address.lower()
    # Its deployer holds no role until granted one.
    assert not client.has_role(Role.REGISTRAR, account.address)
    client.grant_role(Role.REGISTRAR, account.address)
    assert client.register(request_for("v1")).record.registrant == account.address
