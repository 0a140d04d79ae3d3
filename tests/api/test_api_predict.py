"""POST /models/{digest}/predict: gated inference with provenance; refusals within the TTL."""

from __future__ import annotations

import time

import numpy as np
import pytest
from apikit import Api, assert_error, digest_of, jpeg, make_checkpoint, png

from registry.core.digest import Digest


def test_predict_on_a_png_returns_label_probabilities_and_provenance(api: Api) -> None:
    _, digest = api.registered_model(accuracy_bps=9731)

    response = api.predict_png(digest, png())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_names"] == ["benign", "malignant"]
    (prediction,) = body["predictions"]
    assert prediction["label"] == body["class_names"][prediction["class_index"]]
    assert len(prediction["probabilities"]) == 2
    assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    provenance = body["provenance"]
    record = api.client.get(Digest.parse(digest))
    assert record is not None
    assert provenance["model_digest"] == digest
    assert provenance["chain_id"] == api.client.chain_id
    assert provenance["contract"] == api.client.address
    assert provenance["registration_tx"] == record.registration_tx
    assert provenance["registration_block"] == record.registered_block
    assert provenance["validity_confirmed_at_block"] >= record.registered_block
    assert provenance["accuracy_bps"] == 9731
    assert provenance["test_set_digest"] == str(record.test_set_digest)


def test_predict_takes_several_files_jpeg_and_rgb_alike(api: Api) -> None:
    _, digest = api.registered_model()
    response = api.predict_png(digest, png(), jpeg(), png(64, mode="RGB"))
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3


def test_predict_decides_the_image_type_from_its_bytes_not_its_name(api: Api) -> None:
    _, digest = api.registered_model()
    files = [("images", ("scan.png", b"GIF89a not really an image", "image/png"))]
    error = assert_error(api.http.post(f"/models/{digest}/predict", files=files), 400)
    assert error["code"] == "invalid_image"
    files = [("images", ("scan.txt", png(), "text/plain"))]
    assert api.http.post(f"/models/{digest}/predict", files=files).status_code == 200


def test_predict_takes_json_pixel_arrays_one_or_many(api: Api) -> None:
    _, digest = api.registered_model()
    pixels = np.full((28, 28), 200).tolist()

    one = api.http.post(f"/models/{digest}/predict", json={"pixels": pixels})
    many = api.http.post(f"/models/{digest}/predict", json={"images": [pixels, pixels]})

    assert one.status_code == 200, one.text
    assert many.status_code == 200, many.text
    assert len(many.json()["predictions"]) == 2
    assert many.json()["predictions"][0] == one.json()["predictions"][0]


def test_predict_takes_a_raw_image_body(api: Api) -> None:
    _, digest = api.registered_model()
    response = api.http.post(
        f"/models/{digest}/predict", content=png(), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"pixels": [[0] * 27] * 28}, "invalid_image"),
        ({"pixels": [[256] * 28] * 28}, "invalid_image"),
        ({"pixels": [[0.5] * 28] * 28}, "invalid_image"),
        ({"pixels": [[0] * 28] * 28, "images": []}, "invalid_input"),
        ({"images": []}, "invalid_input"),
        ([1, 2, 3], "invalid_input"),
    ],
)
def test_predict_refuses_malformed_pixel_arrays_with_a_400(
    api: Api, payload: object, code: str
) -> None:
    _, digest = api.registered_model()
    assert_error(api.http.post(f"/models/{digest}/predict", json=payload), 400, code)


def test_predict_enforces_the_image_limits(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(max_image_bytes=2_000, max_image_pixels=64 * 64, max_images_per_request=2)
    _, digest = api.registered_model()

    big_file = _noisy_png(40)
    assert len(big_file) > 2_000
    assert_error(api.predict_png(digest, big_file), 413, "payload_too_large")
    assert_error(api.predict_png(digest, png(65)), 413, "payload_too_large")
    assert_error(api.predict_png(digest, png(), png(), png()), 400, "invalid_input")
    assert api.predict_png(digest, png(64), png()).status_code == 200


def _noisy_png(size: int) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_predict_on_an_unknown_digest_is_a_404(api: Api) -> None:
    assert_error(api.predict_png("ab" * 32), 404, "not_found")


def test_predict_on_a_registered_but_unstored_checkpoint_is_a_404(api: Api) -> None:
    from registry.core.digest import digest_bytes
    from registry.core.records import RegisterRequest

    checkpoint = make_checkpoint(seed=5)
    api.client.register(
        RegisterRequest(
            digest=digest_bytes(checkpoint),
            accuracy_bps=9000,
            test_set_digest=Digest("11" * 32),
            card_digest=Digest("22" * 32),
        )
    )
    error = assert_error(api.predict_png(digest_of(checkpoint)), 404, "not_found")
    assert error["details"]["stored"] is False


def test_predict_on_a_malformed_digest_is_a_400(api: Api) -> None:
    assert_error(api.predict_png("not-a-digest"), 400, "invalid_digest")


def test_predict_is_refused_once_a_loaded_model_is_revoked(api: Api) -> None:
    _, digest = api.registered_model()
    assert api.predict_png(digest).status_code == 200  # loaded into the gate now

    assert api.revoke(digest, "safety-issue").status_code == 200
    time.sleep(api.settings.validity_ttl_s + 0.05)

    error = assert_error(api.predict_png(digest), 403, "not_verified")
    assert error["details"]["reason"] == "revoked"
    assert error["details"]["verdict"]["record"]["revocation"]["reason"] == "safety-issue"


def test_predict_on_a_revoked_model_never_loaded_is_refused(api: Api) -> None:
    _, digest = api.registered_model()
    assert api.revoke(digest).status_code == 200
    error = assert_error(api.predict_png(digest), 403, "not_verified")
    assert error["details"]["reason"] == "revoked"


def test_predict_outside_the_clinic_policy_is_refused(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(trusted_registrants="0x" + "12" * 20)
    _, digest = api.registered_model()
    error = assert_error(api.predict_png(digest), 403, "not_verified")
    assert error["details"]["reason"] == "policy"


def test_predict_is_audited_with_the_image_count_and_never_the_images(api: Api) -> None:
    _, digest = api.registered_model()
    api.predict_png(digest, png(), png())
    entry = api.audit_entries()[-1]
    assert entry["event"] == "predict"
    assert entry["digest"] == digest
    assert entry["images"] == 2
    assert entry["outcome"] == "predicted"
    assert isinstance(entry["block"], int)
    raw = (api.settings.data_dir / "audit.log").read_text()
    assert "PNG" not in raw and "pixels" not in raw
