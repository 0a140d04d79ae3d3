"""POST /verify: a verdict for the exact bytes uploaded; "no" is a 200 with the reason."""

from __future__ import annotations

import time

from apikit import Api, assert_error, digest_of, make_card, make_checkpoint

from registry.core.digest import Digest
from registry.core.records import RevocationReason


def test_verify_says_verified_with_the_on_chain_record_for_a_registered_checkpoint(
    api: Api,
) -> None:
    checkpoint, digest = api.registered_model(accuracy_bps=9731)

    response = api.verify(checkpoint)

    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["verified"] is True
    assert verdict["reason"] == "verified"
    assert verdict["digest"] == digest
    assert verdict["stored"] is True
    assert verdict["chain_id"] == api.client.chain_id
    assert verdict["contract"] == api.client.address
    assert verdict["checked_block"] >= verdict["record"]["registered_block"]
    record = verdict["record"]
    assert record["registrant"] == api.client.account.address
    assert record["accuracy_bps"] == 9731 and record["accuracy_percent"] == 97.31
    assert record["registration_tx"].startswith("0x")
    assert record["card_digest"].startswith("sha256:")
    assert record["revocation"] is None


def test_verify_accepts_a_multipart_upload_too(api: Api) -> None:
    checkpoint, digest = api.registered_model()

    response = api.http.post("/verify", files={"file": ("any-name.bin", checkpoint, "text/plain")})

    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True and response.json()["digest"] == digest


def test_one_changed_byte_makes_the_checkpoint_unknown_and_unusable(api: Api) -> None:
    checkpoint, _ = api.registered_model()
    tampered = bytearray(checkpoint)
    tampered[-1] ^= 0x01  # last weight byte: the header still parses, the digest does not match
    tampered_digest = digest_of(bytes(tampered))

    response = api.verify(bytes(tampered))

    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["verified"] is False
    assert verdict["reason"] == "unknown"
    assert verdict["record"] is None
    assert verdict["stored"] is False
    assert verdict["digest"] == tampered_digest
    # Nothing can run it: its digest names no stored, registered model.
    assert_error(api.predict_png(tampered_digest), 404, "not_found")
    assert_error(api.http.get(f"/models/{tampered_digest}/checkpoint"), 404, "not_found")


def test_verify_reports_a_revoked_checkpoint_with_reason_and_replacement(api: Api) -> None:
    old, old_digest = api.registered_model(seed=1)
    _, new_digest = api.registered_model(seed=2)
    assert api.revoke(old_digest, "superseded", replacement=new_digest).status_code == 200

    verdict = api.verify(old).json()

    assert verdict["verified"] is False
    assert verdict["reason"] == "revoked"
    revocation = verdict["record"]["revocation"]
    assert revocation["reason"] == "superseded"
    assert revocation["replacement"] == new_digest
    assert revocation["revoked_at"].endswith("Z")


def test_verify_applies_the_clinic_policy(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(min_accuracy_bps=9500)
    checkpoint, _ = api.registered_model(accuracy_bps=9000)

    verdict = api.verify(checkpoint).json()

    assert verdict["verified"] is False
    assert verdict["reason"] == "policy"
    assert "below the clinic's minimum" in verdict["policy_failures"][0]


def test_verify_of_an_empty_body_is_a_400(api: Api) -> None:
    assert_error(api.verify(b""), 400, "invalid_input")


def test_verify_of_a_valid_but_unregistered_checkpoint_is_unknown(api: Api) -> None:
    checkpoint = make_checkpoint(seed=7)
    assert make_card(checkpoint)  # a card exists, but nobody registered it
    verdict = api.verify(checkpoint).json()
    assert verdict["verified"] is False and verdict["reason"] == "unknown"


def test_each_verify_is_audited_with_its_verdict(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    api.verify(checkpoint)
    entry = api.audit_entries()[-1]
    assert entry["event"] == "verify"
    assert entry["digest"] == digest
    assert entry["outcome"] == "verified"
    assert entry["who"].startswith("ip:")
    assert isinstance(entry["block"], int)


def test_a_revocation_made_elsewhere_reaches_verify_within_the_validity_ttl(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    assert api.verify(checkpoint).json()["verified"] is True  # header and verdict now remembered
    assert api.verify(checkpoint).json()["verified"] is True

    # Revoked straight on chain: this service hears of it only by reading the chain again.
    api.client.revoke(Digest.parse(digest), RevocationReason.SAFETY_ISSUE)
    time.sleep(api.settings.validity_ttl_s + 0.05)

    verdict = api.verify(checkpoint).json()
    assert verdict["verified"] is False and verdict["reason"] == "revoked"


def test_a_repeated_verify_is_audited_every_time(api: Api) -> None:
    checkpoint, digest = api.registered_model()
    for _ in range(3):
        assert api.verify(checkpoint).json()["verified"] is True
    entries = [e for e in api.audit_entries() if e["event"] == "verify"]
    assert [(e["digest"], e["outcome"]) for e in entries] == [(digest, "verified")] * 3


def test_a_refused_file_is_refused_again_however_often_it_is_sent(api: Api) -> None:
    checkpoint, _ = api.registered_model()
    broken = checkpoint[:8] + b"[" + checkpoint[9:]  # same length, header no longer an object
    for _ in range(2):
        assert_error(api.verify(broken), 422)
