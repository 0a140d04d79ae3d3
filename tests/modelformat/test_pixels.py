"""modelformat.pixels: the one transform from a decoded image to the network's pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelformat.pixels import BACKGROUND, draft, is_colour, to_pixels


def _gradient(width: int = 28, height: int = 28) -> np.ndarray:
    return ((np.add.outer(np.arange(height) * 7, np.arange(width) * 3)) % 256).astype(np.uint8)


def test_a_28x28_gray_image_passes_unchanged() -> None:
    pixels = _gradient()
    out = to_pixels(Image.fromarray(pixels), in_channels=1, size=28)
    assert out.dtype == np.uint8 and out.shape == (1, 28, 28)
    assert np.array_equal(out[0], pixels)


def test_sixteen_bit_gray_is_scaled_with_rounding_not_clipped() -> None:
    row = [0, 128, 129, 257, 32767, 32768, 65406, 65407]
    values = np.array([row] * 8, dtype=np.uint16)
    out = to_pixels(Image.fromarray(values), in_channels=1, size=8)
    expected = [round(v * 255 / 65535) for v in row]
    assert expected == [0, 0, 1, 1, 127, 128, 254, 255]  # clipped, 257 and up would be 255
    assert all(line == expected for line in out[0].tolist())


def test_an_8_bit_image_and_its_16_bit_twin_give_the_same_pixels() -> None:
    eight = _gradient(40, 30)
    sixteen = eight.astype(np.uint16) * 257
    a = to_pixels(Image.fromarray(eight), in_channels=1, size=28)
    b = to_pixels(Image.fromarray(sixteen), in_channels=1, size=28)
    assert Image.fromarray(sixteen).mode == "I;16"
    assert np.array_equal(a, b)


def test_a_large_16_bit_image_is_averaged_first_and_matches_its_8_bit_twin_within_a_level() -> None:
    eight = np.tile(_gradient(40, 30), (10, 10))  # 400 x 300: box-averaged before resizing
    a = to_pixels(Image.fromarray(eight), in_channels=1, size=28)
    b = to_pixels(Image.fromarray(eight.astype(np.uint16) * 257), in_channels=1, size=28)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_16_bit_transparent_gray_value_becomes_black() -> None:
    values = np.full((28, 28), 40000, np.uint16)
    values[:, :14] = 1234
    image = Image.fromarray(values)
    image.info["transparency"] = 1234
    out = to_pixels(image, in_channels=1, size=28)[0]
    assert (out[:, :14] == 0).all() and (out[:, 14:] == round(40000 * 255 / 65535)).all()


def test_alpha_is_composited_onto_black() -> None:
    rgba = Image.new("RGBA", (28, 28), (200, 100, 50, 128))
    rgb = to_pixels(rgba, in_channels=3, size=28)
    gray = to_pixels(rgba, in_channels=1, size=28)
    assert rgb[:, 0, 0].tolist() == [100, 50, 25]  # c * 128 / 255, rounded
    assert gray[0, 0, 0] == round(0.299 * 100 + 0.587 * 50 + 0.114 * 25)
    transparent = to_pixels(Image.new("LA", (28, 28), (255, 0)), in_channels=1, size=28)
    assert not transparent.any()
    # Large enough to be box-averaged first: still composited, not averaged with hidden colour.
    half = Image.new("RGBA", (400, 400), (0, 255, 0, 0))
    half.paste((255, 0, 0, 255), (0, 0, 400, 200))
    out = to_pixels(half, in_channels=3, size=28)
    assert out[:, 5, 14].tolist() == [255, 0, 0] and out[:, 22, 14].tolist() == [0, 0, 0]
    assert out[1].max() == 0  # the green under the transparent half never shows


def test_a_transparent_palette_entry_becomes_black() -> None:
    image = Image.new("P", (28, 28), 1)
    image.putpalette([255, 255, 255] * 2)
    image.info["transparency"] = 1
    assert not to_pixels(image, in_channels=1, size=28).any()


def test_a_wide_image_is_padded_to_a_square_not_squashed() -> None:
    white = Image.new("L", (56, 28), 255)
    out = to_pixels(white, in_channels=1, size=28)[0]
    # 56x28 padded to 56x56 (14 black rows above and below), then halved: rows 7..20 are the
    # image, rows 0..5 and 22..27 the padding (rows 6 and 21 blend the edge).
    assert (out[:6] == BACKGROUND).all() and (out[22:] == BACKGROUND).all()
    assert (out[8:20] == 255).all()
    assert out.mean() < 200  # squashing would leave every pixel white


def test_a_tall_image_is_padded_left_and_right() -> None:
    out = to_pixels(Image.new("L", (14, 28), 255), in_channels=1, size=28)[0]
    assert (out[:, :7] == 0).all() and (out[:, 7:21] == 255).all() and (out[:, 21:] == 0).all()


def test_a_long_thin_image_costs_its_own_pixels_not_a_padded_square() -> None:
    # One column of 2**20 pixels: padding first would build a 2**40-pixel square.
    strip = Image.new("L", (1, 1 << 20), 255)
    out = to_pixels(strip, in_channels=1, size=28)[0]
    assert out.shape == (28, 28) and out[:, 14].max() > 0 and out[:, :12].max() == 0


def test_gray_images_are_replicated_for_an_rgb_model_and_colour_becomes_luma() -> None:
    gray = Image.fromarray(_gradient())
    rgb = to_pixels(gray, in_channels=3, size=28)
    assert all(np.array_equal(rgb[c], rgb[0]) for c in range(3))
    red = to_pixels(Image.new("RGB", (28, 28), (255, 0, 0)), in_channels=1, size=28)
    assert red[0, 0, 0] == round(0.299 * 255)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16"])
def test_every_mode_a_png_or_jpeg_decodes_to_gives_uint8_channels_first(mode: str) -> None:
    for channels in (1, 3):
        out = to_pixels(Image.new(mode, (30, 20)), in_channels=channels, size=28)
        assert out.dtype == np.uint8 and out.shape == (channels, 28, 28)


def test_a_floating_point_image_and_odd_channel_counts_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'F' mode"):
        to_pixels(Image.new("F", (28, 28)), in_channels=1, size=28)
    with pytest.raises(ValueError, match="in_channels must be 1"):
        to_pixels(Image.new("L", (28, 28)), in_channels=2, size=28)


def test_colour_is_a_property_of_the_mode() -> None:
    assert not is_colour(Image.new("I;16", (1, 1))) and not is_colour(Image.new("LA", (1, 1)))
    assert is_colour(Image.new("RGB", (1, 1))) and is_colour(Image.new("P", (1, 1)))


def test_draft_decodes_a_large_jpeg_at_a_reduced_scale_that_still_covers_the_network() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 1000), (10, 200, 30)).save(buffer, "JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    draft(image, 28)
    image.load()
    assert image.size == (500, 125)  # 1/8: the longer side stays >= 3 x 28
    assert to_pixels(image, in_channels=3, size=28)[:, 14, 14].tolist() == [10, 200, 30]
    small = Image.open(io.BytesIO(_jpeg(100)))
    draft(small, 28)
    assert small.size == (100, 100)  # no detail to spare: decoded in full


def _jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 90).save(buffer, "JPEG")
    return buffer.getvalue()
