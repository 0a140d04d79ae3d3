"""Faults between the client and a real node: crashes, reorganisations, outages, swapped nodes, load.

Every test runs its own anvil on a free loopback port: reorgs, restarts and swapped nodes need a
chain of their own, not a snapshot of a shared one. What no fault may produce is a "verified" the
chain does not back, a lost or doubled registration, a key whose nonce is stuck, or a call that
hangs.

1. A registrar SIGKILLed at each stage of a registration (``kill_helper.py``, a subprocess), and
   the node itself killed right after the send; a fresh process re-runs the registration.
2. Reorganisations of depth 1-3 (``anvil_reorg``) under 1-4 confirmations: registrations and
   revocations reorganised away, moved, or replaced by another registration of the same digest.
3. A write while the node is down; a node killed mid-run and restarted from its state file; a
   node of another chain id taking over the port; registrations racing in one block.
4. ``scripts/load_registrations.py`` with 50 registrations (one key, then four).

Decision recorded here (section 2): confirmations apply to registrations only. A revocation counts
from the block that holds it: acting on an unconfirmed revocation can only refuse a model, never
admit one. If a reorganisation removes the revocation, the chain's state no longer says "revoked"
and the client reports the model as valid again: that is the chain's truth, and a revoker who
needs the revocation to stick re-sends it (a gate notices either way within its validity TTL).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from apikit import make_checkpoint
from hexbytes import HexBytes

from registry.chain.client import RegistryClient
from registry.chain.connection import make_web3
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.deployments import Deployment
from registry.chain.keys import account_from_hex
from registry.chain.reverts import AlreadyRegistered
from registry.chain.transactions import GAS_LIMITS
from registry.core.digest import ZERO, Digest, digest_bytes
from registry.core.records import RegisterRequest, RevocationReason, Role
from registry.devnet import DEV_ADDRESSES, DEV_PRIVATE_KEYS, AnvilNode, free_port
from registry.devnet.processes import wait_group_exit
from registry.errors import (
    ChainError,
    ChainUnavailable,
    ConfigurationError,
    NotVerified,
    WrongChain,
)
from registry.gate import Gate
from registry.verify import verify_digest

pytestmark = pytest.mark.anvil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("kill_helper.py")
TEST_SET = Digest(hashlib.sha256(b"held-out test split").hexdigest())
CARD = Digest(hashlib.sha256(b"model card").hexdigest())
T = TypeVar("T")
REGISTRAR = 1  # dev key index of the registrar whose nonce the crash tests audit


def digest(label: str) -> Digest:
    return Digest(hashlib.sha256(label.encode()).hexdigest())


def request_for(label: str, accuracy: int = 9_731, card: Digest = CARD) -> RegisterRequest:
    return RegisterRequest(digest(label), accuracy, TEST_SET, card, None)


@dataclass
class Chain:
    """A registry deployed on one anvil node; dev key 0 holds every role, key 1 registers."""

    node: AnvilNode
    admin: RegistryClient
    deployment: Deployment

    def client(self, key: int | None = REGISTRAR, **options: Any) -> RegistryClient:
        """A new client (its own connection, nonce counter and caches) on this chain."""
        account = None if key is None else account_from_hex(DEV_PRIVATE_KEYS[key], f"dev {key}")
        return RegistryClient(
            make_web3(self.node.url, 5.0),
            address=self.deployment.address,
            deployment_block=self.deployment.block_number,
            expected_chain_id=self.deployment.chain_id,
            account=account,
            endpoint=self.node.url,
            **options,
        )

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.node.rpc("evm_mine")

    def head(self) -> int:
        return int(self.node.rpc("eth_blockNumber"), 16)

    def registered_events(self, of: Digest) -> list[dict[str, Any]]:
        """Every ModelRegistered log of ``of`` on the current chain, straight from the node."""
        return list(
            self.admin.w3.eth.get_logs(
                {
                    "address": self.deployment.address,
                    "fromBlock": 0,
                    "toBlock": "latest",
                    "topics": [self.admin.abi.registered_topic, "0x" + of.raw.hex()],
                }
            )
        )

    def mined_transactions_from(self, address: str) -> int:
        count = 0
        for number in range(self.head() + 1):
            block = self.node.rpc("eth_getBlockByNumber", [hex(number), True])
            count += sum(tx["from"].lower() == address.lower() for tx in block["transactions"])
        return count

    def assert_nonce_matches_mined_transactions(self, address: str) -> None:
        """No gap, nothing stuck: the nonce is the count of mined transactions, the pool empty."""
        w3 = self.admin.w3
        mined = self.mined_transactions_from(address)
        assert w3.eth.get_transaction_count(address, "latest") == mined
        assert w3.eth.get_transaction_count(address, "pending") == mined
        assert self.node.rpc("txpool_status") == {"pending": "0x0", "queued": "0x0"}


def deploy(node: AnvilNode) -> Chain:
    w3 = make_web3(node.url, 5.0)
    admin, deployment = deploy_and_grant_self(
        w3, account_from_hex(DEV_PRIVATE_KEYS[0], "dev 0"), endpoint=node.url
    )
    admin.grant_role(Role.REGISTRAR, DEV_ADDRESSES[REGISTRAR])
    return Chain(node, admin, deployment)


def restart_after_crash(node: AnvilNode) -> None:
    """Start a node whose process died; a state file cut off mid-write is restored from its copy,
    as the error message tells an operator to do (anvil writes it in place every second)."""
    node.stop()
    try:
        node.start()
    except ConfigurationError as exc:
        backup = exc.details.get("backup_path")
        if not backup:
            raise
        shutil.copyfile(backup, exc.details["state_path"])
        node.start()


@pytest.fixture
def chain(make_anvil_node) -> Chain:
    return deploy(make_anvil_node(port=free_port()))


@pytest.fixture
def persisted_chain(make_anvil_node, tmp_path) -> Chain:
    """A chain whose deployment is already in its state file (stopped once with SIGTERM)."""
    node = make_anvil_node(data_dir=tmp_path / "chain", port=free_port())
    deployed = deploy(node)
    node.stop()
    node.start()
    return deployed


# --------------------------------------------------------------------------------------------
# 1. A registrar (or its node) killed at each stage of a registration
# --------------------------------------------------------------------------------------------


@dataclass
class HelperRun:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str

    def line(self, key: str) -> dict[str, Any]:
        found = [line for line in self.lines if key in line]
        assert found, f"no {key!r} line in {self.lines}; stderr:\n{self.stderr}"
        return found[-1]


def start_helper(chain: Chain, request: RegisterRequest, stage: str, **extra: Any) -> Any:
    spec = {
        "url": chain.node.url,
        "address": chain.deployment.address,
        "deployment_block": chain.deployment.block_number,
        "chain_id": chain.deployment.chain_id,
        "key": DEV_PRIVATE_KEYS[REGISTRAR],
        "digest": request.digest.hex,
        "accuracy_bps": request.accuracy_bps,
        "test_set": request.test_set_digest.hex,
        "card": request.card_digest.hex,
        "stage": stage,
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, str(HELPER), json.dumps(spec)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_helper(proc: Any) -> HelperRun:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"kill_helper did not finish within 60 s; stderr:\n{err}")
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return HelperRun(proc.returncode, lines, err)


def run_helper(chain: Chain, request: RegisterRequest, stage: str, **extra: Any) -> HelperRun:
    return finish_helper(start_helper(chain, request, stage, **extra))


def wait_for_pool(chain: Chain, pending: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while int(chain.node.rpc("txpool_status")["pending"], 16) < pending:
        assert time.monotonic() < deadline, f"never {pending} transaction(s) in the pool"
        time.sleep(0.02)


# stage -> what the restarted registration must report: a new registration (nothing reached the
# node), the killed process's own transaction (it reached a live node), or either (the node died).
KILLS = {
    "before_sign": "new",
    "after_sign": "new",
    "after_send": "original",
    "polling": "original",
    "polling_while_pending": "original",
    "after_receipt": "original",
    "node_sigkill_after_send": "either",
    "node_sigterm_after_send": "original",
}


@pytest.mark.slow  # two interpreter start-ups per case
@pytest.mark.parametrize("stage", list(KILLS))
def test_a_registration_killed_at_any_stage_lands_exactly_once_when_rerun(
    persisted_chain, stage
) -> None:
    chain = persisted_chain
    registrar = DEV_ADDRESSES[REGISTRAR]
    request = request_for(f"crash at {stage}")
    extra: dict[str, Any] = {}
    helper_stage = stage
    if stage == "polling_while_pending":
        # Nothing mined: the registrar polls in vain and dies with its transaction in the pool.
        chain.node.rpc("evm_setAutomine", [False])
        helper_stage, extra["polls"] = "polling", 3
    if stage.startswith("node_"):
        extra["node_pgid"] = chain.node.pid

    killed = run_helper(chain, request, helper_stage, **extra)

    reached = killed.line("reached")
    assert reached["reached"] == helper_stage
    original_tx = reached.get("tx_hash")
    if stage.startswith("node_"):
        # The registrar outlives its node: its receipt poll fails as "can't tell", not a verdict.
        assert reached["node_gone"] is True
        assert killed.returncode == 1
        assert killed.line("error")["error"] == "chain_unavailable"
        restart_after_crash(chain.node)
    else:
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    if KILLS[stage] == "new":
        assert chain.admin.w3.eth.get_transaction_count(registrar, "pending") == 0

    if stage == "polling_while_pending":
        assert reached["not_found"] == 3
        # The restarted registrar sends while the first transaction still waits in the pool;
        # both are mined in one block.
        rerun_proc = start_helper(chain, request, "none")
        wait_for_pool(chain, 2)
        chain.mine()
        chain.node.rpc("evm_setAutomine", [True])
        rerun = finish_helper(rerun_proc)
    else:
        rerun = run_helper(chain, request, "none")

    assert rerun.returncode == 0, rerun.lines or rerun.stderr
    result = rerun.line("result")["result"]
    events = chain.registered_events(request.digest)
    assert len(events) == 1, events
    expected = KILLS[stage]
    if expected == "either":
        expected = "original" if result["already_registered"] else "new"
    assert result["already_registered"] is (expected == "original")
    if expected == "original":
        assert result["record"]["registration_tx"] == original_tx
    assert "0x" + bytes(events[0]["transactionHash"]).hex() == result["record"]["registration_tx"]
    on_chain = chain.client(None).get(request.digest)
    assert on_chain is not None
    assert result["record"] == on_chain.to_dict()
    assert (on_chain.registrant, on_chain.accuracy_bps) == (registrar, request.accuracy_bps)
    assert (on_chain.test_set_digest, on_chain.card_digest) == (TEST_SET, CARD)
    chain.assert_nonce_matches_mined_transactions(registrar)

    after = chain.client().register(request_for(f"after crash at {stage}"))
    assert not after.already_registered
    assert len(chain.registered_events(digest(f"after crash at {stage}"))) == 1
    chain.assert_nonce_matches_mined_transactions(registrar)


# --------------------------------------------------------------------------------------------
# 2. Reorganisations
# --------------------------------------------------------------------------------------------


def reorg(chain: Chain, depth: int, txs: Sequence[tuple[Any, int]] = ()) -> None:
    """Replace the last ``depth`` blocks with as many new ones holding ``txs`` (tx, block offset).

    anvil drops the replaced blocks' transactions: unlike a real network's nodes it does not
    return them to the pool, so a reorg here can also lose a transaction for good.
    """
    before = chain.head()
    chain.node.rpc("anvil_reorg", [depth, [[tx, offset] for tx, offset in txs]])
    assert chain.head() == before


def raw_transaction(chain: Chain, tx_hash: str) -> str:
    return str(chain.node.rpc("eth_getRawTransactionByHash", [tx_hash]))


def signed_register(client: RegistryClient, request: RegisterRequest, nonce: int) -> str:
    """A register transaction signed by ``client``'s key at ``nonce``, not sent."""
    data = client.abi.encode_call(
        "register",
        request.digest.raw,
        request.accuracy_bps,
        TEST_SET.raw,
        request.card_digest.raw,
        ZERO.raw,
    )
    tx = {"to": client.address, "data": "0x" + data.hex(), "gas": GAS_LIMITS["register"]}
    return "0x" + client.transactions.sign(tx, nonce).hex()


def expected_reason(confirmations: int, depth: int) -> str:
    return "verified" if confirmations <= depth else "unconfirmed"


@pytest.mark.parametrize("confirmations", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_registration_reorganised_away_is_never_verified_and_registers_again(
    chain, depth, confirmations
) -> None:
    reader = chain.client(None, confirmations=confirmations)
    request = request_for("reorganised away")
    first = chain.admin.register(request)
    for buried in range(1, depth + 1):  # the registration has `buried` confirmations
        assert verify_digest(reader, request.digest).reason == expected_reason(
            confirmations, buried
        )
        if buried < depth:
            chain.mine()
    assert chain.head() == first.block_number + depth - 1

    reorg(chain, depth)  # the registration's block and those after it, now empty

    for _ in range(confirmations + 1):
        verdict = verify_digest(reader, request.digest)
        assert (verdict.reason, verdict.record) == ("unknown", None)
        chain.mine()
    assert chain.registered_events(request.digest) == []

    # The registrar restarts (a fresh client, nonce read from the node) and registers again.
    again = chain.client(0).register(request)
    assert not again.already_registered
    assert again.block_number > first.block_number + depth - 1
    for buried in range(1, confirmations + 1):
        verdict = verify_digest(reader, request.digest)
        assert verdict.reason == expected_reason(confirmations, buried)
        assert verdict.record.registered_block == again.block_number
        assert verdict.record.registration_tx == again.tx_hash
        chain.mine()
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[0])


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_registration_moved_by_a_reorg_counts_confirmations_from_its_new_block(
    chain, depth
) -> None:
    confirmations = depth + 1
    reader = chain.client(None, confirmations=confirmations)
    request = request_for("moved")
    first = chain.admin.register(request)
    chain.mine(depth - 1)
    assert verify_digest(reader, request.digest).reason == "unconfirmed"
    # Other transactions take the first new block; the registration lands in the last one.
    transfer = {"from": DEV_ADDRESSES[3], "to": DEV_ADDRESSES[4], "value": "0x1"}
    reorg(chain, depth, [(transfer, 0), (raw_transaction(chain, first.tx_hash), depth - 1)])

    moved_to = first.block_number + depth - 1
    record = reader.get(request.digest)
    assert (record.registered_block, record.registration_tx) == (moved_to, first.tx_hash)
    while chain.head() < moved_to + confirmations - 1:
        assert verify_digest(reader, request.digest).reason == "unconfirmed"
        chain.mine()
    assert verify_digest(reader, request.digest).reason == "verified"
    # The registration was re-included, so the writer's nonce is still right.
    assert not chain.admin.register(request_for("after the move")).already_registered
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[0])


def test_a_registration_replaced_at_the_same_height_is_read_with_the_new_fields(chain) -> None:
    """The event cache is keyed by (digest, block): the block's new occupant must not be read
    with the digests of the registration the reorg removed."""
    reader = chain.client(None)
    original = chain.admin.register(request_for("replaced", accuracy=9_000))
    assert reader.get(original.record.digest).card_digest == CARD  # event now cached
    nonce = chain.admin.w3.eth.get_transaction_count(DEV_ADDRESSES[0]) - 1
    other_card = digest("another model card")
    rival = signed_register(chain.admin, request_for("replaced", 9_500, other_card), nonce)

    reorg(chain, 1, [(rival, 0)])

    record = reader.get(original.record.digest)
    assert record.registered_block == original.block_number  # same height, other block
    assert record.accuracy_bps == 9_500
    assert record.card_digest == other_card
    assert record.registration_tx != original.tx_hash
    assert chain.registered_events(original.record.digest)[0]["transactionHash"] == HexBytes(
        record.registration_tx
    )


@pytest.mark.parametrize("blocks_after", [0, 1, 3], ids=["head", "1 block deep", "3 deep"])
def test_a_replacement_with_equal_stored_fields_is_read_with_its_own_card_digest(
    chain, blocks_after: int
) -> None:
    """Storage cannot tell these two registrations apart (same registrant, time and accuracy):
    only the hash of their block can, which lookup returns (zero for the head block itself, whose
    event is then always read again)."""
    reader = chain.client(None)
    original = chain.admin.register(request_for("replaced"))
    for _ in range(blocks_after):
        chain.mine()
    if reader.get(original.record.digest).card_digest != CARD:  # caches the event
        pytest.fail("the original registration reads wrong before any reorg")
    nonce = chain.admin.w3.eth.get_transaction_count(DEV_ADDRESSES[0]) - 1
    other_card = digest("another model card")
    rival = signed_register(chain.admin, request_for("replaced", card=other_card), nonce)

    reorg(chain, blocks_after + 1, [(rival, 0)])

    record = reader.get(original.record.digest)
    if record.registered_at != original.record.registered_at:
        pytest.skip("this anvil gave the replacement block another timestamp")
    assert record.registered_block == original.block_number
    assert record.card_digest == other_card
    assert record.registration_tx != original.tx_hash


def test_the_same_client_registers_again_at_once_after_a_reorg_dropped_its_transaction(
    chain,
) -> None:
    writer = chain.client(0, tx_timeout_s=3.0)
    request = request_for("dropped")
    writer.register(request)
    reorg(chain, 1)
    assert writer.register(request).record.registration_tx is not None


def test_a_write_stuck_behind_a_nonce_gap_is_resent_once_and_its_queued_copy_is_refused(
    chain,
) -> None:
    writer = chain.client(0, tx_timeout_s=5.0)
    writer.register(request_for("dropped"))
    reorg(chain, 1)  # the registration, and the nonce it used, are gone

    result = writer.register(request_for("dropped"))  # first sent one nonce too high, then resent

    assert not result.already_registered
    assert len(chain.registered_events(result.record.digest)) == 1
    # The first copy is executable now: once mined, the contract refuses it as a duplicate, and
    # the key's nonce again equals its mined transactions.
    chain.mine(1)
    assert len(chain.registered_events(result.record.digest)) == 1
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[0])


def test_a_revocation_reorganised_away_leaves_the_model_valid_until_it_is_sent_again(
    chain,
) -> None:
    reader = chain.client(None, confirmations=3)
    request = request_for("revoked then reorganised")
    chain.admin.register(request)
    chain.mine(2)
    assert verify_digest(reader, request.digest).reason == "verified"
    revoked = chain.admin.revoke(request.digest, RevocationReason.SAFETY_ISSUE)
    # A revocation counts from its own block: no confirmations are waited for to refuse a model.
    assert chain.head() == revoked.revocation.block_number
    assert verify_digest(reader, request.digest).reason == "revoked"

    reorg(chain, 1)

    verdict = verify_digest(reader, request.digest)
    assert verdict.reason == "verified"  # the chain no longer holds the revocation
    assert verdict.record.revocation is None
    assert [e.kind for e in reader.history(request.digest)] == ["registered"]
    # The revoker (restarted: the reorg took its nonce too) sends the revocation again.
    chain.client(0).revoke(request.digest, RevocationReason.SAFETY_ISSUE)
    assert verify_digest(reader, request.digest).reason == "revoked"


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    return make_checkpoint()


def test_a_gate_refuses_a_loaded_model_once_its_registration_is_reorganised_away(
    chain, checkpoint
) -> None:
    ttl = 0.5
    gate = Gate(chain.client(None, confirmations=2), validity_ttl_s=ttl)
    model_digest = digest_bytes(checkpoint)
    chain.admin.register(RegisterRequest(model_digest, 9_500, TEST_SET, CARD, None))
    chain.mine()
    gate.admit(checkpoint)
    reorg(chain, 2)

    time.sleep(ttl)
    with pytest.raises(NotVerified) as caught:
        gate.ensure_valid(model_digest)
    assert caught.value.verdict.reason == "unknown"
    assert not gate.loaded(model_digest)
    with pytest.raises(NotVerified):
        gate.admit(checkpoint)


# --------------------------------------------------------------------------------------------
# 3. A node that dies, a node of another chain, a lost race
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    ended: float
    what: str  # a verdict's reason, or the class name of what was raised


@contextmanager
def verifying_in_a_loop(client: RegistryClient, of: Digest) -> Iterator[list[Outcome]]:
    """Call verify_digest over and over in a thread, recording every outcome."""
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                what = verify_digest(client, of).reason
            except Exception as exc:
                what = type(exc).__name__
            outcomes.append(Outcome(started, time.monotonic(), what))
            time.sleep(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join(10)


def within(seconds: float, fn: Callable[[], T]) -> T:
    """``fn()``, run in a thread: a call that hangs fails the test instead of stalling it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:g} s: hung")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("first_io", ["send", "nonce", "fees"])
def test_a_write_while_the_node_is_down_raises_chain_unavailable_instead_of_hanging(
    make_anvil_node, tmp_path, first_io
) -> None:
    """Identity still cached, so the first I/O that fails runs under the nonce lock."""
    node = make_anvil_node(data_dir=tmp_path / "chain", port=free_port())
    chain = deploy(node)
    writer = chain.client(0)
    writer.register(request_for("before"))  # identity, nonce and fees now cached
    if first_io == "nonce":
        writer.transactions.resync_nonce()
    if first_io == "fees":
        writer.transactions.expire_fees()
    node.stop()

    for _ in range(2):  # the second attempt would block on a lock the first left held
        with pytest.raises(ChainUnavailable):
            within(5.0, lambda: writer.register(request_for("while down")))
    node.start()
    assert not within(10.0, lambda: writer.register(request_for("after"))).already_registered
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[0])


def test_a_node_killed_mid_run_is_never_read_as_verified_and_the_same_clients_recover(
    make_anvil_node, tmp_path, checkpoint
) -> None:
    node = make_anvil_node(data_dir=tmp_path / "chain", port=free_port())
    chain = deploy(node)
    model = digest_bytes(checkpoint)
    chain.admin.register(RegisterRequest(model, 9_500, TEST_SET, CARD, None))
    node.stop()  # SIGTERM: the registration is in the state file
    node.start()
    ttl = 0.3
    reader = chain.client(None, identity_ttl_s=60.0)  # a cached identity must not mask an outage
    gate = Gate(reader, validity_ttl_s=ttl)
    gate.admit(checkpoint)

    with verifying_in_a_loop(reader, model) as outcomes:
        time.sleep(0.3)
        os.killpg(node.pid, signal.SIGKILL)
        assert wait_group_exit(node.pid, 10.0)
        killed = time.monotonic()
        time.sleep(max(ttl, 0.3))
        for use in (
            lambda: verify_digest(reader, model),
            lambda: reader.list_models(),
            lambda: gate.ensure_valid(model),  # its last check is older than the TTL
            lambda: gate.admit(checkpoint),
            lambda: chain.admin.register(request_for("during the outage")),
        ):
            with pytest.raises(ChainUnavailable) as caught:
                within(5.0, use)
            assert caught.value.endpoint == node.url
        restarting = time.monotonic()
        restart_after_crash(node)
        time.sleep(0.3)

    assert {o.what for o in outcomes} <= {"verified", "ChainUnavailable"}
    down = [o for o in outcomes if o.started > killed and o.ended < restarting]
    assert down, "no call was made while the node was down"
    assert {o.what for o in down} == {"ChainUnavailable"}
    assert outcomes[-1].what == "verified"
    # The very objects that failed answer again, with the record from the state file.
    assert verify_digest(reader, model).verified
    assert gate.ensure_valid(model).digest == model
    prediction = gate.predict(model, np.zeros((1, 1, 28, 28), dtype=np.uint8))
    assert prediction.provenance["model_digest"] == str(model)
    assert not chain.admin.register(request_for("after the outage")).already_registered
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[0])


def test_a_node_of_another_chain_on_the_same_port_is_refused_on_its_first_answer(
    make_anvil_node, checkpoint
) -> None:
    port = free_port()
    node = make_anvil_node(port=port)
    chain = deploy(node)
    model = digest_bytes(checkpoint)
    request = RegisterRequest(model, 9_500, TEST_SET, CARD, None)
    chain.admin.register(request)
    ttl = 1.0
    watched = chain.client(None, identity_ttl_s=ttl)  # makes a call while the node is down
    unwatched = chain.client(None, identity_ttl_s=ttl)  # sees only the new node
    gate = Gate(unwatched, validity_ttl_s=0.1)
    gate.admit(checkpoint)
    assert verify_digest(watched, model).verified
    assert verify_digest(unwatched, model).verified
    last_identity_check = time.monotonic()

    node.stop()
    with pytest.raises(ChainUnavailable):
        verify_digest(watched, model)
    impostor = make_anvil_node(port=port, chain_id=chain.deployment.chain_id + 1)
    # Same deployer key and nonce: the same contract at the same address, and the same digest
    # registered there. Only the chain id tells the two apart.
    forged = deploy(impostor)
    assert forged.deployment.address == chain.deployment.address
    forged.admin.register(request)

    with pytest.raises(WrongChain) as caught:
        verify_digest(watched, model)  # the outage dropped its cached identity
    assert (caught.value.expected, caught.value.actual) == (
        chain.deployment.chain_id,
        chain.deployment.chain_id + 1,
    )
    # The other client still trusts its last identity check, but every lookup answer carries the
    # chain id, so the impostor is refused on its very first answer, well inside the TTL.
    assert time.monotonic() - last_identity_check < ttl
    with pytest.raises(WrongChain):
        verify_digest(unwatched, model)
    with pytest.raises(WrongChain):
        unwatched.lookup(model)
    time.sleep(gate.validity_ttl_s)  # the gate's own, designed staleness bound
    with pytest.raises(WrongChain):
        gate.ensure_valid(model)


def test_a_registration_losing_a_same_block_race_raises_the_typed_error_with_its_tx_hash(
    chain,
) -> None:
    chain.admin.grant_role(Role.REGISTRAR, DEV_ADDRESSES[2])
    contenders = {1: chain.client(1), 2: chain.client(2)}
    outcome: dict[int, Any] = {}

    def register(key: int) -> None:
        try:
            outcome[key] = contenders[key].register(request_for("contested", 9_000 + key))
        except Exception as exc:
            outcome[key] = exc

    chain.node.rpc("evm_setAutomine", [False])
    threads = [threading.Thread(target=register, args=(key,)) for key in contenders]
    for thread in threads:
        thread.start()
    wait_for_pool(chain, 2)
    chain.mine()
    chain.node.rpc("evm_setAutomine", [True])
    for thread in threads:
        thread.join(10)

    [winner] = [k for k, v in outcome.items() if not isinstance(v, Exception)]
    [loser] = [k for k in outcome if k != winner]
    won, error = outcome[winner], outcome[loser]
    assert isinstance(error, AlreadyRegistered), error
    assert (error.digest, error.registrant) == (digest("contested"), DEV_ADDRESSES[winner])
    failed = chain.admin.w3.eth.get_transaction_receipt(error.details["tx_hash"])
    assert failed["status"] == 0
    assert failed["from"] == DEV_ADDRESSES[loser]
    assert failed["blockNumber"] == won.block_number
    assert len(chain.registered_events(digest("contested"))) == 1
    assert chain.client(None).get(digest("contested")).accuracy_bps == 9_000 + winner


def test_two_processes_sending_one_registration_with_one_key_in_one_block_agree(chain) -> None:
    twins = [chain.client(REGISTRAR), chain.client(REGISTRAR)]  # own nonce counters each
    request = request_for("sent twice")
    results: list[Any] = [None, None]

    def register(i: int) -> None:
        try:
            results[i] = twins[i].register(request)
        except Exception as exc:
            results[i] = exc

    chain.node.rpc("evm_setAutomine", [False])
    threads = [threading.Thread(target=register, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
        wait_for_pool(chain, threads.index(thread) + 1)  # the second reads the first's nonce
    chain.mine()
    chain.node.rpc("evm_setAutomine", [True])
    for thread in threads:
        thread.join(10)

    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.already_registered for r in results) == [False, True]
    assert results[0].record == results[1].record
    assert len(chain.registered_events(request.digest)) == 1
    chain.assert_nonce_matches_mined_transactions(DEV_ADDRESSES[REGISTRAR])


# --------------------------------------------------------------------------------------------
# 4. Load: scripts/load_registrations.py
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def load_script() -> Iterator[Any]:
    path = PROJECT_ROOT / "scripts" / "load_registrations.py"
    spec = importlib.util.spec_from_file_location("load_registrations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("keys", [1, 4])
def test_fifty_concurrent_registrations_land_without_nonce_errors(load_script, keys) -> None:
    report = load_script.run_load(count=50, threads=8, keys=keys, timeout_s=60.0)
    assert report.failures == []
    assert (report.registered, report.nonce_errors) == (50, 0)
    assert (report.listed, report.looked_up) == (50, 50)
    assert report.tx_per_s > 0


def test_the_load_script_exits_non_zero_when_a_registration_fails(
    load_script, monkeypatch, capsys
) -> None:
    real_register = RegistryClient.register

    def flaky(self: RegistryClient, request: RegisterRequest) -> Any:
        if request == load_script.request(1):
            raise ChainError("the node refused the request: nonce too low")
        return real_register(self, request)

    monkeypatch.setattr(RegistryClient, "register", flaky)
    assert load_script.main(["--count", "3", "--threads", "2"]) == 1
    out = capsys.readouterr().out
    assert "nonce errors: 1" in out
    assert "records: 2/3 listed, 2/3 looked up" in out
    assert out.rstrip().endswith("failure(s)")
