"""POST /verify: a verdict for the exact bytes uploaded; "no" is a 200 with the reason."""

from __future__ import annotations

import time
from typing import Any

from apikit import (
    CLASS_NAMES,
    READER,
    TEST_SET_DIGEST,
    Api,
    assert_error,
    card_dict,
    digest_of,
    make_card,
    make_checkpoint,
)

from registry.api.modelfacts import MAX_NAME_CHARS, MAX_TEXT_CHARS
from registry.core.digest import Digest, digest_bytes
from registry.core.records import RegisterRequest, RevocationReason
from training.card import canonical_json


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


# --- what the answer says beside the verdict: the model's card and header, the policy ----------


def card_with(checkpoint: bytes, **changes: Any) -> bytes:
    """apikit's card for ``checkpoint`` with top-level or ``dataset`` fields changed."""
    card = card_dict(checkpoint)
    dataset = changes.pop("dataset", {})
    card.update(changes)
    card["dataset"] = {**card["dataset"], **dataset}
    return canonical_json(card)


def checkpoint_trained_on(dataset: str, seed: int = 0) -> bytes:
    import torch

    from modelformat.spec import ModelSpec
    from training.checkpoint import checkpoint_bytes
    from training.model import build_model

    spec = ModelSpec(1, 28, 2, CLASS_NAMES, (0.5,), (0.25,), dataset=dataset)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return checkpoint_bytes(build_model(spec), spec)


def test_verify_names_the_model_its_use_its_data_and_the_policy_it_applied(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    card = card_with(checkpoint, dataset={"is_stand_in": False})
    assert api.register(checkpoint, card).status_code == 201

    verdict = api.verify(checkpoint).json()

    assert verdict["verified"] is True
    assert verdict["model"] == {
        "name": "lenet5-synthetic-test",
        "intended_use": "tests only",
        "stand_in": False,
        "dataset": "synthetic-test",
        "test_set_size": 100,
        "class_names": list(CLASS_NAMES),
        "card_held": True,
    }
    assert verdict["policy"] == {
        "min_accuracy_bps": 0,
        "min_accuracy_percent": 0.0,
        "trusted_registrants": [],
        "confirmations": 1,
        "min_attestations": 0,
        "trusted_evaluators": [],
        "attestation_tolerance_bps": 100,
    }
    assert api.verify(checkpoint).json()["model"] == verdict["model"]  # the remembered path too


def test_a_card_that_says_stand_in_makes_the_model_a_stand_in(api: Api) -> None:
    checkpoint = make_checkpoint(seed=4)
    assert api.register(checkpoint, card_with(checkpoint, dataset={"is_stand_in": True})).is_success

    assert api.verify(checkpoint).json()["model"]["stand_in"] is True


def test_a_header_naming_the_built_in_stand_in_set_wins_over_a_card_that_says_real_data(
    api: Api,
) -> None:
    from training.data.builtin import BUILTIN_NAME

    checkpoint = checkpoint_trained_on(BUILTIN_NAME)
    card = card_with(checkpoint, dataset={"is_stand_in": False, "name": "chest x-rays"})
    assert api.register(checkpoint, card).status_code == 201

    model = api.verify(checkpoint).json()["model"]

    assert model["stand_in"] is True and model["dataset"] == "chest x-rays"


def test_without_the_card_the_data_are_unknown_unless_the_header_names_a_stand_in(
    api: Api,
) -> None:
    from training.data.builtin import BUILTIN_NAME

    plain, demo = make_checkpoint(seed=5), checkpoint_trained_on(BUILTIN_NAME, seed=5)
    for checkpoint in (plain, demo):  # anchored elsewhere: this service holds neither card
        request = RegisterRequest(
            digest_bytes(checkpoint),
            9_000,
            Digest.parse(TEST_SET_DIGEST),
            digest_bytes(make_card(checkpoint)),
        )
        api.client.register(request)

    plain_model = api.verify(plain).json()["model"]
    demo_model = api.verify(demo).json()["model"]

    assert plain_model == {
        "name": None,
        "intended_use": None,
        "stand_in": None,
        "dataset": "synthetic-test",
        "test_set_size": None,
        "class_names": list(CLASS_NAMES),
        "card_held": False,
    }
    assert demo_model["stand_in"] is True and demo_model["dataset"] == BUILTIN_NAME


def test_an_unregistered_checkpoint_gets_header_facts_only(api: Api) -> None:
    verdict = api.verify(make_checkpoint(seed=6)).json()

    assert verdict["reason"] == "unknown"
    assert verdict["model"]["card_held"] is False and verdict["model"]["name"] is None
    assert verdict["model"]["class_names"] == list(CLASS_NAMES)


def test_registrant_text_is_bounded_in_the_answer(api: Api) -> None:
    checkpoint = make_checkpoint(seed=8)
    card = card_with(checkpoint, model_name="n" * 5_000, intended_use="u" * 50_000)
    assert api.register(checkpoint, card).status_code == 201

    model = api.verify(checkpoint).json()["model"]

    assert len(model["name"]) == MAX_NAME_CHARS and model["name"].endswith("…")
    assert len(model["intended_use"]) == MAX_TEXT_CHARS


def test_get_policy_and_every_verdict_state_the_clinic_policy(make_api) -> None:  # type: ignore[no-untyped-def]
    trusted = "0x" + "ab" * 20  # all lowercase: no EIP-55 checksum to match
    api = make_api(min_accuracy_bps=9500, trusted_registrants=trusted, confirmations=1)
    expected = {
        "min_accuracy_bps": 9500,
        "min_accuracy_percent": 95.0,
        "trusted_registrants": [trusted],
        "confirmations": 1,
        "min_attestations": 0,
        "trusted_evaluators": [],
        "attestation_tolerance_bps": 100,
    }

    response = api.http.get("/policy")
    checkpoint, _ = api.registered_model(accuracy_bps=9000)
    verdict = api.verify(checkpoint).json()

    assert response.status_code == 200 and response.json() == expected
    assert verdict["reason"] == "policy" and verdict["policy"] == expected


def test_get_policy_needs_a_key_when_reads_do(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(require_key_for_reads=True)

    assert_error(api.http.get("/policy"), 401)
    assert api.http.get("/policy", headers=READER).status_code == 200
