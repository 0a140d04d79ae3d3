"""The one transform from a decoded image to the network's input pixels, for training and serving.

A model is only as good as the match between the pixels it was trained on and the pixels it is
shown. The trainer (``training.data.folders``) and the clinic service (``registry.api.images``)
both decode image files with Pillow, and both bring them to the network through ``to_pixels``
(after ``draft``, which lets a JPEG decoder skip the detail the network will not see), so an
image reaches a served model exactly the way training images reached it:

1. **Size first.** An image far larger than the network's input is box-averaged by an integer
   factor ``k`` on both axes (Pillow's ``reduce``, which weights colour by alpha) so that its
   longer side stays at least ``REDUCING_GAP`` times ``size``: the result is indistinguishable
   from resampling the whole image, and every later step works on few pixels. Palette and
   1-bit images are expanded to RGB(A) or gray first, 16-bit gray to 32-bit integers.
2. **Depth and alpha.** 16-bit grayscale (``I;16`` modes, and ``I``, taken as 0..65535) is scaled
   to 8 bits by 255/65535 with rounding, never clipped. Transparency (an alpha channel, or a PNG
   ``tRNS`` colour) is composited onto **black**, the background of MNIST-style images:
   ``c * alpha / 255``, rounded. CMYK (Pillow's conversion, no colour management), YCbCr and the
   other Pillow colour modes become 8-bit RGB.
3. **Channels.** A grayscale model gets ITU-R 601-2 luma (Pillow's ``convert("L")``); an RGB
   model gets RGB, a gray image replicated to three channels.
4. **Aspect ratio.** The image is padded to a square with the same black, centred (an odd
   remainder goes right or below), then resized to ``size`` x ``size`` with Pillow's bilinear
   filter (antialiased: its support widens with the scale factor). Because of step 1, padding a
   long thin image never costs more than its own pixels.

EXIF orientation is not applied and ICC profiles are ignored, on both sides alike. numpy and
Pillow are imported inside the functions, so a base install without them still imports
``modelformat``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image

# The padding and compositing background: black, as in MNIST-style images.
BACKGROUND: Final = 0
# Box-average first while the longer side stays at least this many times the network's input.
REDUCING_GAP: Final = 3
# Modes whose pixels are one gray channel (with or without alpha).
GRAY_MODES: Final = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT: Final = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def is_colour(image: Image) -> bool:
    """Whether the image's mode carries colour (palette images count as colour)."""
    return image.mode not in GRAY_MODES


def draft(image: Image, size: int) -> None:
    """Before ``load()``: let a JPEG decode at the coarsest DCT scale (1/2, 1/4, 1/8) that keeps
    its longer side at least ``REDUCING_GAP * size``. Other formats are left as they are."""
    if image.format != "JPEG":
        return
    width, height = image.size
    longer = max(width, height)
    target = REDUCING_GAP * size
    if longer < 2 * target:
        return
    # Pillow picks the scale from the smaller of width // w and height // h: asking for the
    # image's own proportions makes the longer side decide, as for the reduce step below.
    wanted = (
        max(1, math.ceil(width * target / longer)),
        max(1, math.ceil(height * target / longer)),
    )
    image.draft(image.mode, wanted)


def to_pixels(image: Image, *, in_channels: int, size: int) -> npt.NDArray[np.uint8]:
    """A decoded image -> uint8 array (``in_channels``, ``size``, ``size``), as the module says.

    ``in_channels`` and ``size`` come from the checkpoint header (``ModelSpec``) or the dataset.
    Raises ``ValueError`` naming the mode for an image that has no defined 8-bit meaning (a
    floating-point image) or a channel count other than 1 or 3.
    """
    import numpy as np
    from PIL import Image as PILImage

    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), not {in_channels}")
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    if image.mode == "F":
        raise ValueError(
            "a floating-point ('F' mode) image has no defined pixel range; save it as an "
            "8- or 16-bit PNG"
        )
    flat = _reducible(image)
    factor = max(flat.size) // (REDUCING_GAP * size)
    if factor >= 2:
        flat = flat.reduce(factor)
    flat = _flatten(flat).convert("L" if in_channels == 1 else "RGB")
    width, height = flat.size
    side = max(width, height)
    if width != height:
        fill = BACKGROUND if in_channels == 1 else (BACKGROUND,) * 3
        square = PILImage.new(flat.mode, (side, side), fill)
        square.paste(flat, ((side - width) // 2, (side - height) // 2))
        flat = square
    if side != size:
        flat = flat.resize((size, size), PILImage.Resampling.BILINEAR)
    array = np.asarray(flat, dtype=np.uint8)
    if in_channels == 1:
        return np.ascontiguousarray(array[None, :, :])
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _reducible(image: Image) -> Image:
    """The image in a mode Pillow's ``reduce`` averages meaningfully: transparency made an alpha
    channel, palettes expanded, 1-bit as gray, 16-bit gray as 32-bit ``I`` (its ``tRNS`` gray
    value, if any, set to the background first: averaging would lose it)."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode in _SIXTEEN_BIT:
        if not transparent and mode == "I":
            return image
        if not transparent:
            return image.convert("I")
        import numpy as np
        from PIL import Image as PILImage

        raw = np.asarray(image).astype(np.int32)
        raw[raw == image.info["transparency"]] = BACKGROUND
        return PILImage.fromarray(raw)  # mode "I"
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if transparent or mode == "PA" else "RGB")
    if transparent and mode in ("L", "RGB"):
        return image.convert("LA" if mode == "L" else "RGBA")
    return image


def _flatten(image: Image) -> Image:
    """8-bit "L" or "RGB": 32-bit gray scaled, alpha composited onto the background."""
    from PIL import Image as PILImage

    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "I":
        return _eight_bit(image)
    if mode in ("LA", "La"):
        premultiplied = image if mode == "La" else image.convert("La")
        return premultiplied.getchannel(0)
    if mode in ("RGBA", "RGBa"):
        premultiplied = image if mode == "RGBa" else image.convert("RGBa")
        return PILImage.merge("RGB", premultiplied.split()[:3])
    return image.convert("RGB")


def _eight_bit(image: Image) -> Image:
    """A 32-bit ``I`` image holding 16-bit gray, scaled by 255/65535 with rounding."""
    import numpy as np
    from PIL import Image as PILImage

    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return PILImage.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
