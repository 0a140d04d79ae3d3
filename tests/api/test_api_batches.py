"""Batched checkpoints through the clinic service: POST /batches keeps an anchored manifest,
GET /batches/{root} and /batches/manifests/{digest} serve the chain's facts and the bytes, and
/verify, the gate (predict) and downloads judge a batched checkpoint through its batch.

Batches are anchored on the chain directly, as a registrar elsewhere would. Every refused
manifest leaves the store as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from apikit import READER, assert_error, make_card, make_checkpoint, png
from chainkit import request
from mirrorkit import stored_files

from registry.api.errors import error_response
from registry.chain.reverts import (
    BatchAlreadyRegistered,
    BatchRevoked,
    EmptyBatch,
    InvalidProof,
    NotAllowedToRevokeBatch,
    UnknownBatch,
)
from registry.core.batch_proof import BatchProof
from registry.core.batches import Manifest, build_tree, manifest_bytes, request_of
from registry.core.digest import digest_bytes
from registry.core.records import RevocationReason
from registry.services import check_batch, register_batch


@pytest.fixture(scope="module")
def files() -> list[tuple[bytes, bytes]]:
    checkpoints = [make_checkpoint(seed) for seed in range(70, 73)]
    return [(c, make_card(c, accuracy_bps=9_100 + i)) for i, c in enumerate(checkpoints)]


def anchored(api: Any, files: list[tuple[bytes, bytes]]) -> tuple[Any, bytes]:
    tree, manifest = check_batch(files)
    register_batch(lambda: api.client, tree, manifest)
    return tree, manifest


def post_manifest(api: Any, manifest: bytes) -> Any:
    return api.http.post(
        "/batches", content=manifest, headers={**READER, "Content-Type": "application/json"}
    )


def store(api: Any) -> list[str]:
    return stored_files(api.settings.data_dir / "store")


def test_a_batched_checkpoint_verifies_once_its_manifest_is_sent_and_names_its_batch(
    api: Any, files: Any
) -> None:
    tree, manifest = anchored(api, files)
    digest = digest_bytes(files[1][0])
    before = api.verify(files[1][0]).json()
    assert (before["verified"], before["reason"], before["batch"]) == (False, "unknown", None)

    response = post_manifest(api, manifest)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["root"] == "0x" + tree.root.hex() and body["count"] == 3
    assert body["manifest_digest"] == str(digest_bytes(manifest)) and body["manifest_stored"]
    assert body["checkpoints_shelved"] == 3
    again = post_manifest(api, manifest)
    assert again.status_code == 200 and again.json()["new"] is False

    verdict = api.verify(files[1][0]).json()
    assert verdict["verified"] and verdict["reason"] == "verified"
    assert verdict["digest"] == str(digest)
    assert verdict["batch"]["root"] == "0x" + tree.root.hex()
    assert verdict["batch"]["position"] == 1
    assert verdict["batch"]["batch"]["manifest_digest"] == str(digest_bytes(manifest))
    assert verdict["record"]["accuracy_bps"] == 9_101
    assert "position 1" in verdict["detail"]


def test_get_batch_gives_the_chains_facts_and_the_manifest_its_exact_bytes(
    api: Any, files: Any
) -> None:
    tree, manifest = anchored(api, files)
    root = "0x" + tree.root.hex()
    facts = api.http.get(f"/batches/{root}").json()
    assert facts["registrant"] == api.chain.admin and facts["count"] == 3
    assert (facts["revoked"], facts["manifest_stored"], facts["manifest_url"]) == (
        False,
        False,
        None,
    )
    assert_error(api.http.get(f"/batches/manifests/{digest_bytes(manifest).hex}"), 404)

    assert post_manifest(api, manifest).status_code == 201
    facts = api.http.get(f"/batches/{root}").json()
    assert facts["manifest_stored"] and facts["manifest_url"]
    served = api.http.get(facts["manifest_url"])
    assert served.status_code == 200 and served.content == manifest
    assert served.headers["x-manifest-digest"] == str(digest_bytes(manifest))


def test_a_manifest_of_other_bytes_than_the_anchored_one_is_refused_and_nothing_is_stored(
    api: Any, files: Any
) -> None:
    tree, manifest = anchored(api, files)
    # Same tree, same root, other bytes: not the manifest the registrant anchored.
    rewritten = json.dumps(tree.dump(), indent=1).encode()
    error = assert_error(post_manifest(api, rewritten), 400, "invalid_input")
    assert error["details"]["anchored"] == str(digest_bytes(manifest))
    assert error["details"]["manifest_digest"] == str(digest_bytes(rewritten))
    assert store(api) == []
    assert api.verify(files[0][0]).json()["reason"] == "unknown"
    refused = [e for e in api.audit_entries() if e["event"] == "manifest"]
    assert [e["outcome"] for e in refused] == ["invalid_input"]


def test_a_manifest_of_a_batch_never_anchored_is_a_404_and_nothing_is_stored(
    api: Any, files: Any
) -> None:
    _, manifest = check_batch(files)
    error = assert_error(post_manifest(api, manifest), 404, "unknown_batch")
    assert error["details"]["root"].startswith("0x")
    assert store(api) == []


def test_an_altered_manifest_is_refused_when_read(api: Any, files: Any) -> None:
    _, manifest = anchored(api, files)
    dump = json.loads(manifest)
    dump["values"][0]["value"][1] = "10000"  # a better accuracy than was anchored
    error = assert_error(post_manifest(api, json.dumps(dump).encode()), 400, "invalid_input")
    assert "altered" in error["message"]
    assert store(api) == []


def test_a_revoked_leaf_and_a_revoked_batch_are_refused_like_any_revoked_model(
    make_api: Any, files: Any
) -> None:
    api = make_api(validity_ttl_s=0)  # revoked on the chain directly: no cached "verified"
    tree, manifest = anchored(api, files)
    assert post_manifest(api, manifest).status_code == 201
    api.client.revoke_leaf(tree.root, tree.values[0], tree.proof(0), RevocationReason.SAFETY_ISSUE)
    leaf = api.verify(files[0][0]).json()
    assert (leaf["verified"], leaf["reason"]) == (False, "revoked")
    assert leaf["batch"]["position"] == 0 and "safety-issue" in leaf["detail"]
    assert api.verify(files[1][0]).json()["verified"]

    api.client.revoke_batch(tree.root, RevocationReason.DATA_PROBLEM)
    whole = api.verify(files[1][0]).json()
    assert (whole["verified"], whole["reason"]) == (False, "revoked")
    assert whole["batch"]["batch"]["revoked"] is True
    assert api.http.get(f"/batches/0x{tree.root.hex()}").json()["revocation_reason"] == (
        "data-problem"
    )


def test_a_single_registration_wins_over_its_batched_leaf(make_api: Any) -> None:
    api = make_api(validity_ttl_s=0)
    checkpoint = make_checkpoint(77)
    card = make_card(checkpoint)
    neighbour = make_checkpoint(78)
    tree, manifest = check_batch([(checkpoint, card), (neighbour, make_card(neighbour))])
    register_batch(lambda: api.client, tree, manifest)
    assert post_manifest(api, manifest).status_code == 201
    assert api.verify(checkpoint).json()["batch"]["root"] == "0x" + tree.root.hex()
    api.client.register(request_of(tree.values[tree_position(tree, checkpoint)]))
    api.client.revoke(digest_bytes(checkpoint), RevocationReason.SUPERSEDED)
    verdict = api.verify(checkpoint).json()
    # The single record (revoked) answers, not the still-valid batch.
    assert (verdict["verified"], verdict["reason"], verdict["batch"]) == (False, "revoked", None)


def tree_position(tree: Any, checkpoint: bytes) -> int:
    return [leaf[0] for leaf in tree.values].index(digest_bytes(checkpoint).raw)


def test_predict_runs_a_batched_model_and_its_provenance_names_the_batch(
    make_api: Any, files: Any
) -> None:
    api = make_api(validity_ttl_s=0)
    tree, manifest = anchored(api, files)
    assert post_manifest(api, manifest).status_code == 201
    kept = api.http.post(
        "/verify?store=true",
        content=files[2][0],
        headers={**READER, "Content-Type": "application/octet-stream"},
    )
    assert kept.status_code == 200 and kept.json()["stored"], kept.text
    digest = digest_bytes(files[2][0])
    answer = api.predict_png(str(digest), png())
    assert answer.status_code == 200, answer.text
    provenance = answer.json()["provenance"]
    assert provenance["batch"]["root"] == "0x" + tree.root.hex()
    assert provenance["batch"]["position"] == 2

    api.client.revoke_batch(tree.root, RevocationReason.SAFETY_ISSUE)
    refused = assert_error(api.predict_png(str(digest), png()), 403, "not_verified")
    assert refused["details"]["verdict"]["reason"] == "revoked"


def test_an_unknown_or_malformed_root_is_refused_with_its_problem(api: Any) -> None:
    other = build_tree([request("nowhere")])
    error = assert_error(api.http.get(f"/batches/0x{other.root.hex()}"), 404, "unknown_batch")
    assert error["details"]["root"] == "0x" + other.root.hex()
    assert_error(api.http.get("/batches/0x1234"), 400, "invalid_input")
    assert_error(post_manifest(api, b"not json"), 400, "invalid_input")
    assert_error(post_manifest(api, manifest_bytes(other)), 404, "unknown_batch")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (EmptyBatch(), 400, "empty_batch"),
        (UnknownBatch(bytes(32)), 404, "unknown_batch"),
        (BatchAlreadyRegistered(b"\x01" * 32, "0x" + "ab" * 20), 409, "batch_already_registered"),
        (InvalidProof(b"\x01" * 32, b"\x02" * 32), 400, "invalid_proof"),
        (BatchRevoked(b"\x01" * 32, 2), 409, "batch_revoked"),
        (
            NotAllowedToRevokeBatch("0x" + "cd" * 20, b"\x01" * 32),
            403,
            "not_allowed_to_revoke_batch",
        ),
    ],
)
def test_each_batch_revert_is_its_own_problem(error: Exception, status: int, code: str) -> None:
    response = error_response(error)
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body["error"]["code"] == code
    assert body["error"]["message"] == str(error)


def test_a_manifest_already_in_a_shared_store_is_shelved_when_its_batch_is_asked_for(
    api: Any, files: Any
) -> None:
    # `registry register --batch` elsewhere put the manifest in the store this service shares.
    tree, manifest = anchored(api, files)
    api.http.app.state.services.store.put(manifest, "manifest")  # type: ignore[attr-defined]
    assert api.verify(files[0][0]).json()["reason"] == "unknown"  # nothing shelved yet

    facts = api.http.get(f"/batches/0x{tree.root.hex()}").json()
    assert facts["manifest_stored"] is True

    verdict = api.verify(files[0][0]).json()
    assert verdict["verified"] and verdict["batch"]["root"] == "0x" + tree.root.hex()


def verify_with_proof(api: Any, checkpoint: bytes, proof: bytes, query: str = "") -> Any:
    files = [
        ("file", ("m.safetensors", checkpoint, "application/octet-stream")),
        ("proof", ("p.json", proof, "application/json")),
    ]
    return api.http.post(f"/verify{query}", files=files, headers=READER)


def test_verify_takes_a_proof_sent_with_the_file_and_refuses_a_forged_one(
    api: Any, files: Any
) -> None:
    tree, manifest = anchored(api, files)
    digest = digest_bytes(files[1][0])
    proof = BatchProof.from_manifest(Manifest.parse(manifest), digest).to_json()
    answer = verify_with_proof(api, files[1][0], proof)
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    assert verdict["verified"] and verdict["batch"]["root"] == "0x" + tree.root.hex()
    assert verdict["batch"]["position"] == 1 and verdict["stored"] is False

    forged = json.loads(proof)
    forged["leaf"][1] = "10000"  # a better accuracy than was anchored
    error = assert_error(
        verify_with_proof(api, files[1][0], json.dumps(forged).encode()), 400, "invalid_input"
    )
    assert "does not lead" in error["message"]
    # One file's proof does not vouch for another file.
    assert_error(verify_with_proof(api, files[0][0], proof), 400, "invalid_input")
    assert_error(verify_with_proof(api, files[1][0], proof, "?store=true"), 400, "invalid_input")
    assert store(api) == []
    outcomes = [e["outcome"] for e in api.audit_entries() if e["event"] == "verify"]
    assert outcomes == ["verified", "invalid_input", "invalid_input"]
