"""Bounded work per image request, and images that reach the network the way training images did.

Every hostile shape is refused from its structure (the error's code and fields say which limit),
never by how long it took; the shapes that pass are decoded to the pixels the trainer would have
made of the same file.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagekit
import numpy as np
import pytest
from apikit import Api, assert_error, png

from registry.api.imageheaders import MAX_IMAGE_SIDE, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS
from registry.api.images import MIN_IMAGE_CHARGE, ImageLimits, check_image, decode, decode_image
from registry.errors import InvalidImage, PayloadTooLarge

LIMITS = ImageLimits(max_bytes=4 << 20, max_pixels=4096 * 4096, max_jpeg_scans=16)


def _predict(api: Api, digest: str, *images: bytes) -> Any:
    files = [("images", (f"i{n}", image)) for n, image in enumerate(images)]
    return api.http.post(f"/models/{digest}/predict", files=files)


def _model(make_api: Callable[..., Api], **settings: Any) -> tuple[Api, str]:
    api = make_api(**settings)
    _, digest = api.registered_model()
    return api, digest


def _service_pixels(data: bytes, in_channels: int = 1) -> np.ndarray:
    return decode(check_image(data, LIMITS), in_channels=in_channels, size=28)


# --- JPEG scans, dimensions, codings -----------------------------------------------------------


def test_a_progressive_jpeg_with_more_scans_than_allowed_is_a_413_naming_count_and_limit(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, max_jpeg_scans=12)
    progressive = imagekit.jpeg(imagekit.gradient(64, 64, 3), progressive=True)
    at_limit = imagekit.with_scans(progressive, 12)
    over = imagekit.with_scans(progressive, 13)
    assert imagekit.scan_count(at_limit) == 12 and imagekit.scan_count(over) == 13

    assert _predict(api, digest, at_limit).status_code == 200
    error = assert_error(_predict(api, digest, over), 413, "payload_too_large")
    assert error["details"] == {"what": "JPEG scan count", "size": 13, "limit": 12, "unit": "scans"}
    assert "13" in error["message"] and "12" in error["message"]


def test_scans_are_counted_from_the_markers_however_many_repeat() -> None:
    progressive = imagekit.jpeg(imagekit.gradient(32, 32), progressive=True)
    many = imagekit.with_scans(progressive, 500)  # the tester's shape, small
    with pytest.raises(PayloadTooLarge) as refused:
        check_image(many, LIMITS)
    assert (refused.value.size, refused.value.limit) == (17, 16)  # stopped at the first extra


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_an_image_whose_header_claims_huge_dimensions_is_a_413(
    make_api: Callable[..., Api], kind: str
) -> None:
    api, digest = _model(make_api)
    if kind == "png":
        bomb = imagekit.png_claiming(60_000, 60_000)
    else:
        bomb = imagekit.with_frame(
            imagekit.jpeg(imagekit.gradient(16, 16)), width=60_000, height=60_000
        )
    error = assert_error(_predict(api, digest, bomb), 413, "payload_too_large")
    assert error["details"]["what"] == "image pixel count"
    assert error["details"]["size"] == 60_000 * 60_000
    assert error["details"]["unit"] == "pixels"


def test_an_image_with_a_side_longer_than_any_decoder_row_loop_should_run_is_a_413(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api)
    tall = imagekit.png_claiming(1, MAX_IMAGE_SIDE + 1)  # few pixels, many rows
    error = assert_error(_predict(api, digest, tall), 413, "payload_too_large")
    assert error["details"] == {
        "what": "image side",
        "size": MAX_IMAGE_SIDE + 1,
        "limit": MAX_IMAGE_SIDE,
        "unit": "pixels",
    }
    at_limit = imagekit.png(imagekit.gradient(2, MAX_IMAGE_SIDE))
    assert _predict(api, digest, at_limit).status_code == 200


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"marker": 0xC9}, "unsupported JPEG coding"),  # arithmetic-coded
        ({"marker": 0xC3}, "unsupported JPEG coding"),  # lossless
        ({"precision": 12}, "unsupported JPEG precision"),
        ({"height": 0}, "its frame header states 16 x 0 pixels"),  # height from a DNL marker
    ],
    ids=["arithmetic", "lossless", "12-bit", "dnl-height"],
)
def test_jpeg_codings_the_service_does_not_decode_are_refused_by_name(
    make_api: Callable[..., Api], change: dict[str, int], problem: str
) -> None:
    api, digest = _model(make_api)
    image = imagekit.with_frame(imagekit.jpeg(imagekit.gradient(16, 16)), **change)
    error = assert_error(_predict(api, digest, image), 400, "invalid_image")
    assert error["details"]["problem"] == problem


def test_a_jpeg_with_more_segments_than_any_encoder_writes_is_a_400() -> None:
    base = imagekit.jpeg(imagekit.gradient(16, 16))
    crowded = imagekit.with_segments(base, [imagekit.comment(b"x")] * MAX_JPEG_SEGMENTS)
    with pytest.raises(InvalidImage) as refused:
        check_image(crowded, LIMITS)
    assert refused.value.details["limit"] == MAX_JPEG_SEGMENTS
    assert check_image(imagekit.with_segments(base, [imagekit.comment(b"x")] * 100), LIMITS)


def test_a_cmyk_jpeg_is_decoded() -> None:
    from PIL import Image

    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red, in ink
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG", quality=95)
    out = _service_pixels(buffer.getvalue(), in_channels=3)
    red, green, blue = out[:, 14, 14].tolist()
    assert red > 200 and green < 60 and blue < 60


# --- PNG structure -----------------------------------------------------------------------------


def test_a_png_whose_stream_is_far_longer_than_its_pixels_need_is_a_400(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api)
    pixels = imagekit.gradient(28, 28)
    stream = imagekit.padded_stream(imagekit.scanlines(pixels), empty_blocks=50_000)
    assert len(stream) > 250_000 and zlib.decompress(stream) == imagekit.scanlines(pixels)

    error = assert_error(_predict(api, digest, imagekit.png(pixels, stream=stream)), 400)
    assert error["code"] == "invalid_image"
    assert error["details"]["size"] == len(stream)
    raw = 28 * (1 + 28)  # filtered scanlines: a filter byte and 28 samples per row
    assert raw <= error["details"]["limit"] < 3 * raw


def test_a_png_in_more_chunks_than_any_encoder_writes_is_a_400(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api)
    pixels = imagekit.gradient(200, 200)
    crowded = imagekit.png(pixels, idat_chunk=1, level=0)
    error = assert_error(_predict(api, digest, crowded), 400, "invalid_image")
    assert error["details"]["limit"] == MAX_PNG_CHUNKS
    split = imagekit.png(pixels, idat_chunk=1024)  # an ordinary split: accepted
    assert _predict(api, digest, split).status_code == 200


def test_ancillary_chunks_never_reach_the_decoder_and_the_pixels_stay_the_same(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api)
    pixels = imagekit.gradient(40, 40)
    text_bombs = [imagekit.ztxt_bomb(1_000_000) for _ in range(3)]  # 3 MB inflated, 3 KB sent
    noisy = imagekit.png(
        pixels,
        before_idat=[*text_bombs, imagekit.png_chunk(b"iCCP", b"x\0\0" + zlib.compress(b"0" * 99))],
        after_idat=text_bombs,
    )
    checked = check_image(noisy, LIMITS)
    assert b"zTXt" not in checked.data and b"iCCP" not in checked.data
    assert np.array_equal(
        decode(checked, in_channels=1, size=28), _service_pixels(imagekit.png(pixels))
    )
    assert _predict(api, digest, noisy).status_code == 200


def test_an_interlaced_png_is_decoded_to_the_same_pixels_as_a_plain_one() -> None:
    for channels, dtype in ((1, np.uint8), (4, np.uint8), (1, np.uint16)):
        pixels = imagekit.gradient(45, 37, channels).astype(dtype)
        plain = _service_pixels(imagekit.png(pixels), 3)
        assert np.array_equal(_service_pixels(imagekit.png(pixels, interlace=True), 3), plain)


def _chunks_swapped(_: bytes) -> bytes:
    """IDAT split in two with an ancillary chunk between the halves."""
    pixels = imagekit.gradient(20, 20)
    stream = zlib.compress(imagekit.scanlines(pixels))
    half = len(stream) // 2
    return imagekit.png(
        pixels,
        stream=stream[:half],
        after_idat=[
            imagekit.png_chunk(b"tEXt", b"a\0b"),
            imagekit.png_chunk(b"IDAT", stream[half:]),
        ],
    )


def _bad_crc(data: bytes) -> bytes:
    at = data.index(b"IDAT") + 4
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (_bad_crc, "fails its CRC check"),
        (_chunks_swapped, "IDAT chunks are not consecutive"),
        (lambda d: d[: d.index(b"IEND") - 4], "truncated"),
        (
            lambda d: (
                d[: d.index(b"IEND") - 4]
                + imagekit.png_chunk(b"QUUX", b"")
                + imagekit.png_chunk(b"IEND", b"")
            ),
            "critical chunk b'QUUX'",
        ),
        (
            lambda d: (
                imagekit.PNG_MAGIC
                + imagekit.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0))
                + imagekit.png_chunk(b"IDAT", zlib.compress(b"\0" * 20))
                + imagekit.png_chunk(b"IEND", b"")
            ),
            "palette image without a PLTE chunk",
        ),
        (
            lambda d: (
                imagekit.PNG_MAGIC
                + imagekit.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 3, 0, 0, 0, 0))
                + d[33:]
            ),
            "colour type 0 with bit depth 3 does not exist",
        ),
    ],
    ids=["crc", "idat-split", "truncated", "unknown-critical", "palette-without-plte", "depth"],
)
def test_a_malformed_png_is_a_400_naming_the_problem(
    build: Callable[[bytes], bytes], problem: str
) -> None:
    with pytest.raises(InvalidImage) as refused:
        check_image(build(imagekit.png(imagekit.gradient(20, 20))), LIMITS)
    assert problem in refused.value.details["problem"]


# --- the request's budget, its deadline, where it runs ----------------------------------------


def test_the_pixels_of_all_images_together_are_bounded_from_their_headers(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, max_image_pixels=300 * 300, max_request_pixels=4 * 300 * 300)
    image = png(300)
    # Well-formed chunks around a stream that no decoder could inflate: refused for its size
    # before any image of the request is decoded (decoding it would be a 400).
    undecodable = imagekit.png(imagekit.gradient(300, 300), stream=b"\x78\x9c" + b"\xff" * 200)

    four = _predict(api, digest, *[image] * 4)
    five = _predict(api, digest, *[image] * 4, undecodable)
    alone = _predict(api, digest, undecodable)

    assert four.status_code == 200 and len(four.json()["predictions"]) == 4
    error = assert_error(five, 413, "payload_too_large")
    assert error["details"]["size"] == 5 * 300 * 300
    assert error["details"]["limit"] == 4 * 300 * 300
    assert error["details"]["unit"] == "pixels"
    assert_error(alone, 400, "invalid_image")


def test_every_image_counts_at_least_the_minimum_charge_files_and_arrays_alike(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, max_request_pixels=3 * MIN_IMAGE_CHARGE)
    route = f"/models/{digest}/predict"
    pixels = [[0] * 28] * 28

    three = _predict(api, digest, *[png()] * 3)
    four = _predict(api, digest, *[png()] * 4)
    three_arrays = api.http.post(route, json={"images": [pixels] * 3})
    four_arrays = api.http.post(route, json={"images": [pixels] * 4})

    assert three.status_code == 200 and three_arrays.status_code == 200
    for response in (four, four_arrays):
        error = assert_error(response, 413, "payload_too_large")
        assert error["details"]["size"] == 4 * MIN_IMAGE_CHARGE


def test_one_image_within_a_budget_below_the_minimum_charge_still_passes(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, max_request_pixels=64 * 64, max_image_pixels=64 * 64)
    assert _predict(api, digest, png(64)).status_code == 200
    assert_error(_predict(api, digest, png(), png()), 413, "payload_too_large")


def test_a_request_over_its_deadline_is_a_503_with_retry_after_and_is_audited(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, request_deadline_s=1e-9)
    for response in (
        _predict(api, digest, png(), png()),
        api.http.post(f"/models/{digest}/predict", json={"pixels": [[0] * 28] * 28}),
    ):
        error = assert_error(response, 503, "deadline_exceeded")
        assert int(response.headers["Retry-After"]) > 0
        assert error["details"]["deadline_s"] == 1e-9
        assert error["details"]["stage"]
        entry = api.audit_entries()[-1]
        assert (entry["event"], entry["outcome"]) == ("predict", "deadline_exceeded")


def test_predict_is_audited_as_predicted_only_with_an_answer(make_api: Callable[..., Api]) -> None:
    api, digest = _model(make_api, max_jpeg_scans=10)
    assert _predict(api, digest, png()).status_code == 200
    answered = api.audit_entries()[-1]
    over = imagekit.with_scans(imagekit.jpeg(imagekit.gradient(32, 32, 3), progressive=True), 11)
    assert _predict(api, digest, over).status_code == 413
    refused = api.audit_entries()[-1]

    assert (answered["event"], answered["outcome"]) == ("predict", "predicted")
    assert answered["block"] is not None
    assert (refused["event"], refused["outcome"]) == ("predict", "payload_too_large")


def test_images_are_decoded_on_the_configured_number_of_threads(
    make_api: Callable[..., Api],
) -> None:
    api, digest = _model(make_api, decode_threads=3)
    answers: list[int] = []

    def send() -> None:
        answers.append(_predict(api, digest, png(200), png(100)).status_code)

    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert answers == [200] * 8
    decoders = [t.name for t in threading.enumerate() if t.name.startswith("image-decode-3_")]
    assert 1 <= len(decoders) <= 3


# --- the same pixels as training ---------------------------------------------------------------


def _write_folder(root: Path, images: dict[str, bytes]) -> None:
    """root/{train,val,test}/{a,b}/: class a's only image is ``images["a"]``, in every split."""
    for split in ("train", "val", "test"):
        for label, data in images.items():
            (root / split / label).mkdir(parents=True)
            (root / split / label / "x.png").write_bytes(data)


def test_an_8_and_a_16_bit_png_reach_the_network_as_the_same_pixels_as_in_training(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    from training.data import load_folder

    eight = imagekit.gradient(70, 50)  # not square, not 28: padded and resized on both paths
    # Not exactly representable in 8 bits: 100/65535 above each 8-bit value (but 255 stays 255).
    sixteen = np.minimum(eight.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)
    png8, png16 = imagekit.png(eight), imagekit.png(sixteen)
    _write_folder(tmp_path / "eight", {"a": png8, "b": png(30, fill=10)})
    _write_folder(tmp_path / "sixteen", {"a": png16, "b": png(30, fill=10)})

    trained8 = load_folder(tmp_path / "eight").train.images[0].numpy()
    trained16 = load_folder(tmp_path / "sixteen").train.images[0].numpy()
    served8 = decode_image(png8, in_channels=1, size=28, max_bytes=1 << 20, max_pixels=1 << 20)
    served16 = decode_image(png16, in_channels=1, size=28, max_bytes=1 << 20, max_pixels=1 << 20)

    assert trained8.shape == served8.shape == (1, 28, 28)
    assert np.array_equal(served8, trained8) and np.array_equal(served16, trained16)
    assert np.abs(served16.astype(int) - served8.astype(int)).max() <= 1  # 100/65535 < 1/255
    assert served16.mean() == pytest.approx(served8.mean(), abs=1)  # scaled, not clipped to 255

    api, digest = _model(make_api)
    answers = [_predict(api, digest, data).json()["predictions"][0] for data in (png8, png16)]
    assert answers[0]["class_index"] == answers[1]["class_index"]
    assert answers[0]["probabilities"] == pytest.approx(answers[1]["probabilities"], abs=1e-2)


def test_an_rgba_image_is_composited_onto_black_on_both_paths(tmp_path: Path) -> None:
    from training.data import load_folder

    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red
    rgba[:, :14, 3] = 0  # left half fully transparent
    data = imagekit.png(rgba)
    _write_folder(tmp_path, {"a": data, "b": imagekit.png(imagekit.gradient(28, 28, 3))})

    served = _service_pixels(data, in_channels=3)
    trained = load_folder(tmp_path).train.images[0].numpy()

    assert np.array_equal(served, trained)
    assert not served[:, :, :14].any()  # transparent: the black background, not the red under it
    assert served[:, 10, 20].tolist() == [128, 0, 0]  # 255 * 128 / 255


def test_a_56x28_image_is_padded_not_squashed_by_the_service() -> None:
    served = _service_pixels(imagekit.png(np.full((28, 56), 255, np.uint8)))[0]
    assert (served[:6] == 0).all() and (served[22:] == 0).all()
    assert (served[8:20] == 255).all()
