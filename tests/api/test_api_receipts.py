"""Receipts in /predict answers, the service's audit anchors on chain, and the proof routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from apikit import READER, Api, assert_error, png, settings_for
from fastapi.testclient import TestClient

from registry.api import create_app
from registry.chain.audit_anchor import AuditAnchors
from registry.core import merkle_log
from registry.core.receipts import InclusionProof, Receipt, check_entry, check_inclusion


def anchoring(api: Api) -> Any:
    return api.http.app.state.anchoring  # type: ignore[attr-defined]


def predicted(api: Api, digest: str) -> dict[str, Any]:
    response = api.predict_png(digest, png())
    assert response.status_code == 200, response.text
    receipt: dict[str, Any] = response.json()["receipt"]
    return receipt


def chain_root(api: Api, service: str, size: int) -> bytes | None:
    return AuditAnchors(api.client, None).root(service, size)


def test_a_prediction_carries_a_receipt_naming_its_audit_entry(api: Api) -> None:
    _, digest = api.registered_model()

    response = api.predict_png(digest, png())

    body = response.json()
    receipt, provenance = body["receipt"], body["provenance"]
    lines = (api.settings.data_dir / "audit.log").read_bytes().splitlines()
    line = lines[receipt["log_index"]]
    assert receipt["leaf_hash"] == merkle_log.leaf_hash(line).hex()
    assert b'"event":"predict"' in line and digest.encode() in line
    assert receipt["model_digest"] == digest
    assert receipt["verdict_block"] == provenance["validity_confirmed_at_block"]
    assert receipt["service"] == api.client.account.address  # type: ignore[union-attr]
    assert (receipt["chain_id"], receipt["contract"]) == (
        provenance["chain_id"],
        provenance["contract"],
    )


def test_a_receipt_is_proved_against_the_root_the_service_anchored(api: Api) -> None:
    _, digest = api.registered_model()
    receipt = predicted(api, digest)
    predicted(api, digest)

    anchor = anchoring(api).anchor_once()
    proof = api.http.get(f"/audit/proof/{receipt['log_index']}")

    assert anchor is not None, anchoring(api).problem
    assert proof.status_code == 200, proof.text
    body = proof.json()
    assert body["size"] == anchor.size
    assert chain_root(api, receipt["service"], anchor.size) == anchor.root
    parsed, inclusion = Receipt.parse(receipt), InclusionProof.parse(body)
    assert check_entry(parsed, inclusion, service=receipt["service"]) is None
    result = check_inclusion(parsed, inclusion, anchor.root, service=receipt["service"])
    assert result.verified, result.message


def test_a_proof_is_not_found_until_an_anchor_covers_the_entry(api: Api) -> None:
    _, digest = api.registered_model()
    receipt = predicted(api, digest)

    error = assert_error(api.http.get(f"/audit/proof/{receipt['log_index']}"), 404, "not_found")

    assert error["details"] == {"index": receipt["log_index"], "anchored_size": 0}


def test_an_anchor_is_skipped_when_the_log_has_not_grown(api: Api) -> None:
    _, digest = api.registered_model()
    predicted(api, digest)
    first = anchoring(api).anchor_once()
    head = api.client.head()

    again = anchoring(api).anchor_once()

    assert first is not None and again is None
    assert api.client.head() == head  # no transaction was sent
    assert anchoring(api).status()["anchored_size"] == first.size


def test_health_names_the_anchoring_address_and_the_last_anchor(api: Api) -> None:
    _, digest = api.registered_model()
    predicted(api, digest)
    anchor = anchoring(api).anchor_once()
    assert anchor is not None

    body = api.http.get("/health").json()

    assert body["audit_anchor"] == {
        "address": api.client.account.address,  # type: ignore[union-attr]
        "anchored_size": anchor.size,
        "anchored_block": anchor.anchored_block,
        "error": None,
    }


def test_a_configured_anchoring_key_anchors_under_its_own_address(
    make_api: Callable[..., Api],
) -> None:
    probe = make_api()
    api = make_api(audit_anchor_private_key=probe.chain.keys[3])
    _, digest = api.registered_model()  # registered with the service's key, anchored with another
    receipt = predicted(api, digest)

    anchor = anchoring(api).anchor_once()

    anchorer = api.chain.address(3)
    assert receipt["service"] == anchorer != api.client.account.address  # type: ignore[union-attr]
    assert anchor is not None and anchor.service == anchorer
    assert chain_root(api, anchorer, anchor.size) == anchor.root
    assert chain_root(api, api.client.account.address, anchor.size) is None  # type: ignore[union-attr]


def test_an_anchoring_failure_is_reported_and_never_blocks_a_prediction(
    make_api: Callable[..., Api],
) -> None:
    unfunded = "0x" + "11" * 32  # a key with no ether on this chain: its anchor cannot be paid
    api = make_api(audit_anchor_private_key=unfunded)
    _, digest = api.registered_model()
    predicted(api, digest)

    assert anchoring(api).anchor_once() is None
    receipt = predicted(api, digest)

    assert receipt["log_index"] > 0
    error = api.http.get("/health").json()["audit_anchor"]["error"]
    assert error is not None and error.startswith("the last anchoring failed")


def test_a_service_without_a_key_says_so_and_issues_receipts_naming_no_service(
    memory: Any, tmp_path: Path
) -> None:
    reader = memory.reader()  # the chain client holds no key, and none is configured
    with TestClient(create_app(settings_for(tmp_path), client=reader)) as http:
        health = http.get("/health").json()
        assert http.app.state.anchoring.anchor_once() is None  # type: ignore[attr-defined]

    assert health["audit_anchor"]["address"] is None
    assert "no anchoring key" in health["audit_anchor"]["error"]


def test_the_anchor_at_shutdown_covers_every_entry(memory: Any, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with TestClient(create_app(settings, client=memory.client)) as http:
        assert http.get("/health").status_code == 200
    entries = len((tmp_path / "audit.log").read_bytes().splitlines())

    latest, _ = AuditAnchors(memory.client, None).latest(memory.admin)

    assert latest is not None and latest.size == entries


def test_two_workers_on_one_log_anchor_one_tree_that_proves_both_their_receipts(
    memory: Any, tmp_path: Path
) -> None:
    # Two apps on one data dir are two worker processes of one service: one log, one tree.
    settings = settings_for(tmp_path)
    with (
        TestClient(create_app(settings, client=memory.client)) as one,
        TestClient(create_app(settings, client=memory.client)) as two,
    ):
        first, second = Api(one, memory, settings), Api(two, memory, settings)
        _, digest = first.registered_model()
        receipts = [predicted(first, digest), predicted(second, digest), predicted(first, digest)]
        anchor = one.app.state.anchoring.anchor_once()  # type: ignore[attr-defined]
        assert anchor is not None
        for receipt in receipts:
            body = two.get(f"/audit/proof/{receipt['log_index']}").json()
            inclusion = InclusionProof.parse(body)
            assert merkle_log.leaf_hash(inclusion.entry).hex() == receipt["leaf_hash"]
            assert merkle_log.verify_inclusion(
                bytes.fromhex(receipt["leaf_hash"]),
                receipt["log_index"],
                inclusion.size,
                list(inclusion.path),
                anchor.root,
            )
    assert len({r["log_index"] for r in receipts}) == 3


def test_consistency_between_two_anchored_sizes_proves_the_log_only_grew(api: Api) -> None:
    _, digest = api.registered_model()
    predicted(api, digest)
    first = anchoring(api).anchor_once()
    predicted(api, digest)
    second = anchoring(api).anchor_once()
    assert first is not None and second is not None

    body = api.http.get(
        "/audit/consistency", params={"first": first.size, "second": second.size}
    ).json()

    proof = [bytes.fromhex(h) for h in body["proof"]]
    assert merkle_log.verify_consistency(first.size, second.size, proof, first.root, second.root)
    assert body["first_root"] == first.root.hex() and body["second_root"] == second.root.hex()


def test_the_proof_routes_refuse_bad_sizes_and_follow_the_read_rules(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(require_key_for_reads=True)
    api.registered_model()
    assert anchoring(api).anchor_once() is not None

    assert_error(api.http.get("/audit/proof/1"), 401, "unauthenticated")
    assert api.http.get("/audit/proof/1", headers=READER).status_code == 200
    assert_error(api.http.get("/audit/proof/1?size=1", headers=READER), 400, "invalid_input")
    assert_error(api.http.get("/audit/proof/-1", headers=READER), 400, "invalid_input")
    assert_error(api.http.get("/audit/proof/1?size=99999", headers=READER), 404, "not_found")
    params = {"first": 3, "second": 2}
    assert_error(api.http.get("/audit/consistency", params=params, headers=READER), 400)
