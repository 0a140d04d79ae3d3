"""Turn uploaded images (PNG/JPEG bytes or JSON pixel arrays) into the network's uint8 input.

The work one request may cause is bounded before any decoder runs: each file is checked from its
structure (``imageheaders``: bytes, pixels as its header states them, PNG chunks, JPEG scans)
and the pixels of all a request's images together are held to ``max_request_pixels``, each
image counting at least ``MIN_IMAGE_CHARGE``. Decoding
then asks only for what the model needs (a JPEG is decoded at a reduced DCT scale) and goes
through ``modelformat.pixels``, the one transform training uses too, so a clinician's image
reaches the network the way training images did. The content type is decided from the bytes,
never from a file name or a header a client chose. Images are never logged or stored.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelformat import pixels as transform
from registry.api.imageheaders import CheckedImage, ImageLimits, check_image, sniff
from registry.errors import InvalidImage, PayloadTooLarge

__all__ = [
    "MIN_IMAGE_CHARGE",
    "CheckedImage",
    "ImageLimits",
    "check_image",
    "check_request_pixels",
    "decode",
    "decode_image",
    "pixels_from_json",
    "sniff",
]


# Below this many pixels an image's fixed costs (its multipart part or JSON array, opening,
# converting) outweigh its pixels: 256 small images cost 10 to 15 times one (measured by
# scripts/bench_api.py). So every
# image counts at least this much against the request's budget (or the whole budget, if that is
# smaller); the defaults (1 Mi pixels, 16 images) agree.
MIN_IMAGE_CHARGE = 256 * 256


def check_request_pixels(images: Sequence[CheckedImage | Any], max_request_pixels: int) -> None:
    """All of a request's images together (checked files by their headers' pixels, JSON pixel
    arrays by the minimum charge), before any is decoded."""
    floor = min(MIN_IMAGE_CHARGE, max_request_pixels)
    total = sum(
        max(image.pixels if isinstance(image, CheckedImage) else 0, floor) for image in images
    )
    if total > max_request_pixels:
        raise PayloadTooLarge(
            "the pixel count of the request's images together",
            total,
            max_request_pixels,
            unit="pixels",
            advice=f"{len(images)} images, each counted as at least {floor} pixels; send them "
            "in several requests, or smaller (the model needs few pixels), or raise "
            "REGISTRY_MAX_REQUEST_PIXELS",
        )


def decode(image: CheckedImage, *, in_channels: int, size: int) -> np.ndarray:
    """A checked image -> uint8 array (``in_channels``, ``size``, ``size``)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(image.data), formats=[image.kind.upper()])
            if opened.size != (image.width, image.height):  # fail closed: budgets used these
                raise InvalidImage(
                    f"the {image.kind.upper()} decoder reads {opened.size[0]} x "
                    f"{opened.size[1]} pixels where the header states {image.width} x "
                    f"{image.height}; re-save the image"
                )
            transform.draft(opened, size)
            opened.load()
            return transform.to_pixels(opened, in_channels=in_channels, size=size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only where the settings allow more than Pillow's own bound: it still holds.
        limit = int(Image.MAX_IMAGE_PIXELS or 0)
        raise PayloadTooLarge("image pixel count", image.pixels, limit, unit="pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(
            f"the {image.kind.upper()} image could not be decoded ({exc})",
            problem=str(exc)[:200],
        ) from exc


def decode_image(
    data: bytes,
    *,
    in_channels: int,
    size: int,
    max_bytes: int,
    max_pixels: int,
    max_jpeg_scans: int = 16,
) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 array (C, size, size): checked, then decoded (one image)."""
    checked = check_image(data, ImageLimits(max_bytes, max_pixels, max_jpeg_scans))
    return decode(checked, in_channels=in_channels, size=size)


def pixels_from_json(value: Any, *, in_channels: int, size: int) -> np.ndarray:
    """Nested lists of integers 0-255: [H][W] (grayscale) or [H][W][3] (RGB) -> (C, H, W)."""
    expected = (size, size) if in_channels == 1 else (size, size, 3)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidImage(f"pixels must be a rectangular nested list ({exc})") from exc
    if array.shape != expected:
        raise InvalidImage(
            f"pixels must have shape {list(expected)} for this model, got {list(array.shape)}",
            expected=list(expected),
            got=list(array.shape),
        )
    if array.dtype.kind not in "iu" and not (
        array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    ):
        raise InvalidImage(f"pixels must be integers 0-255, got values of type {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise InvalidImage(
            f"pixels must be integers 0-255, got a range of {array.min()}..{array.max()}"
        )
    array = array.astype(np.uint8)
    return array[None, :, :] if in_channels == 1 else array.transpose(2, 0, 1).copy()
