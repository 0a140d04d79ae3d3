"""POST /models/relay: the service sends a registration a registrar signed offline.

The app runs on the session's eth-tester chain with its key (account 0) paying; account 1 is the
registrar that signs, account 3 a key without the Registrar role. Each refusal answers with the
status and code that name it, nothing is anchored and the registrar's nonce is unchanged; every
attempt is in the audit log with who asked, the registrar, the digest and the transaction.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from apikit import READER, REGISTRAR, assert_error, make_card, make_checkpoint

from registry.chain.delegation import chain_time, next_nonce
from registry.core.records import Role
from registry.core.signed_request import SignedRegistration, SigningDomain
from registry.delegated import sign_registration

SIGNER, STRANGER = 1, 3


@pytest.fixture
def relay(make_api: Any) -> Any:
    api = make_api(relay_enabled=True)
    api.client.grant_role(Role.REGISTRAR, api.chain.address(SIGNER))
    return api


def signed(
    api: Any,
    *,
    seed: int = 1,
    signer: int = SIGNER,
    registrar: str | None = None,
    nonce: int | None = None,
    deadline: int | None = None,
    chain_id: int | None = None,
) -> SignedRegistration:
    account = api.chain.account(signer)
    checkpoint = make_checkpoint(seed)
    client = api.client
    return sign_registration(
        account,
        checkpoint,
        domain=SigningDomain(chain_id or client.chain_id, client.address),
        nonce=next_nonce(client, registrar or account.address) if nonce is None else nonce,
        deadline=chain_time(client) + 3_600 if deadline is None else deadline,
        registrar=registrar,
        card=make_card(checkpoint),
        checkpoint_file="model.safetensors",
    )


def post(api: Any, body: bytes, headers: dict[str, str] = REGISTRAR) -> Any:
    return api.post_json("/models/relay", body, headers)


def refused(api: Any, request: SignedRegistration, status: int, code: str) -> dict[str, Any]:
    reg = request.registration
    before = next_nonce(api.client, reg.registrar, reg.lane)
    error = assert_error(post(api, request.to_json()), status, code)
    assert api.client.get(reg.digest) is None
    assert next_nonce(api.client, reg.registrar, reg.lane) == before
    entry = api.audit_entries()[-1]
    assert entry["event"] == "relay" and entry["outcome"] == code
    assert entry["registrar"] == reg.registrar and entry["digest"] == str(reg.digest)
    return error


def test_relay_registers_for_the_signer_stores_the_card_and_audits_it(relay) -> None:
    request = signed(relay)
    reg = request.registration
    response = post(relay, request.to_json())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["record"]["registrant"] == relay.chain.address(SIGNER)
    assert body["record"]["digest"] == str(reg.digest)
    assert body["already_registered"] is False and body["tx_hash"]
    assert body["relay"]["signer"] == relay.chain.address(SIGNER)
    assert body["relay"]["sender"] == relay.client.account.address
    assert body["relay"]["signature_check"] == "ecdsa"

    shown = relay.http.get(f"/models/{reg.digest}")
    assert shown.status_code == 200
    assert shown.json()["card"] == request.card  # the unsigned card, kept once it matched

    entry = relay.audit_entries()[-1]
    assert entry["event"] == "relay" and entry["outcome"] == "registered"
    assert entry["who"].startswith("key:")
    assert entry["registrar"] == relay.chain.address(SIGNER)
    assert entry["digest"] == str(reg.digest) and entry["tx"] == body["tx_hash"]
    assert entry["block"] == body["block_number"]


def test_a_replayed_request_is_409_nonce_used(relay) -> None:
    request = signed(relay)
    assert post(relay, request.to_json()).status_code == 201
    error = assert_error(post(relay, request.to_json()), 409, "nonce_used")
    assert "replayed" in error["message"]
    assert relay.audit_entries()[-1]["outcome"] == "nonce_used"


def test_an_expired_request_is_400_signature_expired(relay) -> None:
    now = chain_time(relay.client)
    error = refused(relay, signed(relay, deadline=now - 10), 400, "signature_expired")
    assert error["details"]["deadline"] == now - 10


def test_a_request_for_another_chain_is_400_naming_both(relay) -> None:
    error = refused(relay, signed(relay, chain_id=5), 400, "wrong_signing_domain")
    assert f"signed for chain 5, but this chain is {relay.client.chain_id}" in error["message"]


def test_a_request_signed_by_another_key_is_403_invalid_signer(relay) -> None:
    request = signed(relay, signer=STRANGER, registrar=relay.chain.address(SIGNER))
    error = refused(relay, request, 403, "invalid_signer")
    assert error["details"]["recovered"] == relay.chain.address(STRANGER)


def test_a_signer_without_the_registrar_role_is_403_missing_role(relay) -> None:
    error = refused(relay, signed(relay, signer=STRANGER), 403, "missing_role")
    assert error["details"]["account"] == relay.chain.address(STRANGER)


def test_a_cancelled_nonce_is_409_nonce_cancelled(relay) -> None:
    from registry.chain.delegation import cancel_nonce

    request = signed(relay)
    cancel_nonce(relay.chain.other(SIGNER), request.registration.nonce)
    reg = request.registration
    error = assert_error(post(relay, request.to_json()), 409, "nonce_cancelled")
    assert "cancelled" in error["message"] and relay.client.get(reg.digest) is None


def test_a_signature_over_other_fields_is_403_and_anchors_nothing(relay) -> None:
    request = signed(relay)
    tampered = replace(
        request, registration=replace(request.registration, accuracy_bps=9_999), card=None
    )
    error = refused(relay, tampered, 403, "invalid_signer")
    assert error["details"]["registrar"] == relay.chain.address(SIGNER)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"kind": "medical-model-registry/signed-registration", "version": 1}',
    ],
)
def test_a_malformed_request_is_400_and_audited(relay, body: bytes) -> None:
    error = assert_error(post(relay, body), 400, "invalid_registration_request")
    assert error["details"]["field"] == "<file>"
    assert relay.audit_entries()[-1]["outcome"] == "invalid_registration_request"


def test_malformed_typed_data_is_400_naming_the_field(relay) -> None:
    document = json.loads(signed(relay).to_json())
    document["typed_data"]["message"]["nonce"] = 5
    error = assert_error(post(relay, json.dumps(document).encode()), 400)
    assert error["code"] == "invalid_registration_request"
    assert error["details"]["field"] == "typed_data.message.nonce"


def test_relay_needs_a_registrar_key(relay) -> None:
    body = signed(relay).to_json()
    assert_error(post(relay, body, {}), 401, "unauthenticated")
    assert_error(post(relay, body, READER), 403, "forbidden")


def test_relay_is_404_while_the_operator_has_not_turned_it_on(make_api) -> None:
    api = make_api()  # relay_enabled defaults to off
    error = assert_error(post(api, b"{}"), 404, "not_found")
    assert "REGISTRY_RELAY_ENABLED" in error["message"]
    assert error["details"] == {"relay_enabled": False}


def test_the_openapi_document_lists_the_relay(relay) -> None:
    operation = relay.http.get("/openapi.json").json()["paths"]["/models/relay"]["post"]
    assert {"201", "400", "403", "404", "409"} <= set(operation["responses"])
