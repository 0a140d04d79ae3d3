"""The gate's model-signing condition (REGISTRY_REQUIRE_OMS_SIGNATURE) and the bundle upload.

Bundles are written by the real ``model_signing`` package (its signing API, key-based), as a
hospital that already signs its models would send them; the service runs on the session's
eth-tester chain. A model registered and valid is still refused by the gate until a trusted
key's bundle for its digest is held; uploads that do not vouch for the digest keep nothing; a
bundle that reached the shelf without the upload's checks is checked again at the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apikit import READER, Api, assert_error, digest_of, make_checkpoint, png
from omskit import key_pair
from omskit import ms_sign as sign_file

from registry.config import Settings
from registry.core.digest import Digest
from registry.core.oms_bundles import BundleShelf
from registry.errors import ConfigurationError
from registry.oms import trusted_keys

model_signing = pytest.importorskip("model_signing", reason="the [oms] extra is not installed")


def ms_sign(checkpoint: bytes, private: Path, folder: Path, hashing: Any = None) -> bytes:
    """model_signing's own bundle for the checkpoint as a file."""
    folder.mkdir(parents=True, exist_ok=True)
    model, signature = folder / "model.safetensors", folder / "model.sig"
    model.write_bytes(checkpoint)
    return sign_file(model, private, signature, hashing)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    trusted, trusted_pub = key_pair(tmp_path, "trusted")
    other, other_pub = key_pair(tmp_path, "other")
    return {"trusted": trusted, "trusted_pub": trusted_pub, "other": other, "other_pub": other_pub}


@pytest.fixture
def oms_api(make_api: Callable[..., Api], keys: dict[str, Path]) -> Api:
    return make_api(require_oms_signature=True, trusted_oms_keys=[keys["trusted_pub"]])


def upload(api: Api, digest: str, bundle: bytes) -> Any:
    return api.post_json(f"/models/{digest}/oms-bundle", bundle, READER)


def shelf_of(api: Api) -> BundleShelf:
    return BundleShelf.in_data_dir(api.settings.data_dir)


def test_the_gate_refuses_a_registered_model_until_a_trusted_bundle_is_held(
    oms_api: Api, keys: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint, digest = oms_api.registered_model(seed=3)
    refused = oms_api.predict_png(digest, png())
    error = assert_error(refused, 403, "not_verified")
    assert error["details"]["reason"] == "policy"
    assert "no model-signing bundle is held" in error["message"]
    # /verify applies the same condition: the page never calls verified what predict refuses.
    judged = oms_api.verify(checkpoint).json()
    assert (judged["verified"], judged["reason"]) == (False, "policy")
    assert any("no model-signing bundle is held" in f for f in judged["policy_failures"])

    bundle = ms_sign(checkpoint, keys["trusted"], tmp_path / "signed")
    kept = upload(oms_api, digest, bundle)
    assert kept.status_code == 201, kept.text
    body = kept.json()
    assert (body["digest"], body["imported"], body["claim"]) == (digest, True, None)
    assert body["verdict"]["verified"] is True
    again = upload(oms_api, digest, bundle)
    assert again.status_code == 200 and again.json()["imported"] is False

    assert oms_api.verify(checkpoint).json()["verified"] is True
    answered = oms_api.predict_png(digest, png())
    assert answered.status_code == 200, answered.text
    assert answered.json()["provenance"]["model_digest"] == digest
    events = [e for e in oms_api.audit_entries() if e.get("event") == "oms_bundle"]
    assert [e["outcome"] for e in events] == ["imported", "already_stored"]


def test_uploads_that_do_not_vouch_for_the_digest_are_refused_and_keep_nothing(
    oms_api: Api, keys: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint, digest = oms_api.registered_model(seed=4)
    other = make_checkpoint(seed=5)
    cases = {
        "untrusted_key": ms_sign(checkpoint, keys["other"], tmp_path / "a"),
        "digest_mismatch": ms_sign(other, keys["trusted"], tmp_path / "b"),
        "shard_manifest": ms_sign(
            checkpoint,
            keys["trusted"],
            tmp_path / "c",
            model_signing.hashing.Config().use_shard_serialization(shard_size=1024),
        ),
        "hash_algorithm": ms_sign(
            checkpoint,
            keys["trusted"],
            tmp_path / "d",
            model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake2"),
        ),
    }
    for problem, bundle in cases.items():
        error = assert_error(upload(oms_api, digest, bundle), 403, "oms_signature_refused")
        assert error["details"]["problem"] == problem
        assert "trusted.pub" not in error["message"]  # keys are named by hint, not server path
    assert_error(upload(oms_api, digest, b'{"not": "a bundle"}'), 400, "invalid_oms_bundle")
    assert shelf_of(oms_api).bundles(Digest.parse(digest).hex) == []
    assert_error(oms_api.predict_png(digest, png()), 403, "not_verified")


def test_a_bundle_for_an_unregistered_digest_is_not_kept(
    oms_api: Api, keys: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(seed=6)
    digest = digest_of(checkpoint)
    bundle = ms_sign(checkpoint, keys["trusted"], tmp_path / "u")
    error = assert_error(upload(oms_api, digest, bundle), 403, "not_verified")
    assert error["details"]["reason"] == "unknown"
    assert shelf_of(oms_api).bundles(Digest.parse(digest).hex) == []


def test_the_gate_checks_again_a_bundle_that_reached_the_shelf_another_way(
    oms_api: Api, keys: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint, digest = oms_api.registered_model(seed=7)
    shelf_of(oms_api).add(
        Digest.parse(digest).hex, ms_sign(checkpoint, keys["other"], tmp_path / "x")
    )
    error = assert_error(oms_api.predict_png(digest, png()), 403, "not_verified")
    assert "none of the 1 trusted key" in error["message"]


def test_without_the_requirement_the_gate_ignores_bundles(
    make_api: Callable[..., Api],
) -> None:
    api = make_api()
    _, digest = api.registered_model(seed=8)
    assert api.predict_png(digest, png()).status_code == 200


def test_a_service_requiring_a_signature_with_no_trusted_key_does_not_start(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    with pytest.raises(ConfigurationError, match="names no key"):
        trusted_keys(Settings(data_dir=tmp_path, require_oms_signature=True))
    junk = tmp_path / "junk.pub"
    junk.write_text("junk")
    with pytest.raises(ConfigurationError, match="REGISTRY_TRUSTED_OMS_KEYS"):
        trusted_keys(Settings(data_dir=tmp_path, trusted_oms_keys=[junk]))
    with pytest.raises(ConfigurationError, match="cannot read"):
        trusted_keys(Settings(data_dir=tmp_path, trusted_oms_keys=[tmp_path / "missing.pub"]))
    assert len(trusted_keys(Settings(data_dir=tmp_path, trusted_oms_keys=[keys["other_pub"]]))) == 1
