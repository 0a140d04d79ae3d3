"""Batches end to end in Python: checkpoints and cards -> tree and manifest -> anchored root ->
a verdict for one file through the manifest, on the session's eth-tester chain.

The manifest is anchored by its SHA-256, so any other manifest (altered, or another batch's) is
bad input and nothing is verified; a proof that leads elsewhere is bad input too; "no" answers
(unknown batch, revoked batch or leaf) are verdicts like any other.
"""

from __future__ import annotations

import json

import pytest
from apikit import make_card, make_checkpoint
from chainkit import request

from registry.core.batch_proof import BatchProof
from registry.core.batches import Manifest, build_tree, leaf_of, manifest_bytes
from registry.core.digest import digest_bytes
from registry.core.policy import Policy
from registry.core.records import RevocationReason, Role
from registry.core.store import FileStore
from registry.errors import InvalidInput, InvalidModelCard
from registry.index.batches import BatchShelf
from registry.services import check_batch, register_batch
from registry.verify import verify_in_batch, verify_in_manifest, verify_located


@pytest.fixture(scope="module")
def files() -> list[tuple[bytes, bytes]]:
    checkpoints = [make_checkpoint(seed) for seed in range(4)]
    return [(c, make_card(c, accuracy_bps=9_000 + i)) for i, c in enumerate(checkpoints)]


def anchored(memory, files):
    tree, manifest = check_batch(files)
    batch = register_batch(lambda: memory.client, tree, manifest)
    return tree, Manifest.parse(manifest), batch


def test_a_batch_verifies_each_checkpoint_and_names_its_root_and_position(memory, files) -> None:
    tree, manifest, batch = anchored(memory, files)
    assert batch.count == 4 and batch.registrant == memory.admin
    assert batch.manifest_digest == manifest.digest
    for i, (data, card) in enumerate(files):
        verdict, place = verify_in_manifest(memory.client, digest_bytes(data), manifest)
        assert verdict.verified and verdict.reason == "verified"
        assert (place.root, place.position) == (tree.root, i)
        assert verdict.record.accuracy_bps == 9_000 + i
        assert verdict.record.card_digest == digest_bytes(card)
        assert verdict.record.registration_tx == batch.registration_tx
        assert f"position {i}" in verdict.detail


def test_the_policy_applies_to_a_batched_checkpoint(memory, files) -> None:
    _, manifest, _ = anchored(memory, files)
    verdict, _ = verify_in_manifest(
        memory.client, digest_bytes(files[0][0]), manifest, Policy(min_accuracy_bps=9_500)
    )
    assert (verdict.verified, verdict.reason) == (False, "policy")


def test_an_empty_batch_or_a_checkpoint_given_twice_is_refused(files) -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        check_batch([])
    with pytest.raises(InvalidInput, match="twice") as refused:
        check_batch([files[0], files[1], files[0]])
    assert refused.value.details["digest"] == str(digest_bytes(files[0][0]))


def test_a_card_written_for_another_checkpoint_is_refused_as_in_a_single_registration(
    files,
) -> None:
    with pytest.raises(InvalidModelCard):
        check_batch([(files[0][0], files[1][1])])


def test_a_manifest_whose_digest_is_not_the_anchored_one_verifies_nothing(memory, files) -> None:
    tree, manifest, _ = anchored(memory, files)
    # The same tree, written with another key order: same root, other bytes.
    rewritten = json.dumps(tree.dump(), indent=1).encode()
    other = Manifest.parse(rewritten)
    assert other.root == manifest.root and other.digest != manifest.digest
    with pytest.raises(InvalidInput, match="not the one anchored") as refused:
        verify_in_manifest(memory.client, digest_bytes(files[0][0]), other)
    assert refused.value.details["anchored"] == str(manifest.digest)


def test_an_altered_manifest_is_refused_when_read(files) -> None:
    _, manifest = check_batch(files)
    dump = json.loads(manifest)
    dump["values"][0]["value"][1] = "10000"
    with pytest.raises(InvalidInput, match="altered"):
        Manifest.parse(json.dumps(dump).encode())


def test_a_forged_proof_or_a_proof_for_another_root_verifies_nothing(memory, files) -> None:
    tree, _, _ = anchored(memory, files)
    other = build_tree([request("x"), request("y"), request("z")])
    digest = digest_bytes(files[1][0])
    leaf, proof = tree.values[1], tree.proof(1)
    forged = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    with pytest.raises(InvalidInput, match="does not show") as refused:
        verify_in_batch(memory.client, digest, tree.root, leaf, forged)
    assert refused.value.details["root"] == "0x" + tree.root.hex()
    with pytest.raises(InvalidInput, match="does not show"):
        verify_in_batch(memory.client, digest, other.root, leaf, proof)
    # Another checkpoint's leaf and proof do not vouch for this digest.
    with pytest.raises(InvalidInput, match="does not show"):
        verify_in_batch(memory.client, digest, tree.root, tree.values[2], tree.proof(2))


def test_a_checkpoint_missing_from_the_manifest_is_bad_input(memory, files) -> None:
    _, manifest, _ = anchored(memory, files[:2])
    with pytest.raises(InvalidInput, match="not in the manifest"):
        verify_in_manifest(memory.client, digest_bytes(files[3][0]), manifest)


def test_a_batch_never_anchored_gives_an_unknown_verdict(memory, files) -> None:
    _, raw = check_batch(files)
    verdict, place = verify_in_manifest(
        memory.client, digest_bytes(files[0][0]), Manifest.parse(raw)
    )
    assert (verdict.verified, verdict.reason, place.batch) == (False, "unknown", None)


def test_a_leaf_revoked_by_a_revoker_is_revoked_and_its_neighbours_stay_verified(
    memory, files
) -> None:
    tree, manifest, _ = anchored(memory, files)
    revoker = memory.other(1, Role.REVOKER)
    revoker.revoke_leaf(tree.root, tree.values[2], tree.proof(2), RevocationReason.SAFETY_ISSUE)
    revoked, _ = verify_in_manifest(memory.client, digest_bytes(files[2][0]), manifest)
    assert (revoked.verified, revoked.reason) == (False, "revoked")
    assert "safety-issue" in revoked.detail
    kept, _ = verify_in_manifest(memory.client, digest_bytes(files[3][0]), manifest)
    assert kept.verified


def test_revoking_the_batch_revokes_every_checkpoint_in_it(memory, files) -> None:
    tree, manifest, _ = anchored(memory, files)
    memory.client.revoke_batch(tree.root, RevocationReason.DATA_PROBLEM)
    for data, _ in files:
        verdict, place = verify_in_manifest(memory.client, digest_bytes(data), manifest)
        assert (verdict.verified, verdict.reason) == (False, "revoked")
        assert place.batch is not None and not place.batch.valid


def test_a_single_record_wins_over_the_batched_leaf(memory, files) -> None:
    single = request("single")
    other = build_tree([single, request("neighbour")])
    raw = manifest_bytes(other)
    register_batch(lambda: memory.client, other, raw)
    memory.client.register(single)
    memory.client.revoke(single.digest, RevocationReason.SUPERSEDED)
    verdict, place = verify_in_manifest(memory.client, single.digest, Manifest.parse(raw))
    # The single record (revoked) answers, not the still-valid batch.
    assert (verdict.verified, verdict.reason) == (False, "revoked")
    assert place.batch is None
    assert leaf_of(single) == other.values[0]


# --- the command line, against a real node -------------------------------------------------


@pytest.fixture
def cli(anvil, monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("REGISTRY_RPC_URL", anvil.endpoint)
    monkeypatch.setenv("REGISTRY_CONTRACT_ADDRESS", anvil.client.address)
    monkeypatch.setenv("REGISTRY_CHAIN_ID", str(anvil.client.chain_id))
    monkeypatch.setenv("REGISTRY_PRIVATE_KEY", anvil.keys[0])
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return anvil


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    from registry.cli import main

    code = main(["--json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


def written(tmp_path, files) -> tuple[list[str], list[str]]:
    paths, cards = [], []
    for i, (data, card) in enumerate(files):
        (tmp_path / f"m{i}.safetensors").write_bytes(data)
        (tmp_path / f"m{i}.card.json").write_bytes(card)
        paths.append(str(tmp_path / f"m{i}.safetensors"))
        cards.append(str(tmp_path / f"m{i}.card.json"))
    return paths, cards


def test_cli_registers_a_batch_writes_its_manifest_and_verifies_through_it(
    cli, files, tmp_path, capsys
) -> None:
    paths, cards = written(tmp_path, files[:3])
    manifest = tmp_path / "batch.json"
    code, result, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(manifest)
    )
    assert code == 0, err
    assert result["count"] == 3 and result["manifest"] == str(manifest)
    assert result["manifest_digest"] == str(digest_bytes(manifest.read_bytes()))
    code, verdict, err = run(capsys, "verify", paths[1], "--manifest", str(manifest))
    assert code == 0, err
    assert verdict["verified"] and verdict["reason"] == "verified"
    assert verdict["batch"]["root"] == result["root"] and verdict["batch"]["position"] == 1
    # Without the manifest the file has no record of its own: not verified.
    code, verdict, _ = run(capsys, "verify", paths[1])
    assert (code, verdict["reason"]) == (1, "unknown")


def test_cli_refuses_a_manifest_that_is_not_the_anchored_one(cli, files, tmp_path, capsys) -> None:
    paths, cards = written(tmp_path, files[:2])
    manifest = tmp_path / "batch.json"
    code, _, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(manifest)
    )
    assert code == 0, err
    altered = tmp_path / "altered.json"
    altered.write_bytes(json.dumps(json.loads(manifest.read_bytes()), indent=2).encode())
    code, answer, _ = run(capsys, "verify", paths[0], "--manifest", str(altered))
    assert code == 2
    assert answer["error"]["code"] == "invalid_input"
    assert answer["error"]["details"]["manifest_digest"] == str(digest_bytes(altered.read_bytes()))
    assert "verified" not in answer


def test_cli_batch_needs_one_card_per_checkpoint_and_never_overwrites_a_manifest(
    cli, files, tmp_path, capsys
) -> None:
    paths, cards = written(tmp_path, files[:2])
    code, _, err = run(capsys, "register", "--batch", *paths, "--cards", cards[0])
    assert code == 2 and "one model card per checkpoint" in err
    existing = tmp_path / "taken.json"
    existing.write_text("{}")
    code, _, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(existing)
    )
    assert code == 2 and "never overwritten" in err
    assert existing.read_text() == "{}"


def test_cli_refuses_a_batch_holding_a_checkpoint_already_registered_and_anchors_nothing(
    cli, files, tmp_path, capsys
) -> None:
    paths, cards = written(tmp_path, files[:3])
    code, _, err = run(capsys, "register", paths[1], "--card", cards[1])
    assert code == 0, err
    height = cli.client.head()
    manifest = tmp_path / "batch.json"
    code, answer, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(manifest)
    )
    assert code == 2, err
    assert answer["error"]["code"] == "invalid_input"
    registered = str(digest_bytes(files[1][0]))
    assert answer["error"]["details"]["anchored"] == [{"digest": registered, "state": "registered"}]
    assert "already have a record" in answer["error"]["message"]
    assert not manifest.exists()  # refused before anything was written or sent
    assert cli.client.head() == height
    # Without it, the other two anchor as a batch.
    code, result, err = run(
        capsys, "register", "--batch", paths[0], paths[2], "--cards", cards[0], cards[2]
    )
    assert code == 0 and result["count"] == 2, err


# --- one checkpoint's proof, and the batches a digest is found in -----------------------------


def test_a_proof_cut_from_a_manifest_reads_back_and_verifies_without_the_manifest(
    memory, files
) -> None:
    tree, manifest, _ = anchored(memory, files)
    digest = digest_bytes(files[2][0])
    proof = BatchProof.from_manifest(manifest, digest)
    again = BatchProof.parse(proof.to_json())
    assert again == proof and again.position == 2 and again.manifest_digest == manifest.digest
    verdict = verify_located(memory.client, digest, [again])
    assert verdict.verified and verdict.batch["root"] == "0x" + tree.root.hex()
    assert verdict.batch["position"] == 2


def test_a_forged_proof_file_or_one_for_another_root_is_refused_when_read(files) -> None:
    tree, raw = check_batch(files)
    proof = json.loads(
        BatchProof.from_manifest(Manifest.parse(raw), digest_bytes(files[0][0])).to_json()
    )
    forged = {
        **proof,
        "proof": [
            proof["proof"][0][:-1] + ("0" if proof["proof"][0][-1] != "0" else "1"),
            *proof["proof"][1:],
        ],
    }
    with pytest.raises(InvalidInput, match="does not lead") as refused:
        BatchProof.parse(json.dumps(forged).encode())
    assert refused.value.details["root"] == "0x" + tree.root.hex()
    other = build_tree([request("elsewhere"), request("there")])
    with pytest.raises(InvalidInput, match="does not lead"):
        BatchProof.parse(json.dumps({**proof, "root": "0x" + other.root.hex()}).encode())
    better = {**proof, "leaf": [proof["leaf"][0], "10000", *proof["leaf"][2:]]}
    with pytest.raises(InvalidInput, match="does not lead"):
        BatchProof.parse(json.dumps(better).encode())
    with pytest.raises(InvalidInput, match="registry-batch-proof-v1"):
        BatchProof.parse(raw)  # a manifest is not a proof


def test_verify_located_prefers_a_single_record_and_skips_unanchored_batches(memory, files) -> None:
    _, raw = check_batch(files)  # never anchored
    never = BatchProof.from_manifest(Manifest.parse(raw), digest_bytes(files[0][0]))
    verdict = verify_located(memory.client, digest_bytes(files[0][0]), [never])
    assert (verdict.verified, verdict.reason, verdict.batch) == (False, "unknown", None)
    _, manifest, _ = anchored(memory, files)
    proofs = [never, BatchProof.from_manifest(manifest, digest_bytes(files[0][0]))]
    assert verify_located(memory.client, digest_bytes(files[0][0]), proofs).verified


def test_the_shelf_finds_a_stored_manifest_and_its_proofs(memory, files, tmp_path) -> None:
    tree, _, _ = anchored(memory, files)
    raw = manifest_bytes(tree)
    store = FileStore(tmp_path / "store")
    store.put(raw, "manifest")
    shelf = BatchShelf(tmp_path / "batches.sqlite3", store)
    assert shelf.add(Manifest.parse(raw)) == 4 and shelf.add(Manifest.parse(raw)) == 0
    # Another process on the same file sees it, reading the manifest from the store.
    other = BatchShelf(tmp_path / "batches.sqlite3", store)
    (proof,) = other.proofs(digest_bytes(files[1][0]))
    assert (proof.root, proof.position) == (tree.root, 1)
    assert list(other.proofs(digest_bytes(b"not in any batch"))) == []
    assert other.holds(tree.root) and not other.holds(bytes(32))


def test_cli_keeps_the_manifest_cuts_a_proof_and_verifies_show_and_history_through_it(
    cli, files, tmp_path, capsys
) -> None:
    paths, cards = written(tmp_path, files[:3])
    manifest = tmp_path / "batch.json"
    code, batch, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(manifest)
    )
    assert code == 0, err
    kept = FileStore(tmp_path / "data" / "store").get(
        digest_bytes(manifest.read_bytes()).hex, "manifest"
    )
    assert kept == manifest.read_bytes()
    digest = str(digest_bytes(files[2][0]))

    proof = tmp_path / "m2.proof.json"
    code, cut, err = run(
        capsys, "batch", "proof", digest, "--manifest", str(manifest), "-o", str(proof)
    )
    assert code == 0, err
    assert cut["root"] == batch["root"] and cut["position"] == 2 and proof.exists()
    code, verdict, err = run(capsys, "verify", paths[2], "--proof", str(proof))
    assert code == 0, err
    assert verdict["verified"] and verdict["batch"]["root"] == batch["root"]
    assert verdict["batch"]["position"] == 2
    # The proof of one file does not vouch for another.
    code, answer, _ = run(capsys, "verify", paths[0], "--proof", str(proof))
    assert code == 2 and answer["error"]["code"] == "invalid_input"

    code, shown, err = run(capsys, "show", digest)
    assert code == 0, err
    assert shown["verified"] and shown["registered"] is False
    assert [b["root"] for b in shown["batches"]] == [batch["root"]]
    code, events, err = run(capsys, "history", digest)
    assert code == 0, err
    assert [(e["kind"], e["root"], e["position"]) for e in events] == [
        ("batch-registered", batch["root"], 2)
    ]
    code, events, _ = run(capsys, "history")
    assert ("batch-registered", batch["root"]) in [(e["kind"], e.get("root")) for e in events]
    code, batches, err = run(capsys, "batch", "list")
    assert code == 0, err
    listed = [(b["root"], b["count"], b["shelved"], b["revoked"]) for b in batches]
    assert (batch["root"], 3, True, False) in listed


def test_cli_refuses_a_forged_proof_and_verifies_nothing(cli, files, tmp_path, capsys) -> None:
    paths, cards = written(tmp_path, files[:2])
    manifest = tmp_path / "batch.json"
    code, _, err = run(
        capsys, "register", "--batch", *paths, "--cards", *cards, "--manifest", str(manifest)
    )
    assert code == 0, err
    proof = tmp_path / "p.json"
    digest = str(digest_bytes(files[0][0]))
    assert (
        run(capsys, "batch", "proof", digest, "--manifest", str(manifest), "-o", str(proof))[0] == 0
    )
    forged = json.loads(proof.read_text())
    forged["leaf"][1] = "10000"  # claim a better accuracy than was anchored
    proof.write_text(json.dumps(forged))
    code, answer, _ = run(capsys, "verify", paths[0], "--proof", str(proof))
    assert code == 2 and "does not lead" in answer["error"]["message"]
    assert "verified" not in answer
    code, _, err = run(
        capsys, "batch", "proof", digest, "--manifest", str(manifest), "-o", str(proof)
    )
    assert code == 2 and "never overwritten" in err
    code, _, err = run(capsys, "batch", "proof", digest)
    assert code == 2 and "--manifest" in err
