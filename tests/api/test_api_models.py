"""Registration (registrar key), revocation (revoker key), listing, details and downloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apikit import (
    READER,
    REGISTRAR,
    REGISTRAR_KEY,
    REVOKER,
    Api,
    assert_error,
    card_dict,
    digest_of,
    make_card,
    make_checkpoint,
)

from registry.core.digest import digest_bytes
from training.card import canonical_json

# --- registration ------------------------------------------------------------------------------


def test_register_anchors_accuracy_and_test_set_from_the_card_and_stores_both_files(
    api: Api,
) -> None:
    checkpoint = make_checkpoint(seed=3)
    card = make_card(checkpoint, accuracy_bps=9612)

    response = api.register(checkpoint, card)

    assert response.status_code == 201, response.text
    result = response.json()
    assert result["already_registered"] is False
    assert result["tx_hash"].startswith("0x") and result["block_number"] > 0
    record = result["record"]
    assert record["digest"] == digest_of(checkpoint)
    assert record["accuracy_bps"] == 9612
    assert (
        record["test_set_digest"] == "sha256:" + json.loads(card)["evaluation"]["test_set_sha256"]
    )
    assert record["card_digest"] == digest_of(card)
    store = api.settings.data_dir / "store"
    assert (store / "checkpoint" / digest_of(checkpoint)[7:9] / digest_of(checkpoint)[9:]).exists()
    assert (store / "card" / digest_of(card)[7:9] / digest_of(card)[9:]).read_bytes() == card


def test_registering_the_same_files_again_is_a_200_already_registered(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    card = make_card(checkpoint)
    assert api.register(checkpoint, card).status_code == 201

    again = api.register(checkpoint, card)

    assert again.status_code == 200, again.text
    assert again.json()["already_registered"] is True


def test_registering_the_same_checkpoint_with_another_card_is_a_409(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    assert api.register(checkpoint, make_card(checkpoint, accuracy_bps=9000)).status_code == 201
    error = assert_error(
        api.register(checkpoint, make_card(checkpoint, accuracy_bps=9100)),
        409,
        "already_registered",
    )
    assert error["details"]["digest"] == digest_of(checkpoint)


def test_register_refuses_a_card_written_for_another_checkpoint(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    other = make_checkpoint(seed=4)
    error = assert_error(api.register(checkpoint, make_card(other)), 400, "invalid_model_card")
    assert error["details"]["card_checkpoint"] == digest_of(other)
    assert api.client.get(digest_bytes(checkpoint)) is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("evaluation"), "evaluation.accuracy_bps"),
        (lambda c: c["evaluation"].update(accuracy_bps=10_001), "evaluation.accuracy_bps"),
        (lambda c: c["evaluation"].update(accuracy_bps="97%"), "evaluation.accuracy_bps"),
        (lambda c: c["evaluation"].pop("test_set_sha256"), "evaluation.test_set_sha256"),
        (lambda c: c["evaluation"].update(test_set_sha256="abc"), "evaluation.test_set_sha256"),
        (lambda c: c.pop("checkpoint"), "checkpoint.sha256"),
        (lambda c: c.update(parent_digest="zz"), "parent_digest"),
        (lambda c: c.update(schema="someone-elses-card"), "schema"),
    ],
)
def test_register_refuses_a_card_without_usable_anchored_facts(
    api: Api, mutate: object, field: str
) -> None:
    checkpoint = make_checkpoint(seed=3)
    card = card_dict(checkpoint)
    mutate(card)  # type: ignore[operator]
    error = assert_error(api.register(checkpoint, canonical_json(card)), 400, "invalid_model_card")
    assert error["details"]["field"] == field


@pytest.mark.parametrize("card", [b"not json", b"[1, 2]", b"\xff\xfe", b'{"a": ' * 5000])
def test_register_refuses_a_card_that_is_not_a_json_object(api: Api, card: bytes) -> None:
    assert_error(api.register(make_checkpoint(seed=3), card), 400, "invalid_model_card")


def test_register_refuses_a_card_not_in_canonical_form(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    pretty = json.dumps(card_dict(checkpoint), indent=2).encode()
    error = assert_error(api.register(checkpoint, pretty), 400, "invalid_model_card")
    assert "canonical" in error["message"]


def test_register_without_both_files_is_a_400(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    response = api.http.post(
        "/models", files={"checkpoint": ("m", checkpoint, "x/y")}, headers=REGISTRAR
    )
    error = assert_error(response, 400, "invalid_input")
    assert "'card'" in error["message"]
    sent_as_text = api.http.post(
        "/models", data={"checkpoint": "abc", "card": "{}"}, headers=REGISTRAR
    )
    assert_error(sent_as_text, 400, "invalid_input")
    assert_error(
        api.http.post("/models", json={"checkpoint": "x"}, headers=REGISTRAR), 400, "invalid_input"
    )


def test_a_child_records_its_parent_and_shows_up_in_lineage_and_children(api: Api) -> None:
    _, parent = api.registered_model(seed=1)
    child = make_checkpoint(seed=2)
    assert api.register(child, make_card(child, parent=parent)).status_code == 201

    detail = api.http.get(f"/models/{digest_of(child)}").json()
    parent_detail = api.http.get(f"/models/{parent}").json()

    assert detail["record"]["parent"] == parent
    assert [r["digest"] for r in detail["lineage"]] == [digest_of(child), parent]
    assert parent_detail["children"] == [digest_of(child)]


def test_a_parent_field_that_contradicts_the_card_is_refused(api: Api) -> None:
    _, parent = api.registered_model(seed=1)
    child = make_checkpoint(seed=2)
    card = make_card(child, parent=parent)
    assert_error(api.register(child, card, parent="sha256:" + "ab" * 32), 400, "invalid_input")


def test_a_parent_that_is_not_registered_is_refused_by_the_contract(api: Api) -> None:
    child = make_checkpoint(seed=2)
    error = assert_error(
        api.register(child, make_card(child, parent="sha256:" + "ab" * 32)), 400, "invalid_parent"
    )
    assert error["details"]["parent"] == "sha256:" + "ab" * 32


# --- keys ----------------------------------------------------------------------------------------


def test_writes_without_a_key_are_401(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    response = api.http.post("/models", files=files)
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    assert_error(
        api.http.post(f"/models/{digest_of(checkpoint)}/revoke", json={"reason": "other"}),
        401,
        "unauthenticated",
    )


def test_writes_with_an_unknown_key_are_401(api: Api) -> None:
    response = api.http.post(
        "/models/" + "ab" * 32 + "/revoke",
        json={"reason": "other"},
        headers={"X-API-Key": REGISTRAR_KEY + "x"},
    )
    assert_error(response, 401, "unauthenticated")


def test_writes_with_a_key_lacking_the_role_are_403(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    files = {"checkpoint": ("m", checkpoint), "card": ("c", make_card(checkpoint))}
    for headers in (REVOKER, READER):
        error = assert_error(api.http.post("/models", files=files, headers=headers), 403)
        assert error["code"] == "forbidden" and error["details"]["role"] == "registrar"
    _, digest = api.registered_model()
    for headers in (REGISTRAR, READER):
        response = api.http.post(
            f"/models/{digest}/revoke", json={"reason": "other"}, headers=headers
        )
        assert_error(response, 403, "forbidden")
    assert api.client.get(digest_bytes(checkpoint)) is None
    assert api.verify(make_checkpoint(seed=0)).json()["verified"] is True


def test_the_key_itself_never_reaches_the_audit_log(api: Api) -> None:
    api.registered_model()
    raw = (api.settings.data_dir / "audit.log").read_text()
    assert REGISTRAR_KEY not in raw
    assert api.audit_entries()[-1]["who"].startswith("key:")


def test_reads_need_a_key_when_the_service_requires_one(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(require_key_for_reads=True)
    checkpoint, digest = api.registered_model()
    assert_error(api.http.get("/models"), 401, "unauthenticated")
    assert_error(api.verify(checkpoint), 401, "unauthenticated")
    assert_error(api.predict_png(digest), 401, "unauthenticated")
    assert api.http.get("/models", headers=READER).status_code == 200
    assert api.http.get("/models", headers=REVOKER).status_code == 200
    assert api.http.get("/health").status_code == 200  # liveness stays open


def test_writes_are_refused_when_no_keys_are_configured(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(api_keys=None)
    checkpoint = make_checkpoint(seed=3)
    error = assert_error(api.register(checkpoint), 401, "unauthenticated")
    assert "REGISTRY_API_KEYS" in error["message"]


# --- revocation ----------------------------------------------------------------------------------


def test_revoke_returns_the_revoked_record(api: Api) -> None:
    _, digest = api.registered_model()
    response = api.revoke(digest, "data-problem")
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["valid"] is False
    assert record["revocation"]["reason"] == "data-problem"
    assert record["revocation"]["tx_hash"].startswith("0x")


def test_revoke_errors_are_typed(api: Api) -> None:
    _, digest = api.registered_model()
    assert_error(api.revoke(digest, "no-such-reason"), 400, "invalid_input")
    assert_error(api.revoke("ab" * 32), 404, "unknown_model")
    assert api.revoke(digest).status_code == 200
    assert_error(api.revoke(digest), 409, "already_revoked")
    response = api.http.post(f"/models/{digest}/revoke", json={"why": 1}, headers=REVOKER)
    assert_error(response, 422, "invalid_request")


# --- reads ---------------------------------------------------------------------------------------


def test_list_filters_by_validity_and_registrant(api: Api) -> None:
    _, keep = api.registered_model(seed=1)
    _, gone = api.registered_model(seed=2)
    api.revoke(gone)

    every = api.http.get("/models").json()
    valid = api.http.get("/models", params={"valid": "true"}).json()
    revoked = api.http.get("/models", params={"valid": "false"}).json()
    mine = api.http.get("/models", params={"registrant": api.client.account.address}).json()
    nobody = api.http.get("/models", params={"registrant": "0x" + "12" * 20}).json()

    assert [m["digest"] for m in every["models"]] == [keep, gone]
    assert every["count"] == 2 and all(m["stored"] for m in every["models"])
    assert [m["digest"] for m in valid["models"]] == [keep]
    assert [m["digest"] for m in revoked["models"]] == [gone]
    assert mine["count"] == 2 and nobody["count"] == 0
    assert_error(api.http.get("/models", params={"registrant": "bob"}), 400, "invalid_input")
    assert_error(api.http.get("/models", params={"valid": "maybe"}), 422, "invalid_request")


def test_model_detail_includes_the_stored_card(api: Api) -> None:
    checkpoint = make_checkpoint(seed=3)
    card = make_card(checkpoint)
    api.register(checkpoint, card)

    detail = api.http.get(f"/models/{digest_of(checkpoint)}").json()

    assert detail["card"] == json.loads(card)
    assert detail["stored"] is True
    assert detail["children"] == []
    assert_error(api.http.get("/models/" + "cd" * 32), 404, "not_found")


def test_download_serves_the_exact_bytes_only_while_verified(api: Api) -> None:
    checkpoint, digest = api.registered_model()

    response = api.http.get(f"/models/{digest}/checkpoint")

    assert response.status_code == 200
    assert response.content == checkpoint
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-checkpoint-digest"] == digest
    api.revoke(digest)
    error = assert_error(api.http.get(f"/models/{digest}/checkpoint"), 403, "not_verified")
    assert error["details"]["reason"] == "revoked"
    assert_error(api.http.get("/models/" + "cd" * 32 + "/checkpoint"), 404, "not_found")


@pytest.mark.slow
def test_what_registry_train_writes_registers_unchanged(api: Api, tmp_path: Path) -> None:
    from training.cli import main as train

    assert train(["--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    checkpoint = (tmp_path / "model.safetensors").read_bytes()
    card = (tmp_path / "model_card.json").read_bytes()

    response = api.register(checkpoint, card)

    assert response.status_code == 201, response.text
    record = response.json()["record"]
    written = json.loads(card)
    assert record["accuracy_bps"] == written["evaluation"]["accuracy_bps"]
    assert record["test_set_digest"] == "sha256:" + written["evaluation"]["test_set_sha256"]
    assert record["card_digest"] == digest_of(card)
    assert api.predict_png(record["digest"]).status_code == 200
