"""Proof bundles on a real node (anvil answers eth_getProof; eth-tester does not).

Each refusal is asserted by its error class and the step it names; each bundle that passes is
compared with what the online client reads for the same record.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from chainkit import digest, request
from eth_hash.auto import keccak

from registry.chain.bundles import CheckedBundle, check_bundle, record_slots
from registry.chain.deploy import deploy_and_grant_self
from registry.chain.proofs import header_rlp, make_bundle
from registry.cli.main import main
from registry.config import Settings
from registry.core.bundles import ProofBundle, TrustedBlocks
from registry.core.digest import digest_file
from registry.core.records import RevocationReason
from registry.errors import BundleRejected, ChainUnavailable, InvalidInput, ProofsUnsupported
from registry.gate import Gate
from registry.offline import ProofBundleShelf, Trust, verify_bundle

pytestmark = pytest.mark.anvil


def check(client: Any, bundle: ProofBundle, **overrides: Any) -> CheckedBundle:
    options: dict[str, Any] = {
        "trusted_hash": bundle.block_hash,
        "contract": client.address,
        "runtime_code": client.artifact.deployed_bytecode,
        "chain_id": client.chain_id,
    }
    options.update(overrides)
    return check_bundle(bundle, **options)


def test_header_rebuilt_from_rpc_fields_hashes_to_the_block_hash(anvil: Any) -> None:
    anvil.client.register(request("a"))
    head = anvil.client.head()
    for number in (0, 1, head):
        block = anvil.node.rpc("eth_getBlockByNumber", [hex(number), False])
        assert "0x" + keccak(header_rlp(block)).hex() == block["hash"]
    changed = dict(block, gasUsed=hex(int(block["gasUsed"], 16) + 1))
    assert "0x" + keccak(header_rlp(changed)).hex() != block["hash"]


def test_bundle_record_decodes_exactly_as_lookup_returns_it(anvil: Any) -> None:
    anvil.client.register(request("a"))
    anvil.client.register(request("b", accuracy=8_812, parent=digest("a")))
    anvil.client.revoke(digest("a"), RevocationReason.SUPERSEDED, digest("b"))
    for label in ("a", "b"):
        online = anvil.client.get(digest(label))
        checked = make_bundle(anvil.client, digest(label))
        record = checked.record
        assert record is not None and online is not None
        # Storage-proven fields, and the carried event fields, are the online ones; the online
        # revocation also names who revoked it (from its event), which a bundle does not carry.
        expected = online
        if online.revocation is not None:
            expected = dataclasses.replace(
                online,
                revocation=dataclasses.replace(online.revocation, revoker=None, tx_hash=None),
            )
        assert record == expected
    revoked = make_bundle(anvil.client, digest("a")).record
    assert revoked is not None and revoked.revocation is not None
    assert revoked.revocation.reason is RevocationReason.SUPERSEDED
    assert revoked.revocation.replacement == digest("b")


def test_bundle_round_trips_through_its_json(anvil: Any) -> None:
    anvil.client.register(request("a"))
    bundle = make_bundle(anvil.client, digest("a")).bundle
    assert ProofBundle.parse(bundle.to_json()) == bundle


def test_bundle_of_an_unregistered_digest_proves_it_unknown(anvil: Any) -> None:
    anvil.client.register(request("a"))
    checked = make_bundle(anvil.client, digest("never"))
    assert checked.record is None
    trust = Trust(checked.block_hash, anvil.client.address, anvil.client.chain_id)
    offline = verify_bundle(
        checked.bundle, digest("never"), trust, anvil.client.artifact.deployed_bytecode
    )
    assert not offline.verdict.verified and offline.verdict.reason == "unknown"
    with pytest.raises(BundleRejected, match="not for this file"):
        verify_bundle(checked.bundle, digest("a"), trust, anvil.client.artifact.deployed_bytecode)


def test_bundle_at_a_block_before_the_revocation_still_shows_it_valid(anvil: Any) -> None:
    anvil.client.register(request("a"))
    before = anvil.client.head()
    anvil.client.revoke(digest("a"), RevocationReason.SAFETY_ISSUE)
    old = make_bundle(anvil.client, digest("a"), before)
    assert old.record is not None and old.record.revocation is None
    new = make_bundle(anvil.client, digest("a"))
    assert new.record is not None and new.record.revocation is not None
    assert "revocation made after the bundle's block" in old.to_dict()["cannot_show"][0]


# --- refusals ---------------------------------------------------------------------------------


@pytest.fixture
def made(anvil: Any) -> ProofBundle:
    anvil.client.register(request("a"))
    anvil.client.register(request("b"))
    return make_bundle(anvil.client, digest("a")).bundle


def test_tampered_header_is_refused(anvil: Any, made: ProofBundle) -> None:
    header = bytearray(made.header)
    header[-40] ^= 1
    with pytest.raises(BundleRejected, match="not the trusted block hash"):
        check(anvil.client, dataclasses.replace(made, header=bytes(header)))


def test_wrong_trusted_hash_is_refused(anvil: Any, made: ProofBundle) -> None:
    other = anvil.node.rpc("eth_getBlockByNumber", ["0x1", False])["hash"]
    with pytest.raises(BundleRejected) as caught:
        check(anvil.client, made, trusted_hash=bytes.fromhex(other[2:]))
    assert caught.value.details["trusted_hash"] == other


def test_bundle_from_another_chain_is_refused(anvil: Any, made: ProofBundle) -> None:
    with pytest.raises(BundleRejected) as caught:
        check(anvil.client, made, chain_id=1)
    assert caught.value.details == {
        "problem": caught.value.problem,
        "chain_id": made.chain_id,
        "expected": 1,
    }


def test_proof_for_another_contract_is_refused(anvil: Any, made: ProofBundle) -> None:
    from registry.chain.keys import account_from_hex

    other, _ = deploy_and_grant_self(
        anvil.client.w3, account_from_hex(anvil.keys[1], "key 1"), endpoint=anvil.endpoint
    )
    other.register(request("a"))
    theirs = make_bundle(other, digest("a")).bundle
    # Checked against the registry the clinic trusts, another registry's bundle is refused...
    with pytest.raises(BundleRejected, match="not the trusted registry"):
        check(anvil.client, theirs)
    # ... and so is the other account's proof passed off under the trusted address.
    forged = dataclasses.replace(made, account_proof=theirs.account_proof)
    with pytest.raises(BundleRejected, match="account proof"):
        check(anvil.client, forged)


def test_proof_for_another_slot_is_refused(anvil: Any, made: ProofBundle) -> None:
    other = make_bundle(anvil.client, digest("b")).bundle
    with pytest.raises(BundleRejected, match="slots other than"):
        check(anvil.client, dataclasses.replace(made, digest=digest("b")))
    swapped = (dataclasses.replace(made.storage[0], nodes=other.storage[0].nodes),)
    with pytest.raises(BundleRejected, match="entry slot proof"):
        check(anvil.client, dataclasses.replace(made, storage=swapped + made.storage[1:]))


@pytest.mark.parametrize("damage", ["truncated", "reordered", "dropped_root"])
def test_truncated_or_reordered_proof_nodes_are_refused(
    anvil: Any, made: ProofBundle, damage: str
) -> None:
    nodes = list(made.storage[0].nodes)
    assert len(nodes) >= 2
    if damage == "truncated":
        nodes = nodes[:-1]
    elif damage == "reordered":
        nodes[0], nodes[1] = nodes[1], nodes[0]
    else:
        nodes = nodes[1:]
    storage = (dataclasses.replace(made.storage[0], nodes=tuple(nodes)), *made.storage[1:])
    with pytest.raises(BundleRejected, match="entry slot proof"):
        check(anvil.client, dataclasses.replace(made, storage=storage))
    account = list(made.account_proof)
    account[0], account[-1] = account[-1], account[0]
    with pytest.raises(BundleRejected, match="account proof"):
        check(anvil.client, dataclasses.replace(made, account_proof=tuple(account)))


def test_claimed_value_other_than_the_proven_one_is_refused(anvil: Any, made: ProofBundle) -> None:
    entry = made.storage[0]
    storage = (dataclasses.replace(entry, value=entry.value ^ (1 << 240)), *made.storage[1:])
    with pytest.raises(BundleRejected, match="entry slot holds"):
        check(anvil.client, dataclasses.replace(made, storage=storage))


def test_bundle_slots_are_the_records_own(made: ProofBundle) -> None:
    assert tuple(s.slot for s in made.storage) == record_slots(digest("a"))


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("block"),
        lambda d: d.update(format="other/1"),
        lambda d: d["account_proof"].append("0xzz"),
        lambda d: d.update(chain_id=-1),
        lambda d: d.update(unexpected=1),
        lambda d: d["storage_proofs"][0].update(value="0x00ff"),
    ],
)
def test_malformed_bundle_is_bad_input(made: ProofBundle, edit: Any) -> None:
    data = json.loads(made.to_json())
    edit(data)
    with pytest.raises(InvalidInput):
        ProofBundle.parse(json.dumps(data).encode())


def test_memory_chain_says_it_has_no_proofs(memory: Any) -> None:
    with pytest.raises(ProofsUnsupported) as caught:
        make_bundle(memory.client, digest("a"))
    assert "eth_getProof" in caught.value.message


# --- the command line, with the node stopped --------------------------------------------------


def _registered_file(tmp_path: Path, client: Any) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"checkpoint bytes for the offline test")
    req = dataclasses.replace(request("x"), digest=digest_file(path))
    client.register(req)
    return path


def test_cli_verifies_offline_after_the_node_stopped(
    make_anvil_backend: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = make_anvil_backend()
    node = backend.node
    path = _registered_file(tmp_path, backend.client)
    bundle = tmp_path / "bundle.json"
    common = ["--rpc-url", node.url, "--contract", backend.client.address]
    assert main([*common, "proof", str(digest_file(path)), "-o", str(bundle)]) == 0
    block_hash = ProofBundle.parse(bundle.read_bytes()).block_hash
    node.stop()
    capsys.readouterr()

    verify = [*common, "--json", "verify", str(path), "--bundle", str(bundle)]
    assert main([*verify, "--trusted-block-hash", "0x" + block_hash.hex()]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["verified"] and answer["source"] == "proof_bundle"
    assert answer["bundle"]["cannot_show"]

    # A pinned-blocks file works the same; a bundle of a block it does not pin is refused.
    pins = tmp_path / "pins.json"
    number = ProofBundle.parse(bundle.read_bytes()).block_number
    pins.write_bytes(TrustedBlocks(31337, backend.client.address, {number: block_hash}).to_json())
    assert main([*verify, "--trusted-checkpoint", str(pins)]) == 0
    monkeypatch.setenv("REGISTRY_TRUSTED_CHECKPOINT_FILE", str(pins))
    assert main(verify) == 0  # the clinic's own pins, from its settings
    monkeypatch.delenv("REGISTRY_TRUSTED_CHECKPOINT_FILE")
    capsys.readouterr()
    assert main(verify) == 2  # no trusted hash at all: nothing to believe the bundle from
    assert "trusted" in json.loads(capsys.readouterr().out)["error"]["message"]
    assert main([*verify[:-2], "--trusted-block-hash", "0x" + block_hash.hex()]) == 2
    pins.write_bytes(TrustedBlocks(31337, None, {number - 1: block_hash}).to_json())
    capsys.readouterr()
    assert main([*verify, "--trusted-checkpoint", str(pins)]) == 1
    assert "not one" in json.loads(capsys.readouterr().out)["error"]["message"]

    # Tampered: exit 1 with the reason; unusable: exit 2.
    data = json.loads(bundle.read_text())
    data["storage_proofs"][0]["value"] = hex(int(data["storage_proofs"][0]["value"], 16) + 1)
    bundle.write_text(json.dumps(data))
    assert main([*verify, "--trusted-block-hash", "0x" + block_hash.hex()]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "bundle_rejected"
    bundle.write_text("{not json")
    assert main([*verify, "--trusted-block-hash", "0x" + block_hash.hex()]) == 2


def test_cli_proof_on_a_chain_without_proofs_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--rpc-url", "memory", "proof", str(digest("a"))]) == 2
    assert "eth_getProof" in capsys.readouterr().err


# --- the gate ---------------------------------------------------------------------------------


def test_gate_answers_from_a_stored_bundle_only_when_allowed_and_fresh(
    make_anvil_backend: Any, tmp_path: Path
) -> None:
    backend = make_anvil_backend()
    node = backend.node
    client = backend.client
    client.register(request("g"))
    client.register(request("revoked later"))
    pinned = client.head()
    block = node.rpc("eth_getBlockByNumber", [hex(pinned), False])
    pins = tmp_path / "pins.json"
    pins.write_bytes(
        TrustedBlocks(
            client.chain_id, client.address, {pinned: bytes.fromhex(block["hash"][2:])}
        ).to_json()
    )
    settings = Settings(
        rpc_url=node.url,
        data_dir=tmp_path / "data",
        offline_bundles=True,
        trusted_checkpoint_file=pins,
        offline_bundle_max_age_s=3600,
    )
    timestamp = int(block["timestamp"], 16)
    now = [timestamp + 60.0]
    shelf = ProofBundleShelf(settings, client.artifact.deployed_bytecode, clock=lambda: now[0])
    gate = Gate(client, validity_ttl_s=0, offline=shelf)
    closed = Gate(client, validity_ttl_s=0)
    assert gate.verdict(digest("g")).verified  # online, and the bundle is kept
    assert shelf.path(digest("g")).is_file()
    # A model revoked after the pinned block: its bundle would still show it valid, so the
    # service drops the bundle as soon as it learns of the revocation.
    assert gate.verdict(digest("revoked later")).verified
    assert shelf.path(digest("revoked later")).is_file()
    client.revoke(digest("revoked later"), RevocationReason.SAFETY_ISSUE)
    assert gate.verdict(digest("revoked later")).reason == "revoked"
    assert not shelf.path(digest("revoked later")).exists()
    node.stop()

    offline = gate.verdict(digest("g"))
    assert offline.verified and offline.checked_block == pinned
    assert "proof bundle at block" in offline.detail and "cannot show" in offline.detail
    with pytest.raises(ChainUnavailable):
        closed.verdict(digest("g"))  # off by default: fail closed
    with pytest.raises(ChainUnavailable):
        gate.verdict(digest("never-stored"))
    with pytest.raises(ChainUnavailable):
        gate.verdict(digest("revoked later"))
    now[0] = timestamp + 3601.0
    with pytest.raises(ChainUnavailable):
        gate.verdict(digest("g"))  # too old
