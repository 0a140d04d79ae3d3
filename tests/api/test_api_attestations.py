"""Evaluator attestations in the service: the model record lists them, the policy states the
clinic's k and its trusted evaluators, and /verify and predict refuse a model until enough
trusted evaluators attested it, naming why each did not count.

Attestations are made on the session's eth-tester chain by other funded accounts given the
evaluator role, as an evaluator's own `registry attest` would.
"""

from __future__ import annotations

from typing import Any

from apikit import Api, png
from chainkit import TEST_SET

from registry.chain.attestations import Attestations
from registry.core.digest import Digest
from registry.core.records import Role


def evaluator(api: Api, index: int) -> Attestations:
    return Attestations(api.chain.other(index, Role.EVALUATOR))


def test_the_model_record_lists_every_attestation_marked_anchored_own_and_withdrawn(
    api: Api,
) -> None:
    _, digest = api.registered_model(seed=61, accuracy_bps=9_250)
    model = Digest.parse(digest)
    test_set = api.client.get(model).test_set_digest  # type: ignore[union-attr]
    first, second = evaluator(api, 1), evaluator(api, 2)
    made = first.attest(model, 9_200, test_set, TEST_SET)  # any digest serves as a report's
    first.withdraw(model)
    own = second.attest(model, 8_800, TEST_SET)

    response = api.http.get(f"/models/{digest}")

    assert response.status_code == 200, response.text
    listed = response.json()["attestations"]
    assert [(a["evaluator"], a["accuracy_bps"], a["test_set"], a["withdrawn"]) for a in listed] == [
        (made.evaluator, 9_200, "anchored", True),
        (own.evaluator, 8_800, "own", False),
    ]
    assert listed[0]["report_digest"] == str(TEST_SET) and listed[1]["report_digest"] is None
    assert listed[0]["withdrawn_at"] is not None and listed[1]["withdrawn_at"] is None
    assert listed[1]["attested_block"] == own.attested_block
    assert listed[1]["tx_hash"] == own.tx_hash


def test_a_model_without_attestations_has_an_empty_list(api: Api) -> None:
    _, digest = api.registered_model(seed=62)
    assert api.http.get(f"/models/{digest}").json()["attestations"] == []


def test_verify_and_predict_refuse_until_a_trusted_evaluator_attests(make_api: Any) -> None:
    probe = make_api()
    trusted = probe.chain.address(1)
    api = make_api(min_attestations=1, trusted_evaluators=trusted, min_accuracy_bps=9_000)
    checkpoint, digest = api.registered_model(seed=63, accuracy_bps=9_250)
    model = Digest.parse(digest)

    refused = api.verify(checkpoint).json()
    predicted = api.predict_png(digest, png())

    assert (refused["verified"], refused["reason"]) == (False, "policy")
    assert refused["policy_failures"] == [
        f"too few trusted attestations: 1 needed, 0 found ({trusted}: no attestation)"
    ]
    assert refused["policy"]["min_attestations"] == 1
    assert refused["policy"]["trusted_evaluators"] == [trusted.lower()]
    assert predicted.status_code == 403 and predicted.json()["error"]["code"] == "not_verified"

    test_set = api.client.get(model).test_set_digest  # type: ignore[union-attr]
    evaluator(api, 1).attest(model, 9_200, test_set)

    admitted = api.verify(checkpoint).json()
    assert admitted["verified"] is True, admitted
    assert api.predict_png(digest, png()).status_code == 200


def test_an_untrusted_or_outside_tolerance_attestation_leaves_verify_refused(
    make_api: Any,
) -> None:
    probe = make_api()
    trusted = probe.chain.address(1)
    api = make_api(min_attestations=1, trusted_evaluators=trusted, attestation_tolerance_bps=50)
    checkpoint, digest = api.registered_model(seed=64, accuracy_bps=9_250)
    model = Digest.parse(digest)
    test_set = api.client.get(model).test_set_digest  # type: ignore[union-attr]
    evaluator(api, 2).attest(model, 9_250, test_set)  # not trusted here
    evaluator(api, 1).attest(model, 9_100, test_set)  # 150 bps from the claim

    verdict = api.verify(checkpoint).json()

    assert verdict["verified"] is False
    (failure,) = verdict["policy_failures"]
    assert "1 needed, 0 found" in failure
    assert "150 bps from the claimed 92.50 % (tolerance 50 bps)" in failure
    assert probe.chain.address(2) not in failure


def test_get_policy_states_the_attestation_requirement(make_api: Any) -> None:
    trusted = ["0x" + "cd" * 20, "0x" + "ef" * 20]
    api = make_api(
        min_attestations=2, trusted_evaluators=",".join(trusted), attestation_tolerance_bps=25
    )
    policy = api.http.get("/policy").json()
    assert (
        policy["min_attestations"],
        policy["trusted_evaluators"],
        policy["attestation_tolerance_bps"],
    ) == (2, trusted, 25)
