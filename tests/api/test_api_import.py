"""Import and pull without registrar rights: POST /models/{digest}/import, /verify?store=true,
POST /models/{digest}/pull, and the pull-through of a predict from the configured mirrors.

Checkpoints here are registered on the chain directly, never through this service's POST /models,
as a model released by another organisation is. Every refusal leaves the store as it was.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from apikit import READER, assert_error, card_dict, digest_of, make_card, make_checkpoint, png
from mirrorkit import HostileMirror, stored_files

from registry.core.digest import Digest, digest_bytes
from registry.core.records import RegisterRequest


def _register_on_chain(api: Any, seed: int, accuracy_bps: int = 9250) -> tuple[bytes, bytes, str]:
    checkpoint = make_checkpoint(seed)
    card = make_card(checkpoint, accuracy_bps=accuracy_bps)
    api.client.register(
        RegisterRequest(
            digest=digest_bytes(checkpoint),
            accuracy_bps=accuracy_bps,
            test_set_digest=Digest.parse(card_dict(checkpoint)["evaluation"]["test_set_sha256"]),
            card_digest=digest_bytes(card),
            parent=None,
        )
    )
    return checkpoint, card, digest_of(checkpoint)


def _import(api: Any, digest: str, checkpoint: bytes, card: bytes | None = None) -> Any:
    files = [("checkpoint", ("m.safetensors", checkpoint, "application/octet-stream"))]
    if card is not None:
        files.append(("card", ("model_card.json", card, "application/json")))
    return api.http.post(f"/models/{digest}/import", files=files, headers=READER)


def _store(api: Any) -> list[str]:
    return stored_files(api.settings.data_dir / "store")


def _imports(api: Any) -> list[dict[str, Any]]:
    return [e for e in api.audit_entries() if e["event"] == "import"]


def test_import_with_a_read_key_makes_a_verified_model_usable_and_again_changes_nothing(
    make_api: Any,
) -> None:
    api = make_api(require_key_for_reads=True)
    checkpoint, card, digest = _register_on_chain(api, seed=51)
    assert_error(api.predict_png(digest), 401)  # reads need a key here

    first = _import(api, digest, checkpoint, card)
    assert first.status_code == 201, first.text
    assert first.json()["imported"] is True and first.json()["card_stored"] is True
    after_first = _store(api)
    again = _import(api, digest, checkpoint)
    assert again.status_code == 200, again.text
    assert again.json()["imported"] is False
    assert _store(api) == after_first

    files = [("images", ("x.png", png(), "image/png"))]
    predicted = api.http.post(f"/models/{digest}/predict", files=files, headers=READER)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["provenance"]["model_digest"] == digest
    shown = api.http.get(f"/models/{digest}", headers=READER).json()
    assert shown["card"]["checkpoint"]["sha256"] == Digest.parse(digest).hex
    assert [(e["outcome"], e["via"], e["digest"]) for e in _imports(api)] == [
        ("imported", "upload", digest),
        ("already_stored", "upload", digest),
    ]


def test_import_takes_the_raw_bytes_too(api: Any) -> None:
    checkpoint, _, digest = _register_on_chain(api, seed=52)
    response = api.http.post(
        f"/models/{digest}/import",
        content=checkpoint,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["card_stored"] is False


def test_import_refuses_an_unknown_digest_and_stores_nothing(api: Any) -> None:
    checkpoint = make_checkpoint(seed=53)
    error = assert_error(_import(api, digest_of(checkpoint), checkpoint), 404, "not_found")
    assert "cannot be imported" in error["message"]
    assert _store(api) == []
    assert _imports(api)[-1]["outcome"] == "not_found"


def test_import_refuses_a_revoked_model_and_stores_nothing(api: Any) -> None:
    checkpoint, _, digest = _register_on_chain(api, seed=54)
    assert api.revoke(digest).status_code == 200
    error = assert_error(_import(api, digest, checkpoint), 403, "not_verified")
    assert error["details"]["reason"] == "revoked"
    assert _store(api) == []


def test_import_refuses_a_model_outside_the_policy_and_stores_nothing(make_api: Any) -> None:
    api = make_api(min_accuracy_bps=9900)
    checkpoint, _, digest = _register_on_chain(api, seed=55, accuracy_bps=9000)
    error = assert_error(_import(api, digest, checkpoint), 403, "not_verified")
    assert error["details"]["reason"] == "policy"
    assert _store(api) == []


def test_import_refuses_a_file_that_is_not_a_lenet_safetensors_and_stores_nothing(
    api: Any,
) -> None:
    data = pickle.dumps({"weights": [1, 2, 3]})
    assert_error(_import(api, digest_of(data), data), 422, "pickle_rejected")
    assert _store(api) == []


def test_import_refuses_bytes_of_another_digest_and_a_card_not_anchored(api: Any) -> None:
    checkpoint, _, digest = _register_on_chain(api, seed=56)
    other = make_checkpoint(seed=57)
    error = assert_error(_import(api, digest, other), 400, "invalid_input")
    assert error["details"] == {"expected": digest, "actual": digest_of(other)}
    wrong_card = make_card(checkpoint, accuracy_bps=1234)
    assert_error(_import(api, digest, checkpoint, wrong_card), 400, "invalid_model_card")
    assert _store(api) == []


def test_verify_keeps_a_verified_file_only_when_asked(api: Any) -> None:
    checkpoint, _, digest = _register_on_chain(api, seed=58)
    assert api.verify(checkpoint).json()["stored"] is False
    assert _store(api) == []
    stored = api.http.post(
        "/verify?store=true",
        content=checkpoint,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert stored.status_code == 200 and stored.json()["stored"] is True, stored.text
    assert api.predict_png(digest).status_code == 200
    assert [(e["outcome"], e["via"]) for e in _imports(api)] == [("imported", "verify")]


def test_verify_with_store_keeps_nothing_that_is_not_verified(api: Any) -> None:
    unknown = make_checkpoint(seed=59)
    checkpoint, _, digest = _register_on_chain(api, seed=60)
    assert api.revoke(digest).status_code == 200
    for data in (unknown, checkpoint):
        answer = api.http.post(
            "/verify?store=true", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert answer.status_code == 200 and answer.json()["verified"] is False
        assert answer.json()["stored"] is False
    assert _store(api) == []
    assert _imports(api) == []


def test_pull_refuses_loopback_sources_a_caller_names_and_paths(api: Any, tmp_path: Path) -> None:
    checkpoint, _, digest = _register_on_chain(api, seed=61)
    with HostileMirror(checkpoint) as mirror:
        refused = api.http.post(f"/models/{digest}/pull", json={"sources": [mirror.url("good")]})
        error = assert_error(refused, 502, "pull_failed")
        [attempt] = error["details"]["attempts"]
        assert attempt["problem"] == "address_refused" and attempt["source"] == mirror.url("good")
        assert_error(
            api.http.post(f"/models/{digest}/pull", json={"sources": [str(tmp_path)]}),
            400,
            "invalid_input",
        )
        assert mirror.requests["good"] == 0
    assert _store(api) == []
    assert _imports(api)[0]["outcome"] == "pull_failed"


def test_pull_tries_the_next_configured_mirror_and_keeps_the_right_bytes(
    make_api: Any,
) -> None:
    checkpoint = make_checkpoint(seed=62)
    with HostileMirror(checkpoint) as mirror:
        api = make_api(mirrors=[mirror.base + "/"])
        _register_on_chain_bytes(api, checkpoint)
        digest = digest_of(checkpoint)
        sources = [mirror.url("truncated"), mirror.url("wrong"), mirror.url("good")]
        pulled = api.http.post(f"/models/{digest}/pull", json={"sources": sources})
        assert pulled.status_code == 201, pulled.text
        body = pulled.json()
        assert body["source"] == mirror.url("good")
        assert [a["problem"] for a in body["attempts"]] == ["truncated", "wrong_digest"]
        again = api.http.post(f"/models/{digest}/pull", json={"sources": sources})
        assert again.status_code == 200 and again.json()["source"] is None
    assert mirror.requests["good"] == 1
    assert api.predict_png(digest).status_code == 200


def _register_on_chain_bytes(api: Any, checkpoint: bytes) -> None:
    card = make_card(checkpoint)
    api.client.register(
        RegisterRequest(
            digest=digest_bytes(checkpoint),
            accuracy_bps=9250,
            test_set_digest=Digest.parse(card_dict(checkpoint)["evaluation"]["test_set_sha256"]),
            card_digest=digest_bytes(card),
            parent=None,
        )
    )


@pytest.mark.parametrize("bad", ["stall", "huge", "loop"])
def test_predict_pulls_a_verified_model_through_the_mirrors_once(make_api: Any, bad: str) -> None:
    checkpoint = make_checkpoint(seed=63)
    with HostileMirror(checkpoint) as mirror:
        api = make_api(mirrors=[mirror.url(bad), mirror.base + "/good/"], pull_timeout_s=1.0)
        _register_on_chain_bytes(api, checkpoint)
        digest = digest_of(checkpoint)
        assert api.predict_png(digest).status_code == 200
        assert api.predict_png(digest).status_code == 200
    assert mirror.requests["good"] == 1  # the folder form: /good/<hex>.safetensors
    assert [(e["outcome"], e["via"]) for e in _imports(api)] == [("imported", "pull-through")]


def test_predict_pull_through_fails_closed_when_no_mirror_has_the_bytes(make_api: Any) -> None:
    checkpoint = make_checkpoint(seed=64)
    with HostileMirror(checkpoint) as mirror:
        api = make_api(mirrors=[mirror.url("wrong"), mirror.url("missing")])
        _register_on_chain_bytes(api, checkpoint)
        error = assert_error(api.predict_png(digest_of(checkpoint)), 502, "pull_failed")
    assert [a["problem"] for a in error["details"]["attempts"]] == ["wrong_digest", "not_found"]
    assert _store(api) == []
    unknown = digest_of(b"never registered")
    assert_error(api.predict_png(unknown), 404, "not_found")
