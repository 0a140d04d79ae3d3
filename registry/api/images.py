"""Turn uploaded images (PNG/JPEG bytes or JSON pixel arrays) into the network's uint8 input.

The content type is decided from the bytes, never from a file name or a header a client chose.
Sizes are bounded before decoding (bytes) and before pixels are allocated (width x height), so a
decompression bomb is refused from its header. Images are never logged or stored.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from registry.errors import InvalidImage, PayloadTooLarge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def sniff(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def decode_image(
    data: bytes, *, in_channels: int, size: int, max_bytes: int, max_pixels: int
) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 array (C, size, size): converted to grayscale/RGB, resized."""
    from PIL import Image

    if len(data) > max_bytes:
        raise PayloadTooLarge("image", len(data), max_bytes)
    kind = sniff(data)
    if kind is None:
        raise InvalidImage(
            f"the upload is not a PNG or JPEG image (it starts with {data[:8]!r}); "
            "send a PNG or JPEG file, or pixel arrays as JSON",
            first_bytes=data[:8].hex(),
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind.upper()])
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge("image pixel count", width * height, max_pixels)
            image.load()
    except PayloadTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge("image pixel count", 0, max_pixels) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"the {kind.upper()} image could not be decoded ({exc})") from exc
    converted = image.convert("L" if in_channels == 1 else "RGB")
    if converted.size != (size, size):
        converted = converted.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    return array[None, :, :] if in_channels == 1 else array.transpose(2, 0, 1).copy()


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
